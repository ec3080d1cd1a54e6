"""What the two console WebSockets (VNC: consumers.py, serial: serial_consumer.py) share: reading the
open_session arguments from the request, blocking work off the event loop, the periodic re-check,
and stopping the session's tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.utils import translation

from console.session import session_cookie
from console.tickets import SELECTED_PROTOCOL, bearer, from_protocols, session_user
from virt.errors import Said
from webkvm import languages
from webkvm.blocking import blocking
from webkvm.i18n import said

MAX_REASON_BYTES = 123  # a WebSocket close frame's reason, in UTF-8 (RFC 6455 5.5.1)
MAX_REASON_CHARACTERS = 120


def open_arguments(scope: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """open_session's keyword arguments from the WebSocket request, and its query (for further switches).
    Only the ticket (a subprotocol, never the URL: tickets stay out of access logs), the URL's host and VM,
    the session cookie, an API client's `Authorization: Bearer` token and the request's own headers are read."""
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    route = scope["url_route"]["kwargs"]
    client = scope.get("client") or (None, None)
    ticket = from_protocols(list(scope.get("subprotocols") or []))
    return {"ticket": ticket, "host_name": str(route["host"]), "vm_uuid": str(route["vm"]),
            "session_key": session_cookie(headers.get("cookie", "")), "origin": headers.get("origin", ""),
            "host_header": headers.get("host", ""), "remote_addr": client[0],
            "presented": bearer(headers.get("authorization", ""))}, query


def language_of(scope: dict[str, Any], user: Any = None) -> str:
    """The language a console speaks to its user (a WebSocket has no request to carry it): the one `user` (or
    the user of the request's login session) chose, else the browser's (Accept-Language), else the panel's.
    Blocking: it reads the database."""
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    return language_from(headers.get("cookie", ""), headers.get("accept-language", ""), user)


def language_from(cookie: str, accept_language: str, user: Any = None) -> str:
    """language_of() from a request's Cookie and Accept-Language headers (the standalone proxy's)."""
    if user is None:
        user = session_user(session_cookie(cookie))
    return languages.of_caller(user, cookie, accept_language)


def close_words(reason: BaseException | Said | str, language: str) -> str:
    """Why a console closes, as its page shows it: in `language`, and short enough for a close frame."""
    with translation.override(language):
        text = said(reason) if isinstance(reason, (BaseException, Said)) else str(reason)
    text = text[:MAX_REASON_CHARACTERS]
    while len(text.encode()) > MAX_REASON_BYTES:
        text = text[:-1]
    return text


def selected_protocol(scope: dict[str, Any]) -> str | None:
    """The subprotocol the handshake answers with: a browser that offered some fails the connection
    unless one of them is selected."""
    return SELECTED_PROTOCOL if SELECTED_PROTOCOL in (scope.get("subprotocols") or []) else None


async def watch(lost: Callable[[], str], end: Callable[[str], Awaitable[None]]) -> None:
    """Re-check logout, grant and VM every few seconds; end the session the moment one is gone."""
    while True:
        await asyncio.sleep(settings.WEBKVM_CONSOLE_RECHECK_SECONDS)
        reason = await blocking(lost)()
        if reason:
            await end(reason)
            return


async def cancel_others(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the session's tasks (all but the calling one) and wait for them to stop."""
    current = asyncio.current_task()
    for task in tasks:
        if task is not current:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
