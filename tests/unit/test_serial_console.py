"""The serial console: its tickets, page and WebSocket, against a fake libvirt console stream.

Every refusal must come before the console is opened, and be audited; one viewer per VM,
a second one is told who holds it and may take it over explicitly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import libvirt
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from lxml import etree
from lxml.builder import E

from console import serial_session
from console.models import ConsoleTicket
from console.tickets import digest, protocols
from hosts import services
from hosts.models import Host
from tests.conftest import BASIC_WORLD, DB_01_UUID, PASSWORD, WEB_01_UUID
from tests.unit.test_console_tickets import Socket
from virt.serial import ConsoleBusy
from webkvm.asgi import application
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer reads the database from other threads
ORIGIN = "http://127.0.0.1:8000"


class FakeStream:
    """Stands in for a libvirt console stream: output to hand out, input received, aborted or not."""

    def __init__(self) -> None:
        self.output: list[bytes] = [b"SeaBIOS (version fake)\r\n"]
        self.received = b""
        self.aborted = False
        self.eof = False
        self.lock = threading.Lock()

    def recv(self, _nbytes: int) -> bytes | int:
        with self.lock:
            if self.aborted:
                raise libvirt.libvirtError("stream had I/O failure")
            if self.output:
                return self.output.pop(0)
            return b"" if self.eof else -2

    def send(self, data: bytes) -> int:
        with self.lock:
            self.received += data
        return len(data)

    def abort(self) -> int:
        self.aborted = True
        return 0


class FakeConsoles:
    """Replaces virt.serial.open_console: records each open and its force flag."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, bool, FakeStream]] = []
        self.busy_elsewhere = False

    def __call__(self, dom: Any, *, force: bool) -> FakeStream:
        if self.busy_elsewhere and not force:
            raise ConsoleBusy("in use by another client of the host")
        stream = FakeStream()
        self.opened.append((dom.UUIDString(), force, stream))
        return stream


@pytest.fixture
def consoles(monkeypatch) -> FakeConsoles:
    fake = FakeConsoles()
    monkeypatch.setattr(serial_session, "open_console", fake)
    return fake


@pytest.fixture
def test_host(db: None, tmp_path) -> Host:  # overrides tests/conftest.py's
    """basic.xml with a serial port and console on web-01."""
    tree = etree.parse(str(BASIC_WORLD))
    devices = tree.find("./domain[name='web-01']/devices")
    devices.append(E.serial(E.target(port="0"), type="pty"))
    devices.append(E.console(E.target(type="serial", port="0"), type="pty"))
    path = tmp_path / "world.xml"
    tree.write(str(path))
    return Host.objects.create(name="testhost", transport="test", path=str(path))


@pytest.fixture
def quick_recheck(settings) -> None:
    settings.WEBKVM_CONSOLE_RECHECK_SECONDS = 0.2


def session_key(client: Client) -> str:
    return client.cookies["sessionid"].value


def mint(client: Client, vm: str = WEB_01_UUID, kind: str = "serial") -> str:
    name = "console:serial_ticket" if kind == "serial" else "console:ticket"
    response = client.post(reverse(name, args=["testhost", vm]))
    assert response.status_code == 200, response.content
    return response.json()["ticket"]


def ws_path(ticket: str, vm: str = WEB_01_UUID, extra: str = "", kind: str = "serial") -> Socket:
    where = "serial/ws" if kind == "serial" else "ws"
    return Socket(f"/console/{where}/testhost/{vm}/" + (f"?{extra.lstrip('&')}" if extra else ""), ticket)


