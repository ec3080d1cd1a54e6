"""The console proxy against real qemu VNC servers of the lab: the RFB banner through a ticket,
VNC passwords answered by the proxy (never by the browser), and a deleted VM's port taken by another VM."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db.utils import OperationalError
from django.test import Client
from django.urls import reverse

from bench.vnc import RfbClient, TcpTransport, WebSocketTransport
from console import rfb
from hosts import services
from hosts.models import Host
from tests.lab import domain_xml, remove_domain
from tests.lab_resources import local_or_ssh
from tests.panel_server import free_port, serve_panel
from virt.xml.domain import Domain
from webkvm.asgi import application
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
PASSWORD = "s3cr3t!x"  # qemu takes at most 8 characters


def open_console(client: Client, host: Host, vm_uuid: str) -> dict:
    """Mint a ticket as the page does, open the WebSocket, return the first message back."""
    answer = client.post(reverse("console:ticket", args=[host.name, vm_uuid])).json()
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def run() -> dict:
        communicator = WebsocketCommunicator(application, answer["ws_path"], headers=[
            (b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), (b"cookie", cookie)],
            subprotocols=answer["protocols"])
        connected, _ = await communicator.connect(timeout=15)
        assert connected
        first = await communicator.receive_output(timeout=20)
        await communicator.disconnect()
        return first
    return async_to_sync(run)()


@pytest.mark.parametrize("transport", ["local", "tcp"])
def test_banner_of_a_real_vm_through_the_proxy(admin_client, lab: dict[str, Any], lab_domain, transport) -> None:
    dom = lab_domain()
    if transport == "local":
        host = Host.objects.create(name="lab-local", transport="local", path="system")
    else:
        host = Host.objects.create(name="lab-tcp", transport="tcp", hostname="127.0.0.1", port=16509,
                                   insecure_tcp=True)
    first = open_console(admin_client, host, dom.UUIDString())
    assert first["type"] == "websocket.send", first
    assert first["bytes"].startswith(b"RFB 003.008"), first
    assert AuditEvent.objects.filter(action="console.open", host_name=host.name).count() == 1


def test_ssh_host_console_goes_through_ssh(admin_client, lab: dict[str, Any], lab_domain,
                                           panel_key_authorized) -> None:
    """Over ssh the proxy runs `ssh -W 127.0.0.1:PORT` with the panel's key and pinned host key:
    the VM's VNC on the host's loopback answers through the tunnel."""
    dom = lab_domain()
    host = Host.objects.create(name="lab-ssh", transport="ssh", hostname="127.0.0.1", port=2222, username="root",
                               ssh_host_keys="\n".join(lab["ssh"]["host_keys"]))
    services.sync_known_hosts()
    first = open_console(admin_client, host, dom.UUIDString())
    assert first["type"] == "websocket.send" and first["bytes"].startswith(b"RFB 003.008"), first


# ---- a live panel (uvicorn on loopback) and lab VMs with chosen display settings ---------------------

@pytest.fixture
def panel_server() -> Iterator[str]:
    """The panel's ASGI app (pages, static files, console WebSockets) under uvicorn on 127.0.0.1, in this
    process so that it shares the test database: Django's live_server speaks no WebSocket."""
    with serve_panel() as url:
        yield url


@pytest.fixture
def vnc_domain(lab: dict[str, Any]) -> Iterator[Callable[..., libvirt.virDomain]]:
    """Factory: a running diskless test- VM whose VNC display has the given password / fixed port."""
    conn = libvirt.open(lab["unix_uri"])
    made: list[libvirt.virDomain] = []

    def make(password: str | None = None, port: int | None = None, valid_to: str | None = None,
             name: str | None = None) -> libvirt.virDomain:
        xml = Domain.from_xml(domain_xml(name or f"test-{uuid.uuid4().hex[:8]}", lab["domain_type"]))
        vnc = xml.graphics[0]
        vnc.passwd = password
        if port is not None:
            vnc.autoport, vnc.port = False, port
        if valid_to is not None:
            vnc.element.set("passwdValidTo", valid_to)
        dom = conn.defineXML(xml.to_xml())
        made.append(dom)
        dom.create()
        return dom

    yield make
    for dom in made:
        remove_domain(dom)
    conn.close()


