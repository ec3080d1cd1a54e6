"""WebSockets on paths the panel does not serve are refused with 404 and one log line, never a 500 and a
traceback (webkvm/routing.py), against the real application (webkvm.asgi.application). Through the real
server: tests/unit/test_abuse_limits_served.py."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import ApplicationCommunicator, WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, reverse

from console.tickets import protocols
from hosts.models import Host
from jobs.models import Job
from tests.conftest import DB_01_UUID, PASSWORD, WEB_01_UUID
from tests.unit.test_routes import converter_prefix
from webkvm.asgi import application
from webkvm.models import AuditEvent, VMGrant
from webkvm.operations import LOGIN, Access
from webkvm.routing import ACCESS, access_of, websocket_urlpatterns

ORIGIN = "http://127.0.0.1:8000"

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


# --- the WebSocket permission table: each route's declared access (webkvm/routing.py), run with personas -------

SOCKET_JOB = 4545  # a job of the owner persona
OWNER_WS = "ws-owner"  # the console grant on web-01, and the job's owner
# How each route is opened as its page opens it: the query, and the ticket route minting its console ticket (the
# owner's: a ticket another persona brings is a stolen one). A route without a row here fails below.
OPENERS: dict[str, tuple[str, str]] = {
    "console/ws/<slug:host>/<uuid:vm>/": ("", "console:ticket"),
    "console/serial/ws/<slug:host>/<uuid:vm>/": ("", "console:serial_ticket"),
    "live/ws/": ("scope=fleet", ""),
    "jobs/ws/<int:job_id>/": ("", ""),
}
SOCKET_PERSONAS = ["anonymous", "outsider", "viewer", OWNER_WS]


def test_every_websocket_route_declares_its_access() -> None:
    patterns = {str(route.pattern): route for route in websocket_urlpatterns}
    undeclared = [p for p, route in patterns.items() if access_of(route) is None]
    assert not undeclared, f"WebSocket routes without a declared access (webkvm/routing.py ACCESS): {undeclared}"
    assert set(ACCESS) <= set(patterns), "rows of routes that are gone"
    assert set(OPENERS) == set(patterns), "each route says here how its page opens it"


def socket_url(route: URLPattern, host: str = "testhost", vm: str = WEB_01_UUID, job: int = SOCKET_JOB) -> str:
    samples = {"host": host, "vm": vm, "job_id": str(job)}
    url = "/" + str(route.pattern)
    for name, converter in route.pattern.converters.items():
        url = url.replace(f"<{converter_prefix(type(converter).__name__)}:{name}>", samples[name])
    query = OPENERS[str(route.pattern)][0]
    return url + (f"?{query}" if query else "")


def socket_ticket(route: URLPattern, owner: Client, host: str = "testhost", vm: str = WEB_01_UUID) -> str:
    minting = OPENERS[str(route.pattern)][1]
    if not minting:
        return ""
    response = owner.post(reverse(minting, args=[host, vm]))
    assert response.status_code == 200, response.content
    return str(response.json()["ticket"])


async def socket_answer(url: str, cookie: str, ticket: str = "", seconds: float = 1.0,
                        first: bool = False) -> tuple[bool, list[dict]]:
    """Open a socket as the page does; whether it was accepted and what came (frames, the close) within
    `seconds` or until it closed (with `first`: until its first frame)."""
    communicator = WebsocketCommunicator(application, url, headers=[
        (b"origin", ORIGIN.encode()), (b"host", b"127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())],
        subprotocols=protocols(ticket) if ticket else None)
    connected, code = await communicator.connect(timeout=10)
    if not connected:
        return False, [{"type": "websocket.close", "code": code}]
    came: list[dict] = []
    deadline = time.monotonic() + seconds
    while deadline - time.monotonic() > 0:
        if await communicator.receive_nothing(timeout=0.05, interval=0.01):
            continue
        message = await communicator.receive_output(timeout=5)
        came.append(message)
        if message["type"] == "websocket.close" or first:
            break
    await communicator.disconnect()
    return True, came


def socket_refused(connected: bool, came: list[dict]) -> bool:
    """Refused with 4403: at the handshake, or accepted only to say why (consoles) and closed at once."""
    closes = [m for m in came if m["type"] == "websocket.close"]
    sent = [m for m in came if m["type"] != "websocket.close"]
    return bool(closes) and closes[0].get("code") == 4403 and not sent and (not connected or len(came) == 1)


@pytest.fixture
def socket_crowd(test_host: Host) -> dict[str, Client]:
    users = get_user_model().objects
    owner = users.create_user(OWNER_WS, "", PASSWORD)
    viewer = users.create_user("ws-viewer", "", PASSWORD)
    outsider = users.create_user("ws-outsider", "", PASSWORD)
    VMGrant.objects.create(user=owner, host=test_host, vm_uuid=WEB_01_UUID, vm_name="web-01", can_console=True)
    VMGrant.objects.create(user=viewer, host=test_host, vm_uuid=WEB_01_UUID, vm_name="web-01")
    Job.objects.create(pk=SOCKET_JOB, kind="volume.wipe", host=test_host, owner=owner, state="done",
                       target_type="volume", target_name="images/w.img", summary="a job of the owner",
                       params={"pool": "images", "name": "w.img"})
    crowd = {"anonymous": Client()}
    for name, user in (("outsider", outsider), ("viewer", viewer), (OWNER_WS, owner)):
        crowd[name] = Client()
        crowd[name].force_login(user)
    return crowd


def _socket_allowed(access: Access, persona: str) -> bool:
    if persona == "anonymous":
        return False
    return access.permission == LOGIN or persona == OWNER_WS


SOCKET_CASES = [(route, persona) for route in websocket_urlpatterns for persona in SOCKET_PERSONAS]


@pytest.mark.django_db(transaction=True)  # the consumers read the database from other threads
@pytest.mark.parametrize(("route", "persona"), SOCKET_CASES, ids=[f"{r.pattern}-{p}" for r, p in SOCKET_CASES])
def test_websocket_permission_table(socket_crowd: dict[str, Client], route: URLPattern, persona: str) -> None:
    """Each route as its page opens it (a console with a valid ticket of the owner's): a persona its declared
    access does not let in is refused with 4403 before a frame; one it lets in is admitted (a console: its
    ticket is used, though the test driver's VM has no display to reach)."""
    access = access_of(route)
    assert access is not None
    client = socket_crowd[persona]
    cookie = client.cookies["sessionid"].value if "sessionid" in client.cookies else "no-such-session"
    ticket = socket_ticket(route, socket_crowd[OWNER_WS])
    connected, came = async_to_sync(socket_answer)(socket_url(route), cookie, ticket, first=True)
    used = AuditEvent.objects.filter(action__startswith="console", detail__endswith="ticket used").exists()
    if not _socket_allowed(access, persona):
        assert socket_refused(connected, came), f"{persona} was not refused at {route.pattern}: {came}"
        assert not used, "a refused persona used the owner's ticket"
    elif ticket:
        assert used, f"{persona}'s ticket was not taken at {route.pattern}: {came}"
    else:
        assert connected and not socket_refused(connected, came), f"{persona} was refused at {route.pattern}"
        heard = " ".join(str(m.get("text", "")) for m in came)
        if persona == "outsider":  # let in (the live page of anybody logged in), and told of no VM at all
            assert not any(name in heard for name in ("web-01", WEB_01_UUID, "db-01", DB_01_UUID)), heard
        else:
            assert heard, f"{persona} heard nothing at {route.pattern}"
