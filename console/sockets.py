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

from console.session import session_cookie
from console.tickets import SELECTED_PROTOCOL, bearer, from_protocols
from webkvm.blocking import blocking


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
