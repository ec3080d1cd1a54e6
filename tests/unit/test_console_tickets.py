"""Console tickets and the console proxy, against a fake VNC server that records every visitor.

Each refusal must happen before a single byte reaches the VNC server, and be audited."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console import session as console_session
from console import target as targets
from console.models import ConsoleTicket
from console.tickets import Refused, digest, protocols
from hosts import services
from hosts.models import Host
from tests.conftest import BASIC_WORLD, DB_01_UUID, PASSWORD, WEB_01_UUID
from virt.console import VncDisplay
from webkvm.asgi import application
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db(transaction=True)  # the proxy reads the database from other threads
BANNER = b"RFB 003.008\n"
ORIGIN = "http://127.0.0.1:8000"


class FakeVnc:
    """Stands in for a VM's VNC server: sends the RFB banner and records who connected."""

    def __init__(self, port: int = 0) -> None:
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self.talk, args=(conn,), daemon=True).start()

    def talk(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(BANNER)
            while data := conn.recv(4096):
                self.received += data

    def close(self) -> None:
        self._stop = True
        self.listener.close()


@pytest.fixture
def fake_vnc() -> Iterator[FakeVnc]:
    server = FakeVnc()
    yield server
    server.close()


@pytest.fixture
def decoy_vnc() -> Iterator[FakeVnc]:
    server = FakeVnc()
    yield server
    server.close()


@pytest.fixture
def test_host(db: None, fake_vnc: FakeVnc, tmp_path) -> Host:  # overrides tests/conftest.py's
    """basic.xml with web-01's VNC on the fake server's port and db-01 given a VNC password."""
    world = BASIC_WORLD.read_text().replace('port="5899"', f'port="{fake_vnc.port}"').replace(
        '<vcpu>4</vcpu>\n    <os><type arch="x86_64">hvm</type></os>\n  </domain>',
        f'<vcpu>4</vcpu>\n    <os><type arch="x86_64">hvm</type></os>\n    <devices><graphics type="vnc" '
        f'port="{fake_vnc.port}" autoport="no" listen="127.0.0.1" passwd="sekrit"/></devices>\n  </domain>', 1)
    path = tmp_path / "world.xml"
    path.write_text(world)
    return Host.objects.create(name="testhost", transport="test", path=str(path))


def session_key(client: Client) -> str:
    return client.cookies["sessionid"].value


def mint(client: Client, vm: str = WEB_01_UUID) -> str:
    response = client.post(reverse("console:ticket", args=["testhost", vm]))
    assert response.status_code == 200, response.content
    return response.json()["ticket"]


@dataclass(frozen=True)
class Socket:
    """A console WebSocket as the page opens it: the path (switches in its query), the ticket a subprotocol."""

    path: str
    ticket: str


def ws_path(ticket: str, vm: str = WEB_01_UUID, extra: str = "") -> Socket:
    return Socket(f"/console/ws/testhost/{vm}/" + (f"?{extra.lstrip('&')}" if extra else ""), ticket)


async def _open(path: Socket, cookie: str, origin: str = ORIGIN) -> tuple[WebsocketCommunicator, list[dict]]:
    communicator = WebsocketCommunicator(application, path.path, headers=[
        (b"origin", origin.encode()), (b"host", b"127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())],
        subprotocols=protocols(path.ticket))
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    messages = []
    while True:
        message = await communicator.receive_output(timeout=10)
        messages.append(message)
        if message["type"] == "websocket.close" or message.get("bytes", b"").startswith(b"RFB"):
            return communicator, messages


def connect(path: Socket, cookie: str, origin: str = ORIGIN) -> list[dict]:
    """Open the console WebSocket; return what came back before the banner or the close."""
    async def run() -> list[dict]:
        communicator, messages = await _open(path, cookie, origin)
        await communicator.disconnect()
        return messages
    return async_to_sync(run)()


def refused(messages: list[dict]) -> str:
    last = messages[-1]
    assert last["type"] == "websocket.close" and last.get("code") == 4403, messages
    return last.get("reason", "")


# ---- minting ------------------------------------------------------------------------------

def test_ticket_is_minted_by_post_only_for_the_console_grant(personas, fake_vnc) -> None:
    url = reverse("console:ticket", args=["testhost", WEB_01_UUID])
    assert personas["user"].get(url).status_code == 405
    assert personas["outsider"].post(url).status_code == 403
    assert personas["anonymous"].post(url).status_code == 302  # to the login page
    answer = personas["user"].post(url).json()
    assert answer["expires_in"] == 30 and answer["ws_path"] == f"/console/ws/testhost/{WEB_01_UUID}/"
    stored = ConsoleTicket.objects.get()
    assert stored.token_hash == digest(answer["ticket"]) and answer["ticket"] not in str(stored.__dict__)
    assert len(answer["ticket"]) >= 43  # 32 random bytes
    assert timedelta(seconds=29) < stored.expires - timezone.now() <= timedelta(seconds=30)
    assert AuditEvent.objects.filter(action="console.ticket", username="alice").count() == 1
    assert AuditEvent.objects.filter(action="denied:console", username="mallory").count() == 1
    assert fake_vnc.connections == 0


@pytest.mark.parametrize("ticket_url", ["console:ticket", "console:serial_ticket"])
def test_ticket_post_needs_csrf(granted_user, ticket_url: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(granted_user)
    assert client.post(reverse(ticket_url, args=["testhost", WEB_01_UUID])).status_code == 403
    assert not ConsoleTicket.objects.exists()


def test_console_page_for_console_grant_only(personas, granted_user) -> None:
    url = reverse("console:page", args=["testhost", WEB_01_UUID])
    page = personas["user"].get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="console-screen"' in html and "console.js" in html and "Shut down" in html
    assert personas["outsider"].get(url).status_code == 403
    VMGrant.objects.filter(user=granted_user).update(can_console=False)
    assert personas["user"].get(url).status_code == 403
    assert personas["user"].post(reverse("console:ticket", args=["testhost", WEB_01_UUID])).status_code == 403


# ---- the proxy: the good path --------------------------------------------------------------

def test_valid_ticket_reaches_the_vnc_server_once(user_client, fake_vnc) -> None:
    ticket = mint(user_client)
    messages = connect(ws_path(ticket), session_key(user_client))
    assert messages[-1]["bytes"] == BANNER
    assert fake_vnc.connections == 1
    assert AuditEvent.objects.filter(action="console.open", username="alice").count() == 1
    assert "already used" in refused(connect(ws_path(ticket), session_key(user_client)))
    assert fake_vnc.connections == 1


def test_bytes_flow_to_the_vnc_server(user_client, fake_vnc) -> None:
    path = ws_path(mint(user_client))

    async def run() -> None:
        communicator, _ = await _open(path, session_key(user_client))
        await communicator.send_to(bytes_data=b"RFB 003.008\n")
        deadline = time.monotonic() + 5
        while fake_vnc.received != b"RFB 003.008\n" and time.monotonic() < deadline:
            await communicator.receive_nothing(0.05)
        await communicator.disconnect()
    async_to_sync(run)()
    assert fake_vnc.received == b"RFB 003.008\n"
    deadline = time.monotonic() + 5
    while not AuditEvent.objects.filter(action="console.close").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert AuditEvent.objects.filter(action="console.close", username="alice").exists()


# ---- the proxy: every refusal, before a byte reaches the VNC server ------------------------

def expire(ticket: str) -> str:
    ConsoleTicket.objects.filter(token_hash=digest(ticket)).update(expires=timezone.now() - timedelta(seconds=1))
    return ticket


@pytest.mark.parametrize(("case", "reason"), [
    ("no ticket", "no console ticket"),
    ("random ticket", "unknown console ticket"),
    ("expired ticket", "expired"),
    ("another user's ticket", "another login session"),
    ("ticket for another VM", "another VM"),
    ("foreign origin", "foreign origin"),
    ("null origin", "foreign origin"),
    ("no session cookie", "another login session"),
])
def test_refused_before_any_byte_reaches_vnc(case, reason, user_client, admin_client, fake_vnc) -> None:
    cookie, origin, vm = session_key(user_client), ORIGIN, WEB_01_UUID
    ticket = {"no ticket": "", "random ticket": "A" * 43}.get(case)
    if ticket is None:
        ticket = mint(user_client)
    if case == "expired ticket":
        expire(ticket)
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
    assert reason in refused(connect(ws_path(ticket, vm), cookie, origin))
    assert fake_vnc.connections == 0
    denied = AuditEvent.objects.filter(action="console.refused")
    assert denied.count() == 1 and reason in denied.get().detail


def test_other_users_ticket_in_their_session_is_refused(user_client, fake_vnc) -> None:
    """bob has the same grant; alice's ticket with bob's cookie is refused."""
    bob = get_user_model().objects.create_user("bob", "", PASSWORD)
    grant = VMGrant.objects.get(vm_uuid=WEB_01_UUID)
    VMGrant.objects.create(user=bob, host=grant.host, vm_uuid=WEB_01_UUID, can_console=True)
    bob_client = Client()
    bob_client.force_login(bob)
    assert "another login session" in refused(connect(ws_path(mint(user_client)), session_key(bob_client)))
    assert fake_vnc.connections == 0


def test_client_supplied_host_and_port_are_ignored(user_client, fake_vnc, decoy_vnc) -> None:
    extra = f"&host=127.0.0.1&port={decoy_vnc.port}&target=127.0.0.1:{decoy_vnc.port}"
    messages = connect(ws_path(mint(user_client), extra=extra), session_key(user_client))
    assert messages[-1]["bytes"] == BANNER
    assert (fake_vnc.connections, decoy_vnc.connections) == (1, 0)


def test_grant_revoked_before_use_is_refused(user_client, granted_user, fake_vnc) -> None:
    ticket = mint(user_client)
    VMGrant.objects.filter(user=granted_user).update(can_console=False)
    assert "no console permission" in refused(connect(ws_path(ticket), session_key(user_client)))
    assert fake_vnc.connections == 0


# ---- sessions end when the user, the grant or the VM goes -----------------------------------

def run_until_closed(user_client: Client, change) -> dict:
    path, cookie = ws_path(mint(user_client)), session_key(user_client)

    async def run() -> dict:
        communicator, messages = await _open(path, cookie)
        assert messages[-1]["bytes"] == BANNER
        from asgiref.sync import sync_to_async
        await sync_to_async(change, thread_sensitive=False)()
        closing = await communicator.receive_output(timeout=10)
        while closing["type"] != "websocket.close":
            closing = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        return closing
    return async_to_sync(run)()


@pytest.fixture
def quick_recheck(settings) -> None:
    settings.WEBKVM_CONSOLE_RECHECK_SECONDS = 0.2


def test_revoking_the_grant_closes_the_session(user_client, granted_user, fake_vnc, quick_recheck) -> None:
    closing = run_until_closed(user_client, lambda: VMGrant.objects.filter(user=granted_user).delete())
    assert closing["code"] == 4000 and "withdrawn" in closing["reason"]
    assert AuditEvent.objects.filter(action="console.close", detail__contains="withdrawn").exists()


def test_logout_closes_the_session(user_client, fake_vnc, quick_recheck) -> None:
    closing = run_until_closed(user_client, user_client.logout)
    assert closing["code"] == 4000 and "logged out" in closing["reason"]


def test_deleting_the_vm_closes_the_session(user_client, test_host, fake_vnc, quick_recheck) -> None:
    def delete_vm() -> None:
        def undefine(conn) -> None:
            dom = conn.lookupByUUIDString(WEB_01_UUID)
            dom.destroy()
            dom.undefine()
        services.call(test_host, undefine)
    closing = run_until_closed(user_client, delete_vm)
    assert closing["code"] == 4000 and ("no longer exists" in closing["reason"] or "not running" in closing["reason"])


# ---- origins and targets ---------------------------------------------------------------------

def test_origin_rules(settings) -> None:
    settings.ALLOWED_HOSTS = ["panel.example.org", "127.0.0.1"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://public.example.org"]
    allowed = console_session.origin_allowed
    assert allowed("https://panel.example.org", "panel.example.org")
    assert allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert allowed("https://public.example.org", "127.0.0.1:8000")  # behind a reverse proxy
    assert not allowed("https://evil.example", "panel.example.org")
    assert not allowed("https://panel.example.org.evil.example", "panel.example.org")
    assert not allowed("http://127.0.0.1:9999", "127.0.0.1:8000")
    assert not allowed("http://attacker.example", "attacker.example")  # not in ALLOWED_HOSTS
    assert not allowed("", "panel.example.org") and not allowed("null", "panel.example.org")


def _display(listen: str) -> VncDisplay:
    return VncDisplay(vm_name="vm1", port=5905, listen=listen, has_password=False)


@pytest.mark.parametrize(("transport", "hostname", "listen", "expected"), [
    ("tls", "kvm.example.org", "127.0.0.1", "cannot reach over tls: add the host over ssh"),
    ("tls", "kvm.example.org", "0.0.0.0", ("kvm.example.org", False)),
    ("tls", "198.51.100.1", "198.51.100.1", ("198.51.100.1", False)),  # the host's own address
    ("tls", "198.51.100.1", "192.0.2.7", "not an address of host far"),  # any other machine: never
    ("tcp", "198.51.100.1", "10.0.0.1", "not an address of host far"),
    ("ssh", "kvm.example.org", "", ("127.0.0.1", True)),  # the host's loopback, through its ssh
    ("ssh", "kvm.example.org", "::1", ("::1", True)),
    ("ssh", "198.51.100.1", "198.51.100.1", ("198.51.100.1", True)),
    ("ssh", "198.51.100.1", "192.0.2.7", "not an address of host far"),  # ssh -W is no way elsewhere
    ("local", "", "127.0.0.1", ("127.0.0.1", False)),
    ("local", "", "192.0.2.7", "not an address of host far"),  # not this machine's
    ("tcp", "127.0.0.1", "192.0.2.7", "not an address of host far"),
])
def test_the_proxy_connects_only_to_the_vms_own_host(db, monkeypatch, transport, hostname, listen, expected) -> None:
    """The live XML's listen address chooses among the host's own addresses only. Remote hosts cannot run
    here, so their display is stood in for."""
    host = Host(name="far", transport=transport, hostname=hostname, path="system" if transport == "local" else "")
    monkeypatch.setattr(targets, "current_display", lambda h, u: _display(listen))
    if isinstance(expected, str):
        with pytest.raises(Refused, match=expected):
            targets.resolve(host, WEB_01_UUID)
        return
    target = targets.resolve(host, WEB_01_UUID)
    assert (target.address, target.via_ssh) == expected


def test_a_display_listening_elsewhere_is_refused_and_nothing_connects(user_client, fake_vnc, test_host) -> None:
    """web-01's live XML names an address that is not its host's: refused in words and audited."""
    world = Path(test_host.path)  # before the panel first opens it
    world.write_text(world.read_text().replace('listen="127.0.0.1"', 'listen="192.0.2.7"', 1))
    reason = refused(connect(ws_path(mint(user_client)), session_key(user_client)))
    assert "192.0.2.7, which is not an address of host testhost" in reason
    assert fake_vnc.connections == 0
    denied = AuditEvent.objects.get(action="console.refused")
    assert "not an address of host testhost" in denied.detail and denied.username == "alice"


@pytest.mark.parametrize("who", ["user", "admin"])
def test_the_hosts_own_words_reach_admins_only(who, user_client, admin_client, fake_vnc, monkeypatch) -> None:
    """A host that fails as the console opens: a user reads that it is unavailable, an admin reads libvirt's
    words; the audit record keeps them either way."""
    from console import target as targets
    from virt.errors import Unreachable

    def failing(domain: object) -> None:
        raise Unreachable("Cannot recv data: ssh: connect to host 10.9.8.7 port 22: No route to host")

    client = {"user": user_client, "admin": admin_client}[who]
    ticket = mint(client)
    monkeypatch.setattr(targets, "vnc_display", failing)
    reason = refused(connect(ws_path(ticket), session_key(client)))
    assert reason.startswith("host testhost does not answer")
    assert ("10.9.8.7" in reason) == (who == "admin") and (who == "admin" or "host unavailable" in reason)
    assert fake_vnc.connections == 0
    assert "10.9.8.7" in AuditEvent.objects.get(action="console.refused").detail


def test_ssh_host_tunnels_to_its_own_loopback(db, monkeypatch, settings, tmp_path) -> None:
    settings.WEBKVM_SSH_DIR = tmp_path / "ssh"
    host = Host(name="kvm2", transport="ssh", hostname="kvm2.example.org", port=2222, username="root")
    monkeypatch.setattr(targets, "current_display", lambda h, u: _display(""))
    target = targets.resolve(host, WEB_01_UUID)
    assert target.via_ssh and (target.address, target.port) == ("127.0.0.1", 5905)
    argv = targets._ssh_command(host, target)
    assert argv[0] == str(tmp_path / "ssh" / "ssh-wrapper")
    assert argv[1:] == ["-T", "-p", "2222", "-W", "127.0.0.1:5905", "-l", "root", "--", "kvm2.example.org"]
    wrapper = (tmp_path / "ssh" / "ssh-wrapper").read_text()
    assert "StrictHostKeyChecking=yes" in wrapper and "UserKnownHostsFile=" in wrapper


# ---- the standalone proxy (manage.py consoleproxy, websockify) --------------------------------

def _standalone(port: int, path: Socket, cookie: str, origin: str = "") -> tuple[bytes | None, object]:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect

    with ws_connect(f"ws://127.0.0.1:{port}{path.path}", origin=origin or f"http://127.0.0.1:{port}", open_timeout=10,
                    additional_headers={"Cookie": f"sessionid={cookie}"}, subprotocols=protocols(path.ticket)) as ws:
        try:
            return ws.recv(timeout=10), None
        except ConnectionClosed as exc:
            return None, exc.rcvd


def test_standalone_proxy_relays_with_a_ticket(user_client, fake_vnc, standalone_proxy) -> None:
    data, _ = _standalone(standalone_proxy, ws_path(mint(user_client)), session_key(user_client))
    assert data == BANNER and fake_vnc.connections == 1


def test_standalone_proxy_refuses_and_serves_no_files(user_client, fake_vnc, standalone_proxy) -> None:
    data, close = _standalone(standalone_proxy, ws_path("B" * 43), session_key(user_client))
    assert data is None and close.code == 4403 and "unknown console ticket" in close.reason
    data, close = _standalone(standalone_proxy, ws_path(mint(user_client)), session_key(user_client),
                              origin="https://evil.example")
    assert data is None and "foreign origin" in close.reason
    assert fake_vnc.connections == 0
    with socket.create_connection(("127.0.0.1", standalone_proxy)) as plain:
        plain.sendall(b"GET /etc/passwd HTTP/1.0\r\n\r\n")
        assert plain.recv(100).split(b"\r\n")[0].endswith(b" 405 Method Not Allowed")


# ---- links to the console ----------------------------------------------------------------------

def test_detail_page_links_the_console_only_with_the_grant(personas, granted_user) -> None:
    url = reverse("instances:detail", args=["testhost", WEB_01_UUID])
    console_url = reverse("console:page", args=["testhost", WEB_01_UUID])
    assert console_url in personas["user"].get(url).content.decode()
    VMGrant.objects.filter(user=granted_user).update(can_console=False)
    assert console_url not in personas["user"].get(url).content.decode()
