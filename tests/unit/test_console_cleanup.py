"""Every way a console can fail closes what it opened: no socket is left behind, in the panel's consumer or in
the standalone proxy (manage.py consoleproxy), and each failure after the checks is audited.

VNC servers that misbehave are stood in for by a local server (a real qemu does not reset connections on
request); the lab's version with ssh processes is tests/integration/test_console_lab.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from console.tickets import TICKET_PROTOCOL, protocols
from hosts.models import Host
from tests.conftest import BASIC_WORLD, DB_01_UUID, WEB_01_UUID
from tests.unit.test_console_tickets import (
    ORIGIN,
    FakeVnc,
    Socket,
    _standalone,
    connect,
    session_key,
)
from webkvm.asgi import application
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db(transaction=True)  # the proxies read the database from other threads
ROUNDS = 5


class Misbehaving(FakeVnc):
    """A VNC server that fails in one chosen way during the RFB opening, counting who connected."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.open_now = 0  # "quiet": connections the proxy has not closed
        super().__init__()

    def talk(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy may reset too
            if self.how == "reset":  # the banner, then a TCP reset: the proxy's next write fails
                conn.sendall(b"RFB 003.008\n")
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.how == "quiet":  # a VNC server waiting for its client, until the client hangs up
                self.open_now += 1
                while conn.recv(100):
                    pass
                self.open_now -= 1
            elif self.how == "not rfb":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.recv(100)
            # "closed": closes at once


def open_sockets() -> int:
    """Sockets this process holds (the panel's consumer, the standalone proxy and the stand-in server all run in
    it: a socket one of them forgets stays here)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # closed meanwhile
    return count


def steady() -> int:
    """The socket count once it stops changing."""
    before, now = -1, open_sockets()
    while now != before:
        time.sleep(0.3)
        before, now = now, open_sockets()
    return now


def settled(baseline: int, seconds: float = 10) -> int:
    """The socket count once it is back at `baseline` (threads finish closing), or what it is after `seconds`."""
    deadline = time.monotonic() + seconds
    while (now := open_sockets()) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    return now


def raw_upgrade(port: int, path: str, ticket: str, cookie: str, leave_out: str) -> bytes:
    """A WebSocket upgrade request with one required header left out; the ticket both as the page sends it
    (a subprotocol) and as older pages did (the URL): neither may open anything before a handshake succeeds."""
    headers = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Protocol": f"binary, {TICKET_PROTOCOL}{ticket}", "Origin": f"http://127.0.0.1:{port}",
               "Cookie": f"sessionid={cookie}"}
    del headers[leave_out]
    request = f"GET {path}?ticket={ticket} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode() + b"\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer


@pytest.fixture
def vnc_server(request) -> Iterator[Misbehaving]:
    server = Misbehaving(request.param)
    yield server
    server.close()


@pytest.fixture
def test_host(db: None, tmp_path, vnc_server: Misbehaving) -> Host:  # overrides tests/conftest.py's
    """basic.xml with db-01 given a password display on the misbehaving server (the proxy then plays the RFB
    opening itself: the path where a failure used to leave the socket open)."""
    server = vnc_server
    world = BASIC_WORLD.read_text().replace(
        '<vcpu>4</vcpu>\n    <os><type arch="x86_64">hvm</type></os>\n  </domain>',
        f'<vcpu>4</vcpu>\n    <os><type arch="x86_64">hvm</type></os>\n    <devices><graphics type="vnc" '
        f'port="{server.port}" autoport="no" listen="127.0.0.1" passwd="sekrit"/></devices>\n  </domain>', 1)
    path = tmp_path / "world.xml"
    path.write_text(world.replace('port="5899"', f'port="{server.port}"'))  # web-01's, without a password
    return Host.objects.create(name="testhost", transport="test", path=str(path))


@pytest.fixture
def db01_client(user_client: Client, granted_user) -> Client:
    VMGrant.objects.filter(user=granted_user).update(vm_uuid=DB_01_UUID)
    return user_client


def mint_for(client: Client, vm: str) -> str:
    response = client.post(reverse("console:ticket", args=["testhost", vm]))
    assert response.status_code == 200, response.content
    return str(response.json()["ticket"])


def mint(client: Client) -> str:
    return mint_for(client, DB_01_UUID)


PATH = f"/console/ws/testhost/{DB_01_UUID}/"


def through_consumer(client: Client, port: int) -> str:
    """The panel's own consumer; the close reason."""
    last = connect(Socket(PATH, mint(client)), session_key(client), ORIGIN)[-1]
    assert last["type"] == "websocket.close" and last["code"] == 4403, last
    return str(last["reason"])


def through_standalone(client: Client, port: int) -> str:
    data, close = _standalone(port, Socket(PATH, mint(client)), session_key(client))
    assert data is None and close is not None and close.code == 4403, (data, close)  # type: ignore[attr-defined]
    return str(close.reason)  # type: ignore[attr-defined]


def handshake_without(header: str) -> Callable[[Client, int], str]:
    def attempt(client: Client, port: int) -> str:
        answer = raw_upgrade(port, PATH, mint(client), session_key(client), leave_out=header)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
        return ""
    return attempt


# (case, how the VNC server fails, the attempt, words in the refusal's audit record; "" for a handshake that
# fails first). The user reads the same words, but for a failing connection: "host unavailable" (its system
# words are the admins').
CASES = [
    ("standalone proxy, handshake without Sec-WebSocket-Version", "closed", handshake_without("Sec-WebSocket-Version"),
     ""),
    ("standalone proxy, handshake without Sec-WebSocket-Key", "closed", handshake_without("Sec-WebSocket-Key"), ""),
    # reset while connecting, or at the proxy's first write of the RFB opening
    ("panel, VNC server resets", "reset", through_consumer, "Connection reset by peer"),
    ("standalone proxy, VNC server resets", "reset", through_standalone, "Connection reset by peer"),
    ("panel, VNC server hangs up", "closed", through_consumer, "closed the connection during its opening"),
    ("standalone proxy, VNC server hangs up", "closed", through_standalone, "closed the connection during its opening"),
    ("panel, not a VNC server", "not rfb", through_consumer, "not an RFB protocol version"),
    ("standalone proxy, not a VNC server", "not rfb", through_standalone, "not an RFB protocol version"),
]


USERS_READ = {"Connection reset by peer": "host unavailable"}


@pytest.mark.parametrize(("case", "vnc_server", "attempt", "words"), CASES, indirect=["vnc_server"],
                         ids=[c[0] for c in CASES])
def test_a_failed_console_leaves_no_socket_open(case, vnc_server, attempt, words, test_host, db01_client,
                                                standalone_proxy) -> None:
    host, server = test_host, vnc_server
    attempt(db01_client, standalone_proxy)  # warm up: thread pools, event loops, database connections
    baseline = steady()
    before_connections = server.connections
    for _ in range(ROUNDS):
        reason = attempt(db01_client, standalone_proxy)
        read = USERS_READ.get(words, words)
        assert read in reason and (read == words or words not in reason)
    assert settled(baseline) <= baseline, f"{open_sockets() - baseline} socket(s) left open after {ROUNDS} failures"
    refused = AuditEvent.objects.filter(action="console.refused", host_name=host.name)
    if words:  # each failure reached the server once and is audited (counted on one row: the same refusal)
        assert server.connections - before_connections == ROUNDS
        assert sum(refused.values_list("repeats", flat=True)) == ROUNDS + 1 and words in refused.first().detail
    else:  # the handshake failed: no ticket spent, nothing opened, nothing to audit
        assert server.connections == before_connections == 0
        assert not refused.exists() and not AuditEvent.objects.filter(action="console.open").exists()


@pytest.mark.parametrize("vnc_server", ["quiet"], indirect=True)
def test_a_client_gone_before_the_accept_leaves_nothing_open(vnc_server, test_host, user_client) -> None:
    """The checks passed and the VNC server is connected, but the client hung up before the handshake was
    answered: the server (as uvicorn does) raises on the accept. The VNC connection is closed and the end
    audited all the same."""
    ticket = mint_for(user_client, WEB_01_UUID)
    path = f"/console/ws/testhost/{WEB_01_UUID}/"
    scope = {"type": "websocket", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"origin", ORIGIN.encode()), (b"host", b"127.0.0.1:8000"),
                         (b"cookie", f"sessionid={session_key(user_client)}".encode())],
             "subprotocols": protocols(ticket), "client": ("127.0.0.1", 40000)}

    async def run() -> None:
        inbox: asyncio.Queue[dict] = asyncio.Queue()
        await inbox.put({"type": "websocket.connect"})

        async def send(message: dict) -> None:
            if message["type"] == "websocket.accept":
                await inbox.put({"type": "websocket.disconnect", "code": 1006})
                raise OSError("the client is gone")

        with contextlib.suppress(OSError):
            await asyncio.wait_for(application(scope, inbox.get, send), 20)

    async_to_sync(run)()
    deadline = time.monotonic() + 10
    while vnc_server.open_now and time.monotonic() < deadline:
        time.sleep(0.1)
    assert vnc_server.connections == 1 and vnc_server.open_now == 0, "the VNC connection was left open"
    assert AuditEvent.objects.filter(action="console.close", detail__contains="failed as it opened").exists()