def display_port(dom: libvirt.virDomain) -> int:
    port = Domain.from_xml(dom.XMLDesc(0)).graphics[0].port
    assert port is not None and port > 0
    return port


def ticket_url(client: Client, server: str, host: Host, vm_uuid: str) -> tuple[str, list[str]]:
    """The console WebSocket's URL and the subprotocols that carry a fresh ticket."""
    answer = client.post(reverse("console:ticket", args=[host.name, vm_uuid])).json()
    return f"{server.replace('http', 'ws', 1)}{answer['ws_path']}", answer["protocols"]


def browser_socket(client: Client, server: str, url: tuple[str, list[str]]) -> WebSocketTransport:
    """The console WebSocket as the page opens it: its own origin, the login cookie, the ticket a subprotocol."""
    return WebSocketTransport(url[0], origin=server, cookie=f"sessionid={client.cookies['sessionid'].value}",
                              subprotocols=url[1])


class Recording:
    """A transport that keeps every byte the browser side received."""

    def __init__(self, inner: WebSocketTransport) -> None:
        self.inner, self.received = inner, bytearray()

    def send(self, data: bytes) -> None:
        self.inner.send(data)

    def recv(self) -> bytes:
        data = self.inner.recv()
        self.received += data
        return data

    def close(self) -> None:
        self.inner.close()


def seabios_rows(viewer: RfbClient, timeout: float = 20) -> list[int]:
    """Text rows of the VM's screen, once SeaBIOS has written its banner on the first one."""
    deadline = time.monotonic() + timeout
    rows = viewer.screen().text_rows()
    while rows[0] < 10 and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = viewer.screen().text_rows()
    return rows


def vnc_clients(port: int) -> int:
    """Established TCP connections to a VNC port on this machine (the lab's qemu)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"], capture_output=True,
                         text=True, check=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def wait_for_close(host: Host, count: int = 1) -> None:
    """Until the proxy recorded the end of the session(s). The live server writes from its own thread, and
    the shared in-memory test database locks a table while it does."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if AuditEvent.objects.filter(action="console.close", host_name=host.name).count() >= count:
                return
        except OperationalError:
            pass
        time.sleep(0.1)
    pytest.fail("the console session was not recorded as closed")


# ---- VNC passwords: the proxy answers the challenge, the browser is offered None ---------------------

@pytest.mark.parametrize("transport", ["local", "ssh"])
def test_password_display_opens_without_the_password_reaching_the_browser(
        admin_client, lab: dict[str, Any], vnc_domain, panel_server, panel_key_authorized, transport) -> None:
    dom = vnc_domain(password=PASSWORD)
    host = local_or_ssh(transport, lab)
    page = admin_client.get(reverse("console:page", args=[host.name, dom.UUIDString()]))
    assert page.status_code == 200 and PASSWORD not in page.content.decode()
    wire = Recording(browser_socket(admin_client, panel_server,
                                    ticket_url(admin_client, panel_server, host, dom.UUIDString())))
    viewer = RfbClient(wire)  # no password: it gets security type None, or fails
    try:
        assert viewer.name == f"QEMU ({dom.name()})"
        assert seabios_rows(viewer)[0] >= 10, "no SeaBIOS banner through the proxy"
    finally:
        viewer.close()
    assert wire.received.startswith(b"RFB 003.008\n\x01\x01\x00\x00\x00\x00")  # offered None, then OK
    assert PASSWORD.encode() not in wire.received
    wait_for_close(host)
    events = AuditEvent.objects.filter(host_name=host.name)
    assert events.filter(action="console.open").count() == 1
    assert not any(PASSWORD in f"{e.detail} {e.object_name}" for e in events)


