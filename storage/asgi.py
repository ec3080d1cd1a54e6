"""Streaming volume transfers under ASGI: uploads go from the socket into libvirt, downloads back.

Django's ASGI handler reads a whole request body (into memory, then a temporary file) before
any view runs, so a multi-GiB ISO would pass through the disk of the panel's machine first; and
it sends a streamed response in 64 KiB pieces, each a trip through the event loop. This wrapper
takes the transfer URLs out of Django's handler, runs the same checks Django would (session
login, CSRF, the admin check) and moves the data in chunks of a few MiB, reading the next chunk
while the current one is sent: memory stays at a few chunks whatever the volume's size. Every
other request goes to Django unchanged; the views in storage/views/transfer.py serve the same
URLs under WSGI.

The API's volume content URL (api/storage.py: PUT uploads, GET downloads) goes through this same
path: there the API's own authentication applies (a token, or the session with CSRF; read-only
tokens may not upload; the API's rate limits), answers are the API's JSON, and the audit records say
"through the API, token NAME". Under WSGI the API's view serves that URL with the same functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import logging
import math
import queue
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.views import redirect_to_login
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import Resolver404, ResolverMatch, resolve
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from storage.transfers import (
    CHUNK,
    CHUNK_TIMEOUT,
    Interrupted,
    UploadSession,
    download_headers,
    error_response,
    interrupted,
    open_download,
    open_upload,
    refusal,
    through_api,
    upload_name,
    uploaded,
)
from virt.errors import VirtError
from virt.streams import Download
from webkvm.languages import activate_for
from webkvm.middleware import POLICY
from webkvm.operations import ADMIN, LOGIN, access_of, choice
from webkvm.permissions import require_admin

log = logging.getLogger(__name__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]  # Django's handler types its arguments a little differently
# One streaming path, two URLs: the pages' and the API's (/api/v1/pools/H/P/volumes/V/content).
ROUTES = {("PUT", "storage:volume_upload"): "upload", ("GET", "storage:volume_download"): "download",
          ("PUT", "api:volume-content"): "upload", ("GET", "api:volume-content"): "download"}
API_ROUTES = {"api:volume-content"}
QUEUED_CHUNKS = 2  # chunks waiting for the hypervisor; with the one being sent, bounds an upload's memory
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"), (b"content-security-policy", POLICY.encode())]

# uvicorn stops reading a connection whenever 64 KiB of its body wait unread, and starts again at
# the next receive(): for an upload that is a pause and a resume per 64 KiB, which costs more CPU
# than all the rest of the transfer (measured with uvloop and a body that is only counted: 1.5 CPU-
# seconds per GiB at 64 KiB, 0.65 at 2 MiB). A connection may now hold 2 MiB before it pauses;
# bodies are read as they come anyway. Larger values barely help and cost memory per upload.
UVICORN_READ_BUFFER = 2 << 20


def tune_uvicorn() -> None:
    for name in ("uvicorn.protocols.http.httptools_impl", "uvicorn.protocols.http.h11_impl"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue  # that parser is not installed
        current = getattr(module, "HIGH_WATER_LIMIT", None)
        if isinstance(current, int):
            setattr(module, "HIGH_WATER_LIMIT", max(current, UVICORN_READ_BUFFER))  # noqa: B010


tune_uvicorn()


def _one_thread(name: str) -> ThreadPoolExecutor:
    """A transfer's libvirt calls run in a thread of its own: they never wait behind other requests'
    work in the loop's shared pool, and the buffers libvirt allocates stay in one thread's malloc arena."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)


def _unused(_request: HttpRequest) -> HttpResponse:
    raise AssertionError("only the request phase of these middlewares is used")


def _match(scope: Scope) -> tuple[str, ResolverMatch] | None:
    if scope.get("type") != "http" or scope.get("method") not in ("PUT", "GET"):
        return None
    try:
        match = resolve(scope.get("path", ""))
    except Resolver404:
        return None
    kind = ROUTES.get((scope["method"], match.view_name))
    return (kind, match) if kind else None


def route(scope: Scope) -> tuple[str, dict[str, Any]] | None:
    """("upload" or "download", URL kwargs) for the transfer URLs (the pages' and the API's), None for
    everything else."""
    found = _match(scope)
    return (found[0], dict(found[1].kwargs)) if found else None


def authorise(request: ASGIRequest, kwargs: dict[str, Any]) -> HttpResponse | None:
    """What Django's middlewares (or, on the API's URL, REST framework's authentication, permissions and
    throttles) and the view's declared access (webkvm.operations.route, api.base.ApiView) do for a normal
    request; a response means refused. First, as Django's CommonMiddleware: a Host header not in
    ALLOWED_HOSTS raises DisallowedHost (400)."""
    request.get_host()
    refused = _api_caller(request) if through_api(request) else _page_caller(request)
    return refused if refused is not None else _permitted(request, kwargs)


