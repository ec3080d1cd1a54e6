"""Upload into and download from volumes, streamed through libvirt (admin only).

Under ASGI the PUT never reaches volume_upload: storage.asgi streams it straight from the socket
(Django's ASGI handler would first spool the whole body to a temporary file), after the same checks,
the access these views declare included. This view serves the same URL under WSGI (tests, the
development server), reading the body in chunks, which WSGI allows without buffering.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import cast

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.translation import gettext_noop
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from storage import operations as ops
from storage.transfers import (
    CHUNK,
    Interrupted,
    UploadSession,
    check,
    download_headers,
    error_response,
    interrupted,
    open_download,
    open_upload,
    upload_name,
    uploaded,
)
from virt.errors import VirtError
from virt.streams import Download
from webkvm.operations import host_or_404, route


@require_POST
@route(ops.VOLUME_UPLOAD)  # the upload's first step: nothing is changed yet
def upload_check(request: HttpRequest, host: str, pool: str) -> JsonResponse:
    """The browser announces name and size; field errors come back before a byte is sent."""
    found = host_or_404(host)
    _detail, refused = check(request, found, pool, request.POST.dict())
    if refused is not None:
        return refused
    url = reverse("storage:volume_upload", args=[found.name, pool])
    return JsonResponse({"ok": True, "url": url})


@require_http_methods(["PUT"])
@route(ops.VOLUME_UPLOAD)
def volume_upload(request: HttpRequest, host: str, pool: str) -> HttpResponse:
    session = open_upload(request, host, pool, upload_name(request, {}))
    if isinstance(session, HttpResponse):
        return session
    return receive_upload(request, session)


def receive_upload(request: HttpRequest, session: UploadSession) -> HttpResponse:
    """Read the body (WSGI) in chunks into the open upload; the page's PUT and the API's under WSGI. Anything
    short of the whole body deletes the volume again."""
    try:
        remaining = session.size
        while remaining:
            chunk = request.read(min(CHUNK, remaining))
            if not chunk:
                raise Interrupted(gettext_noop("the upload stopped after {received} of {size} bytes"),
                                  received=session.size - remaining, size=session.size)
            session.send(chunk)
            remaining -= len(chunk)
        result = session.finish()
    except (VirtError, Interrupted, OSError) as exc:
        left = session.abort()
        session.audit(request, f"{exc}{' ' + left if left else ''}")
        if isinstance(exc, VirtError):
            return error_response(request, exc)
        return interrupted(request, exc, left)
    session.audit(request)
    return uploaded(request, session, result)


def _download_sync(download: Download) -> Iterator[bytes]:
    try:
        while chunk := download.read(CHUNK):
            yield chunk
    finally:
        download.close()


async def _download_async(download: Download) -> AsyncIterator[bytes]:
    read = sync_to_async(download.read, thread_sensitive=False)  # libvirt waits must not hold Django's thread
    try:
        while chunk := await read(CHUNK):
            yield chunk
    finally:
        download.close()


@require_GET
@route(ops.VOLUME_DOWNLOAD)
def volume_download(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    """Under ASGI a GET is served by storage.asgi; this serves WSGI (and HEAD under ASGI)."""
    return download_response(request, host, pool, volume)


def download_response(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    """The volume streamed with its Content-Length (or why not); the page's and the API's under WSGI."""
    outcome = open_download(request, host, pool, volume)
    if isinstance(outcome, HttpResponse):
        return outcome
    _host, download = outcome
    # Under ASGI a synchronous iterator would be read whole into memory first: hand over an async one.
    content = _download_async(download) if isinstance(request, ASGIRequest) else _download_sync(download)
    response = StreamingHttpResponse(content)
    for key, value in download_headers(download).items():
        response[key] = value
    return cast(HttpResponse, response)  # a streaming response, which route() passes through as is
