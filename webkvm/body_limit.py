"""Request bodies are capped before Django sees them.

Under ASGI, Django's handler reads a whole body into a temporary file before any middleware, login or CSRF
check runs, so without a cap anybody could fill the panel's disk (`curl -T /dev/zero .../login/`). This
wrapper sits right in front of Django's handler: a request without a logged-in session or a valid API token
may send ANONYMOUS_BODY_BYTES (a login form is a few hundred bytes), one with either WEBKVM_MAX_BODY_BYTES. A
declared Content-Length over the limit is answered 413 before a byte is read; a body without one (chunked)
is counted as it comes and cut at the limit, so Django never holds more than the limit. A refusal is plain text,
or under /api/ the API's JSON error (`{"code": "too_large", "message": ...}`; 400 `invalid` for a malformed
Content-Length). The session is only
looked up for a body larger than the anonymous limit. The streamed volume uploads (storage/asgi.py: the page's
URL and the API's volume content URL) are taken out before this wrapper: they check session and CSRF, or the
API token, and admin before they read a byte, and stream into libvirt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db import close_old_connections
from django.utils import translation
from django.utils.translation import gettext as _

from virt.xml.codecs import iec

log = logging.getLogger(__name__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

ANONYMOUS_BODY_BYTES = 64 << 10


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def _session_key(scope: Scope) -> str:
    raw = _header(scope, b"cookie")
    if not raw:
        return ""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(raw.decode("latin-1"))
    except CookieError:
        return ""
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel is not None else ""


def _logged_in(key: str) -> bool:
    """Whether the session exists, has not expired and holds a login: one lookup, no user loaded."""
    close_old_connections()
    store = import_module(settings.SESSION_ENGINE).SessionStore(key)
    return SESSION_KEY in store


def _bearer(scope: Scope) -> str:
    raw = _header(scope, b"authorization") or b""
    parts = raw.split()
    if len(parts) == 2 and parts[0].lower() == b"bearer":
        return parts[1].decode("latin-1")
    return ""


def _token_usable(text: str) -> bool:
    """Whether an API token (`Authorization: Bearer ...`) is valid now and its user active: one lookup."""
    from api.models import ApiToken  # apps are loaded by the time a request comes

    close_old_connections()
    token = ApiToken.find(text)
    return token is not None and token.usable and token.user.is_active


async def limit_for(scope: Scope) -> int:
    """The session's or API token's limit for a caller who proves who they are; the small one otherwise."""
    key, token = _session_key(scope), _bearer(scope)
    if (key and await sync_to_async(_logged_in, thread_sensitive=False)(key)) or (
            token and await sync_to_async(_token_usable, thread_sensitive=False)(token)):
        return max(int(settings.WEBKVM_MAX_BODY_BYTES), ANONYMOUS_BODY_BYTES)
    return ANONYMOUS_BODY_BYTES


API_PREFIX = "/api/"
# The API's error codes (api/errors.py) for what this wrapper refuses; the API answers JSON, pages plain text.
API_CODES = {400: "invalid", 413: "too_large"}


async def refuse(send: Send, status: int, text: str, scope: Scope) -> None:
    """The refusal, as plain text, or under /api/ as the API's JSON error: {"code": ..., "message": ...}."""
    if str(scope.get("path", "")).startswith(API_PREFIX):
        body = json.dumps({"code": API_CODES.get(status, "invalid"), "message": text.strip()}).encode()
        kind = b"application/json"
    else:
        body, kind = text.encode(), b"text/plain; charset=utf-8"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _language(scope: Scope) -> str:
    """The browser's language (this wrapper runs before Django's middleware and knows no user yet)."""
    from webkvm.languages import of_caller  # webkvm.languages imports the models, loaded after this module

    return of_caller(None, (_header(scope, b"cookie") or b"").decode("latin-1"),
                     (_header(scope, b"accept-language") or b"").decode("latin-1"))


def _too_large(scope: Scope, limit: int) -> str:
    with translation.override(_language(scope)):
        return _("Request body too large: at most %(size)s here; nothing was kept.") % {"size": iec(limit)} + "\n"


class BodyLimit:
    """ASGI wrapper around Django's HTTP application."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        length: int | None = None
        if declared is not None:
            if not declared.strip().isdigit():
                with translation.override(_language(scope)):
                    said = _("Bad request: invalid Content-Length.") + "\n"
                await refuse(send, 400, said, scope)
                return
            length = int(declared)
        limit = ANONYMOUS_BODY_BYTES
        looked_up = False
        if length is not None and length > limit:
            limit, looked_up = await limit_for(scope), True
            if length > limit:
                log.info("refused a body of %d bytes for %s (limit %d)", length, scope.get("path", "")[:200], limit)
                await refuse(send, 413, _too_large(scope, limit), scope)
                return
        counted, cut, answered = 0, False, False

        async def counting() -> dict[str, Any]:
            nonlocal counted, cut, limit, looked_up
            message = await receive()
            if message.get("type") == "http.request":
                counted += len(message.get("body", b""))
                if counted > limit and not looked_up:
                    limit, looked_up = await limit_for(scope), True
                if counted > limit:
                    cut = True
                    return {"type": "http.disconnect"}  # Django drops what it read and answers nothing
            return message

        async def watched(message: dict[str, Any]) -> None:
            nonlocal answered
            answered = True
            await send(message)

        await self.app(scope, counting, watched)
        if cut and not answered:
            log.info("cut a streamed body at %d bytes for %s (limit %d)", counted, scope.get("path", "")[:200], limit)
            await refuse(send, 413, _too_large(scope, limit), scope)