def _speak(request: ASGIRequest) -> None:
    """LocaleMiddleware: the answers' words in the browser's language (Accept-Language), until the user is known."""
    translation.activate(translation.get_language_from_request(request))
    request.LANGUAGE_CODE = translation.get_language()


def _speak_to_user(request: ASGIRequest) -> None:
    """webkvm.languages.UserLanguageMiddleware: a logged-in user's own choice of language wins."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        activate_for(request, user)


def _page_caller(request: ASGIRequest) -> HttpResponse | None:
    """SessionMiddleware, AuthenticationMiddleware, LoginRequiredMiddleware and CsrfViewMiddleware (CSRF
    applies to the PUT)."""
    SessionMiddleware(_unused).process_request(request)
    user = get_user(request)
    request.user = user
    _speak_to_user(request)
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    csrf = CsrfViewMiddleware(_unused)
    csrf.process_request(request)
    assert request.resolver_match is not None
    refused = csrf.process_view(request, request.resolver_match.func, (), {})
    if refused is not None:
        if "application/json" in request.headers.get("Accept", ""):
            return refusal(request, 403, _("The request failed its CSRF check: reload the page and try again."))
        return refused  # Django's own page, which says why
    return None


def _api_caller(request: ASGIRequest) -> HttpResponse | None:
    """The API's own authentication (api/auth.py): a personal token (`Authorization: Bearer ...`), else the
    session with its CSRF token; then read-only tokens are refused a PUT and the API's rate limits apply.
    All before a byte of the body is read; the audit records say "through the API, token NAME"."""
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework.request import Request

    from api.auth import ReadOnlyTokens, TokenAuthentication, via

    asked = Request(request)  # what api/auth.py reads; it reads no byte of the body
    try:
        found = TokenAuthentication().authenticate(asked)  # it reads the Authorization header only
    except AuthenticationFailed as exc:
        return _unauthenticated(request, str(exc.detail), str(exc.get_codes()))
    # REST framework sets the user and the token on the request it wraps too.
    if found is not None:
        asked.user, asked.auth = found
    else:
        SessionMiddleware(_unused).process_request(request)
        asked.user, asked.auth = get_user(request), None
    _speak_to_user(request)
    if found is None:
        if not request.user.is_authenticated:
            return _unauthenticated(request, _("Authentication credentials were not provided."), "not_authenticated")
        csrf = CsrfViewMiddleware(_unused)
        csrf.process_request(request)
        if csrf.process_view(request, None, (), {}) is not None:  # type: ignore[arg-type]  # as REST framework does
            return refusal(request, 403, _("CSRF Failed: send the X-CSRFToken header (or use a token)."),
                           code="csrf_failed")
    if not ReadOnlyTokens().has_permission(asked, None):
        return refusal(request, 403, str(ReadOnlyTokens.message), code=ReadOnlyTokens.code)
    request.webkvm_via = via(asked)  # type: ignore[attr-defined]  # audit.record reads it
    return _throttled(request)


def _unauthenticated(request: ASGIRequest, message: str, code: str) -> HttpResponse:
    response = refusal(request, 401, message, code=code)
    response["WWW-Authenticate"] = "Bearer"
    return response


def _throttled(request: ASGIRequest) -> HttpResponse | None:
    """The API's rate limits (REST framework's throttles, counted where the API counts them)."""
    from rest_framework.request import Request
    from rest_framework.settings import api_settings
    from rest_framework.throttling import BaseThrottle
    from rest_framework.views import APIView

    asked = Request(request)
    asked.user, asked.auth = request.user, getattr(request, "auth", None)
    # The settings name the classes by their dotted paths; api_settings imports them.
    kinds = cast("Sequence[type[BaseThrottle]]", api_settings.DEFAULT_THROTTLE_CLASSES)
    view = APIView()  # no view runs yet; the API's throttles read none (they have no scope)
    for kind in kinds:
        throttle = kind()
        if not throttle.allow_request(asked, view):
            wait = throttle.wait()
            response = refusal(request, 429, _("Too many requests: try again later."), code="throttled")
            if wait is not None:
                response["Retry-After"] = str(math.ceil(wait))
            return response
    return None


def _permitted(request: ASGIRequest, kwargs: dict[str, Any]) -> HttpResponse | None:
    """The route's declared access (per method on the API's URL): admin, or anybody logged in; anything
    else (no declaration, a VM grant) is not served here."""
    assert request.resolver_match is not None
    access = access_of(request.resolver_match.func)
    if access is not None and access.methods:
        access = access.of_method(request.method or "")
    permission = choice(access, kwargs).permission if access is not None else ""
    if permission == LOGIN:
        return None
    try:
        if permission != ADMIN:
            raise PermissionDenied
        require_admin(request, object_name=request.path)
    except PermissionDenied:
        if through_api(request):  # as every API route naming a host: what the caller may not see is not there
            from api.base import hidden  # the API loads after this module

            return refusal(request, 404, str(hidden().detail), code="not_found")
        return refusal(request, 403, _("You are not allowed to do that."))
    return None


def _checked(request: ASGIRequest, kwargs: dict[str, Any], then: Callable[[], Any]) -> Any:
    close_old_connections()
    _speak(request)
    try:
        refused = authorise(request, kwargs)
        return refused if refused is not None else then()
    except SuspiciousOperation as exc:  # e.g. a Host header not in ALLOWED_HOSTS
        return refusal(request, 400, _("Bad request: %(reason)s") % {"reason": exc})
    except Http404 as exc:
        return refusal(request, 404, str(exc) or _("There is nothing at this address."))


async def respond(send: Send, response: HttpResponse) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
    headers += [(b"set-cookie", c.output(header="").strip().encode("latin-1")) for c in response.cookies.values()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers + SECURITY_HEADERS})
    await send({"type": "http.response.body", "body": response.content, "more_body": False})


# --- upload ----------------------------------------------------------------------------------


class Sender:
    """The thread that hands an upload's chunks to libvirt, fed through a queue.

    One thread for the whole upload, not one executor job per chunk: the event loop only puts a
    chunk (a list of the bodies uvicorn delivered, never joined: libvirt's messages are cut from
    them directly) and the thread gives back a place in the queue after each chunk is sent. At most
    QUEUED_CHUNKS + 1 chunks are handed over at a time, which bounds an upload's memory."""

    def __init__(self, session: UploadSession) -> None:
        self.loop = asyncio.get_running_loop()
        self.session = session
        self.room = asyncio.Semaphore(QUEUED_CHUNKS + 1)
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.items: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self.stopped = False
        self.handed = 0  # chunks put and not yet sent
        self.thread = threading.Thread(target=self._run, name="upload", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            while (parts := self.items.get()) is not None and not self.stopped:
                self.session.send(*parts)
                self._tell(self._sent)
        except BaseException as exc:  # handed to the loop, which raises it
            error = exc
        self._tell(self._end, error)

    def _tell(self, call: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone (server stopping): nobody is waiting
            self.loop.call_soon_threadsafe(call, *args)

    def _sent(self) -> None:
        self.handed -= 1
        self.room.release()

    def _end(self, error: BaseException | None) -> None:
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)

    async def put(self, parts: list[bytes]) -> None:
        """Queue a chunk; waits while the queue is full. The thread's failure is raised here; a
        chunk that takes libvirt more than CHUNK_TIMEOUT raises TimeoutError."""
        if self.room.locked():
            place: asyncio.Future[Any] = asyncio.ensure_future(self.room.acquire())
            waiting: set[asyncio.Future[Any]] = {place, self.done}
            await asyncio.wait(waiting, timeout=CHUNK_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            if not place.done():
                place.cancel()
                if self.done.done():
                    self.done.result()
                raise TimeoutError
        else:
            await self.room.acquire()
        if self.done.done():
            self.done.result()  # the thread failed: its error wins
            raise Interrupted(gettext_noop("the upload ended early"))
        self.handed += 1
        self.items.put(parts)

    async def finish(self) -> None:
        """Wait until every queued chunk is sent."""
        self.items.put(None)
        await asyncio.wait_for(asyncio.shield(self.done), CHUNK_TIMEOUT * max(self.handed, 1))

    def stop(self) -> None:
        """Send nothing more (the thread ends after the chunk it is sending, if any)."""
        self.stopped = True
        self.items.put(None)
        if self.done.done() and not self.done.cancelled():
            self.done.exception()  # retrieved: no "exception never retrieved" warning


async def pump(receive: Receive, session: UploadSession) -> None:
    """Move the body into the session in chunks of about CHUNK; raises Interrupted if the browser goes away."""
    sender = Sender(session)
    parts: list[bytes] = []
    pending = received = 0
    stall = settings.WEBKVM_UPLOAD_STALL_SECONDS
    try:
        while True:
            try:  # a client that stays connected but sends nothing must not hold the stream and volume
                message = await asyncio.wait_for(receive(), stall)
            except TimeoutError:
                raise Interrupted(gettext_noop("nothing arrived for {seconds} s after {received} of {size} bytes"),
                                  seconds=f"{stall:g}", received=received, size=session.size) from None
            if message["type"] == "http.disconnect":
                raise Interrupted(gettext_noop("the browser went away after {received} of {size} bytes"),
                                  received=received, size=session.size)
            body = message.get("body", b"")
            received += len(body)
            if received > session.size:
                raise Interrupted(gettext_noop("more than the announced {size} bytes"), size=session.size)
            if body:
                parts.append(body)
                pending += len(body)
            more = bool(message.get("more_body", False))
            if pending >= CHUNK or (pending and not more):
                await sender.put(parts)
                parts = []
                pending = 0
            if not more:
                break
        if received != session.size:
            raise Interrupted(gettext_noop("the body ended after {received} of {size} bytes"), received=received,
                              size=session.size)
        await sender.finish()
    except TimeoutError:
        raise Interrupted(gettext_noop("the hypervisor took more than {seconds} s for one chunk"),
                          seconds=f"{CHUNK_TIMEOUT:g}") from None
    finally:
        sender.stop()


async def upload(request: ASGIRequest, receive: Receive, kwargs: dict[str, Any]) -> HttpResponse:
    outcome = await sync_to_async(_checked)(request, kwargs, lambda: open_upload(
        request, kwargs["host"], kwargs["pool"], upload_name(request, kwargs)))
    if isinstance(outcome, HttpResponse):
        return outcome
    session: UploadSession = outcome
    try:
        await pump(receive, session)
        result = await sync_to_async(session.finish, thread_sensitive=False)()
    except (VirtError, Interrupted) as exc:
        left = await sync_to_async(session.abort, thread_sensitive=False)()
        await sync_to_async(session.audit)(request, f"{exc}{' ' + left if left else ''}")
        if isinstance(exc, VirtError):
            return error_response(request, exc)
        # The browser may still be listening (it sent more or less than it announced).
        return interrupted(request, exc, left)
    except BaseException:  # cancelled (server shutting down): still leave no half volume
        await asyncio.shield(sync_to_async(session.abort, thread_sensitive=False)())
        raise
    await sync_to_async(session.audit)(request)
    return uploaded(request, session, result)


# --- download --------------------------------------------------------------------------------


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def stream_download(receive: Receive, send: Send, download: Download) -> None:
    """Send the volume; the next chunk is read from libvirt while the current one goes out."""
    loop = asyncio.get_running_loop()
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in download_headers(download).items()]
    await send({"type": "http.response.start", "status": 200, "headers": headers + SECURITY_HEADERS})
    gone = asyncio.ensure_future(_disconnected(receive))
    reader = _one_thread("download")
    reading = loop.run_in_executor(reader, download.read, CHUNK)
    try:
        while True:
            waiting: set[asyncio.Future[Any]] = {reading, gone}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                log.info("download of %s stopped by the browser after %d bytes", download.name, download.received)
                return
            chunk = reading.result()  # a libvirt failure ends the response short: the browser sees it fail
            if not chunk:
                break
            reading = loop.run_in_executor(reader, download.read, CHUNK)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        gone.cancel()
        with contextlib.suppress(BaseException):
            await reading  # never close the streams under a read still running
        await loop.run_in_executor(reader, download.close)
        reader.shutdown(wait=False)


async def download(request: ASGIRequest, receive: Receive, send: Send, kwargs: dict[str, Any]) -> None:
    outcome = await sync_to_async(_checked)(request, kwargs, lambda: open_download(
        request, kwargs["host"], kwargs["pool"], kwargs["volume"]))
    if isinstance(outcome, HttpResponse):
        await respond(send, outcome)
        return
    _host, started = outcome
    try:
        await stream_download(receive, send, started)
    except VirtError as exc:
        log.warning("download of %s failed: %s", started.name, exc)


class StreamedTransfers:
    """ASGI wrapper around Django's HTTP application."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _match(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        kind, match = found
        kwargs = dict(match.kwargs)
        request = ASGIRequest(scope, io.BytesIO())
        request.resolver_match = match
        request.webkvm_api = match.view_name in API_ROUTES  # type: ignore[attr-defined]  # answers in the API's JSON
        async with ThreadSensitiveContext():  # this request's Django work shares one thread, as in Django
            try:
                if kind == "upload":
                    await respond(send, await upload(request, receive, kwargs))
                else:
                    await download(request, receive, send, kwargs)
            finally:
                translation.deactivate()  # the language this request spoke (_speak) stays with it
                await sync_to_async(close_old_connections)()
