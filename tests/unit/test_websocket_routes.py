"""WebSockets on paths the panel does not serve are refused with 404 and one log line, never a 500 and a
traceback (webkvm/routing.py), against the real application (webkvm.asgi.application). Through the real
server: tests/unit/test_abuse_limits_served.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import ApplicationCommunicator, WebsocketCommunicator

from tests.conftest import WEB_01_UUID
from webkvm.asgi import application

BAD_PATHS = [
    "/nowhere/",
    "/",
    "/console/ws/testhost/ABCDEF01-1111-4111-8111-111111111111/",  # the UUID converter takes lower case only
    "/console/ws/testhost/not-a-uuid/",
    f"/console/serial/ws/test%20host/{WEB_01_UUID}/",
    "/console/ws/../../etc/passwd",
    "/jobs/ws/junk/",
    "/jobs/ws/12/extra/",
    "/live/ws/more/",
    "/live/ws",  # without its slash
    "/" + "x" * 5000,
]


def _problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


@pytest.mark.parametrize("path", BAD_PATHS, ids=[p[:60] for p in BAD_PATHS])
def test_a_websocket_on_an_unknown_path_is_refused_with_404(path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def without_status() -> tuple[bool, Any]:  # a server that cannot send a status: a closed handshake
        communicator = WebsocketCommunicator(application, path)
        try:
            return await communicator.connect(timeout=3)  # type: ignore[no-any-return]
        finally:
            await communicator.wait(timeout=3)

    async def with_status() -> list[dict[str, Any]]:  # uvicorn: the handshake is answered with an HTTP status
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": [], "subprotocols": [],
                 "extensions": {"websocket.http.response": {}}}
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "websocket.connect"})
        sent = [await communicator.receive_output(timeout=3), await communicator.receive_output(timeout=3)]
        await communicator.wait(timeout=3)
        return sent

    assert async_to_sync(without_status)()[0] is False
    start, body = async_to_sync(with_status)()
    assert start["type"] == "websocket.http.response.start" and start["status"] == 404
    assert body["type"] == "websocket.http.response.body" and body["body"] == b"No WebSocket here.\n"
    assert _problems(caplog) == [], "no error, no traceback"
    lines = [r.getMessage() for r in caplog.records if r.name == "webkvm.routing"]
    assert len(lines) == 2 and all(line.startswith("WebSocket refused: no such path") for line in lines)
    assert all(len(line) < 300 for line in lines), "the log line is bounded"


@pytest.mark.django_db(transaction=True)
def test_the_served_paths_still_reach_their_consumers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def anonymous(path: str) -> tuple[bool, Any]:
        communicator = WebsocketCommunicator(application, path, headers=[(b"host", b"testserver"),
                                                                         (b"origin", b"http://testserver")])
        try:
            connected, _ = await communicator.connect(timeout=5)
            if connected:
                return True, (await communicator.receive_output(timeout=5)).get("code")
            return False, None
        finally:
            await communicator.disconnect()

    for path in ("/live/ws/", f"/console/ws/testhost/{WEB_01_UUID}/?ticket=x", "/jobs/ws/1/"):
        async_to_sync(anonymous)(path)
    assert not [r for r in caplog.records if r.name == "webkvm.routing"], "known paths are routed"
