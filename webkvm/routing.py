"""Every WebSocket route of the panel: consoles (console/routing.py), live updates and job progress."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.routing import URLRouter
from django.urls import URLPattern, path

from console.routing import websocket_urlpatterns as console_routes
from instances.consumers import LiveConsumer
from jobs.consumers import JobConsumer
from webkvm.models import VMPermission
from webkvm.operations import LOGIN, OWNER, Access, page

log = logging.getLogger(__name__)

websocket_urlpatterns = [
    *console_routes,
    path("live/ws/", LiveConsumer.as_asgi()),
    path("jobs/ws/<int:job_id>/", JobConsumer.as_asgi()),
]

# Who may open each route, as URL routes declare theirs (webkvm/operations.py): the consumer checks it itself
# (session, origin; a console also its ticket) and refuses with close code 4403. A route without a row fails
# tests/unit/test_websocket_routes.py, whose table runs the personas against these rows.
ACCESS: dict[str, Access] = {
    "console/ws/<slug:host>/<uuid:vm>/": page(VMPermission.CONSOLE, "vm"),
    "console/serial/ws/<slug:host>/<uuid:vm>/": page(VMPermission.CONSOLE, "vm"),
    "live/ws/": page(LOGIN),  # each frame only what the user may see (instances/consumers.py)
    "jobs/ws/<int:job_id>/": page(OWNER),  # admins, and the job's owner
}


def access_of(route: URLPattern) -> Access | None:
    """The declared access of a WebSocket route (None: undeclared)."""
    return ACCESS.get(str(route.pattern))

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
DENIAL = "websocket.http.response"  # the ASGI extension that lets a refused handshake carry an HTTP status


class WebSocketRoutes(URLRouter):  # type: ignore[misc]  # channels is untyped
    """The panel's WebSocket routes. A path none of them serves (a typo, an upper-case UUID, junk after
    /jobs/ws/) is answered 404 with one log line: Channels' own router raises there, which the server
    turns into a 500 and a traceback, for anonymous clients too."""

    def serves(self, scope: dict[str, Any]) -> bool:
        full = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        if root and not full.startswith(root):
            return False
        wanted = full[len(root):].lstrip("/")
        return any(route.pattern.match(wanted) for route in self.routes)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if self.serves(scope):
            await super().__call__(scope, receive, send)
            return
        log.info("WebSocket refused: no such path %r", str(scope.get("path", ""))[:200])
        await deny(scope, receive, send, 404, "No WebSocket here.\n")


async def deny(scope: dict[str, Any], receive: Receive, send: Send, status: int, text: str) -> None:
    """Refuse a WebSocket handshake with an HTTP status where the server can say one (uvicorn), else by
    closing it (the server answers 403)."""
    if (await receive()).get("type") != "websocket.connect":
        return  # the client went away first
    if DENIAL in (scope.get("extensions") or {}):
        body = text.encode()
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close"})


def websocket_application() -> WebSocketRoutes:
    return WebSocketRoutes(websocket_urlpatterns)