def test_password_display_through_the_standalone_proxy(admin_client, lab: dict[str, Any], vnc_domain) -> None:
    from console.proxy import make_server

    dom = vnc_domain(password=PASSWORD)
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    server = make_server("127.0.0.1", 0, 5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        viewer = RfbClient(browser_socket(admin_client, origin,
                                          ticket_url(admin_client, origin, host, dom.UUIDString())))
        try:
            assert viewer.name == f"QEMU ({dom.name()})"
            assert seabios_rows(viewer)[0] >= 10
        finally:
            viewer.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_password_the_server_no_longer_accepts_is_refused_in_words(admin_client, vnc_domain, panel_server,
                                                                    ) -> None:
    """passwdValidTo in the past: qemu refuses the password; the browser is told why, nothing more."""
    dom = vnc_domain(password=PASSWORD, valid_to="2001-01-01T00:00:00")
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    wire = browser_socket(admin_client, panel_server, ticket_url(admin_client, panel_server, host, dom.UUIDString()))
    assert wire.recv() == b""
    assert wire.close_reason.startswith("4403 ") and "did not accept the VM's password" in wire.close_reason
    refused = AuditEvent.objects.get(action="console.refused", host_name=host.name)
    assert "did not accept the VM's password" in refused.detail and PASSWORD not in refused.detail


def test_the_proxy_speaks_vnc_auth_as_qemu_expects(lab: dict[str, Any], vnc_domain) -> None:
    """Directly against qemu, without the panel: right password in, wrong password refused."""
    dom = vnc_domain(password=PASSWORD)
    port = display_port(dom)
    viewer = RfbClient(TcpTransport(("127.0.0.1", port)), password=PASSWORD)
    assert viewer.name == f"QEMU ({dom.name()})"
    viewer.close()
    with socket.create_connection(("127.0.0.1", port)) as sock, pytest.raises(rfb.RfbError, match="did not accept"):
        rfb.authenticate(sock, PASSWORD[:-1] + "?")


# ---- a deleted VM's display port taken by another VM ---------------------------------------------------

def test_vm_deleted_and_its_port_reused_by_another_vm(admin_client, lab: dict[str, Any], vnc_domain,
                                                       panel_server) -> None:
    """A's viewer is closed when A goes, A's unused ticket is refused, and nothing of B reaches either:
    the proxy resolves the VM by UUID and its socket belonged to A's qemu, which is gone."""
    port = free_port()
    vm_a = vnc_domain(port=port)
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    spare_ticket = ticket_url(admin_client, panel_server, host, vm_a.UUIDString())
    wire = Recording(browser_socket(admin_client, panel_server,
                                    ticket_url(admin_client, panel_server, host, vm_a.UUIDString())))
    viewer = RfbClient(wire)
    assert viewer.name == f"QEMU ({vm_a.name()})"
    seen_before = len(wire.received)

    assert remove_domain(vm_a)
    vm_b = vnc_domain(port=port)
    assert display_port(vm_b) == port

    deadline = time.monotonic() + 10
    while wire.recv() and time.monotonic() < deadline:
        pass  # whatever A's qemu still had in flight, up to the close
    # Closed by whichever comes first: the end of A's qemu (its socket) or the proxy's re-check (A is gone).
    reason = wire.inner.close_reason
    assert reason.startswith("4000 ") and ("VNC server closed" in reason or "no longer exists" in reason), reason
    assert vm_b.name().encode() not in wire.received[seen_before:]
    assert b"RFB" not in wire.received[seen_before:]

    late = browser_socket(admin_client, panel_server, spare_ticket)
    assert late.recv() == b""
    assert late.close_reason.startswith("4403 ") and "no longer exists" in late.close_reason
    assert vnc_clients(port) == 0, "a connection reached the VM that took the port"
    wait_for_close(host)
    refused = AuditEvent.objects.get(action="console.refused", host_name=host.name)
    assert refused.object_name == vm_a.UUIDString() and "no longer exists" in refused.detail


# ---- failures leave no ssh process or VNC connection behind ----------------------------------------------

def ssh_children() -> list[int]:
    """The console's `ssh -W` processes this process started and has not reaped (running, or exited and a
    zombie); not the ssh of libvirt's own qemu+ssh connection, which lives as long as the host's connection."""
    mine, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            name, fields = stat.read_text().rsplit(")", 1)
            state, parent = fields.split()[:2]
            if int(parent) != mine or not name.endswith("(ssh"):
                continue
            if state == "Z" or b"\0-W\0" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
    return found


def no_ssh_left(seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := ssh_children()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


FAILURES = ["standalone: handshake without Sec-WebSocket-Version", "panel: password refused by the VNC server",
            "standalone: password refused by the VNC server"]


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_console_over_ssh_leaves_no_ssh_process(admin_client, lab: dict[str, Any], vnc_domain,
                                                         panel_server, panel_key_authorized, failure) -> None:
    from console.proxy import make_server
    from tests.unit.test_console_cleanup import raw_upgrade

    dom = vnc_domain(password=PASSWORD, valid_to="2001-01-01T00:00:00")  # qemu refuses the password
    host = local_or_ssh("ssh", lab)
    standalone = make_server("127.0.0.1", 0, 5)
    threading.Thread(target=standalone.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{standalone.server_address[1]}"
    try:
        for _ in range(3):
            if failure.startswith("standalone: handshake"):
                answer = admin_client.post(reverse("console:ticket", args=[host.name, dom.UUIDString()])).json()
                reply = raw_upgrade(standalone.server_address[1], answer["ws_path"], answer["ticket"],
                                    admin_client.cookies["sessionid"].value, leave_out="Sec-WebSocket-Version")
                assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
                continue
            server = origin if failure.startswith("standalone") else panel_server
            wire = browser_socket(admin_client, server, ticket_url(admin_client, server, host, dom.UUIDString()))
            assert wire.recv() == b""
            assert wire.close_reason.startswith("4403 ") and "did not accept the VM's password" in wire.close_reason
        assert no_ssh_left() == [], "an ssh tunnel outlived its console"
        assert vnc_clients(display_port(dom)) == 0
    finally:
        standalone.shutdown()
        standalone.server_close()
    refused = AuditEvent.objects.filter(action="console.refused", host_name=host.name)
    if failure.startswith("standalone: handshake"):
        assert not refused.exists() and not AuditEvent.objects.filter(action="console.open").exists()
    else:
        assert sum(refused.values_list("repeats", flat=True)) == 3


# ---- a console opened through the API: the ticket bound to a token, the WebSocket sending it -------------

def test_a_token_minted_ticket_and_the_bearer_header_reach_a_real_vm(admin_user, lab: dict[str, Any], lab_domain,
                                                                     panel_server) -> None:
    """A non-browser client as the API answer tells it: the ticket from POST .../console/ticket/ with a token,
    then the WebSocket on the live panel with `Authorization: Bearer` (the same token), no Origin, no cookie.
    The same ticket with another token is refused first, before qemu sees a byte."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect

    from api.models import ApiToken
    from tests.unit.test_api_access import TokenClient

    dom = lab_domain()
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    text = ApiToken.make(admin_user, "lab-cli")[1]
    other = ApiToken.make(admin_user, "lab-other")[1]

    def first_bytes(bearer: str) -> tuple[bytes | None, str]:
        answer = TokenClient(text).post(f"/api/v1/vms/{host.name}/{dom.UUIDString()}/console/ticket/")
        assert answer.status_code == 200, answer.content
        body = answer.json()
        url = panel_server.replace("http", "ws", 1) + body["ws_path"]
        with ws_connect(url, additional_headers={"Authorization": f"Bearer {bearer}"},
                        subprotocols=body["protocols"], open_timeout=15) as ws:
            try:
                return ws.recv(timeout=20), ""
            except ConnectionClosed as exc:
                return None, exc.rcvd.reason if exc.rcvd else ""

    data, reason = first_bytes(other)
    assert data is None and "another API token" in reason
    data, _ = first_bytes(text)
    assert isinstance(data, bytes) and data.startswith(b"RFB 003.00"), data
    wait_for_close(host)
    opened = AuditEvent.objects.get(action="console.open", host_name=host.name)
    assert opened.detail == "ticket used (through the API, token lab-cli)"