async def _open(path: Socket, cookie: str, origin: str = ORIGIN, app: Any = None
                ) -> tuple[WebsocketCommunicator, dict]:
    """Open the WebSocket (on the panel's application unless another is given); return it with its first
    message (console output, or the close)."""
    communicator = WebsocketCommunicator(app or application, path.path, headers=[
        (b"origin", origin.encode()), (b"host", b"127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())],
        subprotocols=protocols(path.ticket))
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator, await communicator.receive_output(timeout=10)


async def _until_closed(communicator: WebsocketCommunicator) -> dict:
    message = await communicator.receive_output(timeout=10)
    while message["type"] != "websocket.close":
        message = await communicator.receive_output(timeout=10)
    return message


def connect(path: Socket, cookie: str, origin: str = ORIGIN) -> dict:
    """Open the serial WebSocket; return the first message back."""
    async def run() -> dict:
        communicator, first = await _open(path, cookie, origin)
        await communicator.disconnect()
        return first
    return async_to_sync(run)()


def refused(message: dict, code: int = 4403) -> str:
    assert message["type"] == "websocket.close" and message.get("code") == code, message
    return message.get("reason", "")


def wait_for(condition: Callable[[], bool], seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


# ---- tickets and the page ------------------------------------------------------------------

def test_serial_ticket_is_minted_by_post_only_for_the_console_grant(personas, consoles) -> None:
    url = reverse("console:serial_ticket", args=["testhost", WEB_01_UUID])
    assert personas["user"].get(url).status_code == 405
    assert personas["outsider"].post(url).status_code == 403
    assert personas["anonymous"].post(url).status_code == 302  # to the login page
    answer = personas["user"].post(url).json()
    assert answer["ws_path"] == f"/console/serial/ws/testhost/{WEB_01_UUID}/" and answer["expires_in"] == 30
    stored = ConsoleTicket.objects.get()
    assert stored.kind == "serial" and stored.token_hash == digest(answer["ticket"])
    assert AuditEvent.objects.filter(action="console.ticket", username="alice", detail__startswith="serial").exists()
    assert AuditEvent.objects.filter(action="denied:console", username="mallory").count() == 1
    assert consoles.opened == []


def test_serial_page_for_console_grant_only(personas, granted_user) -> None:
    url = reverse("console:serial", args=["testhost", WEB_01_UUID])
    page = personas["user"].get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="serial-screen"' in html and "vendor/xterm/lib/xterm.js" in html and "js/serial.js" in html
    assert reverse("console:serial_ticket", args=["testhost", WEB_01_UUID]) in html
    assert 'id="serial-takeover"' in html and 'id="serial-reconnect"' in html
    policy = page["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "style-src 'self' 'unsafe-inline'" in policy
    assert personas["outsider"].get(url).status_code == 403
    VMGrant.objects.filter(user=granted_user).update(can_console=False)
    assert personas["user"].get(url).status_code == 403


def test_links_to_the_serial_console_only_with_the_grant(personas, granted_user) -> None:
    serial_url = reverse("console:serial", args=["testhost", WEB_01_UUID])
    detail = reverse("instances:detail", args=["testhost", WEB_01_UUID])
    vnc_page = reverse("console:page", args=["testhost", WEB_01_UUID])
    assert serial_url in personas["user"].get(detail).content.decode()
    assert serial_url in personas["user"].get(vnc_page).content.decode()
    # db-01 has no serial port: no link for it even for an admin.
    db_detail = personas["admin"].get(reverse("instances:detail", args=["testhost", DB_01_UUID])).content.decode()
    assert reverse("console:serial", args=["testhost", DB_01_UUID]) not in db_detail
    VMGrant.objects.filter(user=granted_user).update(can_console=False)
    assert serial_url not in personas["user"].get(detail).content.decode()


# ---- the WebSocket: the good path -----------------------------------------------------------

def test_console_bytes_flow_both_ways(user_client, consoles) -> None:
    path, cookie = ws_path(mint(user_client)), session_key(user_client)

    async def run() -> None:
        communicator, first = await _open(path, cookie)
        assert first == {"type": "websocket.send", "bytes": b"SeaBIOS (version fake)\r\n"}
        await communicator.send_to(bytes_data=b"root\r")
        await communicator.send_to(text_data="ls\r")
        stream = consoles.opened[0][2]
        await sync_to_async(wait_for)(lambda: stream.received == b"root\rls\r")
        stream.output.append(b"# ")
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.send", "bytes": b"# "}
        await communicator.disconnect()
    async_to_sync(run)()
    (vm, force, stream), = consoles.opened
    assert (vm, force) == (WEB_01_UUID, False)  # VIR_DOMAIN_CONSOLE_SAFE unless taking over
    assert wait_for(lambda: stream.aborted)
    assert wait_for(lambda: AuditEvent.objects.filter(action="console.close", username="alice").exists())
    assert AuditEvent.objects.filter(action="console.open", username="alice", detail="serial ticket used").exists()
    assert "serial console: browser closed" in AuditEvent.objects.get(action="console.close").detail


def test_a_stream_that_ends_closes_the_websocket(user_client, consoles) -> None:
    path, cookie = ws_path(mint(user_client)), session_key(user_client)

    async def run() -> dict:
        communicator, first = await _open(path, cookie)
        assert first["bytes"].startswith(b"SeaBIOS")
        consoles.opened[0][2].eof = True
        closing = await _until_closed(communicator)
        await communicator.disconnect()
        return closing
    closing = async_to_sync(run)()
    assert closing["code"] == 4000 and "serial console closed" in closing["reason"]


# ---- refusals, before the console is opened --------------------------------------------------

def expire(ticket: str) -> str:
    ConsoleTicket.objects.filter(token_hash=digest(ticket)).update(expires=timezone.now() - timedelta(seconds=1))
    return ticket


@pytest.mark.parametrize(("case", "reason"), [
    ("no ticket", "no console ticket"),
    ("random ticket", "unknown console ticket"),
    ("expired ticket", "expired"),
    ("used ticket", "already used"),
    ("VNC ticket", "for the VNC console, not the serial one"),
    ("another user's ticket", "another login session"),
    ("ticket for another VM", "another VM"),
    ("foreign origin", "foreign origin"),
    ("null origin", "foreign origin"),
    ("no session cookie", "another login session"),
    ("grant withdrawn after minting", "no console permission"),
])
def test_refused_before_the_console_opens(case, reason, user_client, admin_client, granted_user, consoles) -> None:
    cookie, origin = session_key(user_client), ORIGIN
    ticket = {"no ticket": "", "random ticket": "A" * 43}.get(case)
    if ticket is None:
        ticket = mint(user_client, kind="vnc" if case == "VNC ticket" else "serial")
    if case == "expired ticket":
        expire(ticket)
    elif case == "used ticket":
        ConsoleTicket.objects.update(used_at=timezone.now())
    elif case == "another user's ticket":
        ticket = mint(admin_client)  # admin's ticket, alice's session
    elif case == "ticket for another VM":
        VMGrant.objects.filter(vm_uuid=WEB_01_UUID).update(vm_uuid=DB_01_UUID)
        ticket = mint(user_client, DB_01_UUID)
        VMGrant.objects.filter(vm_uuid=DB_01_UUID).update(vm_uuid=WEB_01_UUID)
    elif case == "foreign origin":
        origin = "https://evil.example"
    elif case == "null origin":
        origin = "null"
    elif case == "no session cookie":
        cookie = ""
    elif case == "grant withdrawn after minting":
        VMGrant.objects.filter(user=granted_user).update(can_console=False)
    assert reason in refused(connect(ws_path(ticket), cookie, origin))
    assert consoles.opened == []
    denied = AuditEvent.objects.filter(action="console.refused")
    assert denied.count() == 1 and reason in denied.get().detail


def test_serial_ticket_does_not_open_the_vnc_console(user_client, consoles) -> None:
    ticket = mint(user_client)  # a serial ticket, on the VNC WebSocket
    assert "for the serial console, not the vnc one" in refused(connect(ws_path(ticket, kind="vnc"),
                                                                       session_key(user_client)))


def test_vnc_ticket_still_opens_the_vnc_path(user_client, consoles) -> None:
    """A VNC ticket passes every ticket check on the VNC WebSocket. web-01's VNC port 5899 is below
    qemu's autoport range and closed, so it stops at reaching the server: after the ticket was accepted."""
    ticket = mint(user_client, kind="vnc")
    reason = refused(connect(ws_path(ticket, kind="vnc"), session_key(user_client)))
    assert "ticket" not in reason
    assert AuditEvent.objects.filter(action="console.open", detail="ticket used").count() == 1


def test_vm_not_running_is_refused_in_words(user_client, test_host) -> None:
    services.call(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).destroy())
    reason = refused(connect(ws_path(mint(user_client)), session_key(user_client)))
    assert "web-01 is not running" in reason


def test_test_driver_without_console_support_is_refused_in_words(user_client, admin_client) -> None:
    """libvirt's own words reach admins; a user reads that the host reported an error."""
    assert "not supported" in refused(connect(ws_path(mint(admin_client)), session_key(admin_client)))
    reason = refused(connect(ws_path(mint(user_client)), session_key(user_client)))
    assert reason == "serial console: the host reported an error"


# ---- one viewer per VM, and take over -------------------------------------------------------

@pytest.fixture
def bob_client(granted_user, test_host) -> Client:
    bob = get_user_model().objects.create_user("bob", "", PASSWORD)
    VMGrant.objects.create(user=bob, host=test_host, vm_uuid=WEB_01_UUID, can_console=True)
    client = Client()
    client.force_login(bob)
    return client


def test_second_viewer_sees_who_holds_it_and_may_take_over(user_client, bob_client, consoles) -> None:
    alice_path, alice_cookie = ws_path(mint(user_client)), session_key(user_client)
    bob_cookie = session_key(bob_client)
    bob_paths = [ws_path(mint(bob_client)), ws_path(mint(bob_client), extra="&takeover=1")]

    async def run() -> tuple[dict, dict, dict]:
        alice, first = await _open(alice_path, alice_cookie)
        assert first["bytes"].startswith(b"SeaBIOS")
        in_use = (await _open(bob_paths[0], bob_cookie))[1]
        bob, bob_first = await _open(bob_paths[1], bob_cookie)
        alice_closing = await _until_closed(alice)
        await alice.disconnect()
        await bob.disconnect()
        return in_use, bob_first, alice_closing
    in_use, bob_first, alice_closing = async_to_sync(run)()
    assert refused(in_use, 4409).startswith("in use by alice since ")
    assert bob_first["bytes"].startswith(b"SeaBIOS")
    assert alice_closing["code"] == 4001 and alice_closing["reason"] == "taken over by bob"
    assert [force for _vm, force, _s in consoles.opened] == [False, True]  # FORCE only to take over
    assert wait_for(lambda: consoles.opened[0][2].aborted)
    takeover = AuditEvent.objects.get(action="console.takeover")
    assert takeover.username == "bob" and "from alice since" in takeover.detail
    assert AuditEvent.objects.filter(action="console.refused", username="bob", detail__contains="in use by alice")
    assert wait_for(lambda: AuditEvent.objects.filter(action="console.close", username="alice",
                                                      detail__contains="taken over by bob").exists())


def test_console_held_outside_the_panel(user_client, consoles) -> None:
    consoles.busy_elsewhere = True  # e.g. virsh console on the host
    reason = refused(connect(ws_path(mint(user_client)), session_key(user_client)), 4409)
    assert "in use by another client of the host" in reason
    first = connect(ws_path(mint(user_client), extra="&takeover=1"), session_key(user_client))
    assert first["bytes"].startswith(b"SeaBIOS")
    assert consoles.opened[0][1] is True
    assert "from any other client" in AuditEvent.objects.get(action="console.takeover").detail


def test_the_console_is_free_again_after_close(user_client, bob_client, consoles) -> None:
    connect(ws_path(mint(user_client)), session_key(user_client))
    assert wait_for(lambda: serial_session.sessions.holder((Host.objects.get().pk, WEB_01_UUID)) is None)
    first = connect(ws_path(mint(bob_client)), session_key(bob_client))
    assert first["bytes"].startswith(b"SeaBIOS")


# ---- sessions end when the user, the grant or the VM goes -----------------------------------

def run_until_closed(client: Client, change: Callable[[], Any]) -> dict:
    path, cookie = ws_path(mint(client)), session_key(client)

    async def run() -> dict:
        communicator, first = await _open(path, cookie)
        assert first["type"] == "websocket.send"
        await sync_to_async(change, thread_sensitive=False)()
        closing = await _until_closed(communicator)
        await communicator.disconnect()
        return closing
    return async_to_sync(run)()


def test_revoking_the_grant_closes_the_session(user_client, granted_user, consoles, quick_recheck) -> None:
    closing = run_until_closed(user_client, lambda: VMGrant.objects.filter(user=granted_user).delete())
    assert closing["code"] == 4000 and "withdrawn" in closing["reason"]
    assert wait_for(lambda: AuditEvent.objects.filter(action="console.close", detail__contains="withdrawn").exists())


def test_logout_closes_the_session(user_client, consoles, quick_recheck) -> None:
    closing = run_until_closed(user_client, user_client.logout)
    assert closing["code"] == 4000 and "logged out" in closing["reason"]


def test_deleting_the_vm_closes_the_session(user_client, test_host, consoles, quick_recheck) -> None:
    def delete_vm() -> None:
        def undefine(conn: Any) -> None:
            dom = conn.lookupByUUIDString(WEB_01_UUID)
            dom.destroy()
            dom.undefine()
        services.call(test_host, undefine)
    closing = run_until_closed(user_client, delete_vm)
    assert closing["code"] == 4000 and "no longer exists" in closing["reason"]


@pytest.fixture(autouse=True)
def _no_sessions_left() -> Iterator[None]:
    yield
    assert wait_for(lambda: not serial_session.sessions._held), "a serial session outlived its test"
