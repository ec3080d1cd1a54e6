"""The serial console against real VMs of the lab: SeaBIOS output (`<bios useserial='yes'/>`) read
through the panel's WebSocket over the local socket, qemu+tcp and qemu+ssh; take over moves the
session, and cuts off a console held outside the panel."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from lxml import etree
from lxml.builder import E

from hosts import services
from hosts.models import Host
from tests.conftest import PASSWORD
from tests.lab import domain_xml, remove_domain
from virt.connections import start_event_loop
from webkvm.asgi import application
from webkvm.models import AuditEvent, VMGrant

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def serial_domain_xml(name: str, domain_type: str, boot_menu: bool = False) -> str:
    """The lab's diskless VM with SeaBIOS writing to (and reading from) the serial port too."""
    dom = etree.fromstring(domain_xml(name, domain_type, graphics=False))
    os_element = dom.find("os")
    if boot_menu:
        os_element.append(E.bootmenu(enable="yes", timeout="5000"))
    os_element.append(E.bios(useserial="yes"))
    return etree.tostring(dom, encoding="unicode")


@pytest.fixture
def serial_vm(lab: dict[str, Any]) -> Iterator[Callable[[], libvirt.virDomain]]:
    """Factory: a test- VM started paused, so that nothing it prints is lost before a viewer connects."""
    conn = libvirt.open(lab["unix_uri"])
    made: list[libvirt.virDomain] = []

    def make(boot_menu: bool = False) -> libvirt.virDomain:
        dom = conn.defineXML(serial_domain_xml(f"test-serial-{uuid.uuid4().hex[:8]}", lab["domain_type"], boot_menu))
        made.append(dom)
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        return dom

    yield make
    for dom in made:
        remove_domain(dom)
    conn.close()


def add_host(transport: str, lab: dict[str, Any]) -> Host:
    if transport == "local":
        return Host.objects.create(name="lab-local", transport="local", path="system")
    if transport == "tcp":
        return Host.objects.create(name="lab-tcp", transport="tcp", hostname="127.0.0.1", port=16509,
                                   insecure_tcp=True)
    host = Host.objects.create(name="lab-ssh", transport="ssh", hostname="127.0.0.1", port=2222, username="root",
                               ssh_host_keys="\n".join(lab["ssh"]["host_keys"]))
    services.sync_known_hosts()
    return host


def ws_path(client: Client, host: Host, vm_uuid: str, take_over: bool = False) -> tuple[str, list[str]]:
    """Mint a serial ticket as the page does; the WebSocket path to open with it."""
    response = client.post(reverse("console:serial_ticket", args=[host.name, vm_uuid]))
    assert response.status_code == 200, response.content
    answer = response.json()
    # The ticket is a subprotocol, as the page offers it; the URL carries the switch only.
    return answer["ws_path"] + ("?takeover=1" if take_over else ""), answer["protocols"]


async def open_ws(client: Client, path: tuple[str, list[str]]) -> WebsocketCommunicator:
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(application, path[0], headers=[
        (b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), (b"cookie", cookie)],
        subprotocols=path[1])
    connected, _ = await communicator.connect(timeout=20)
    assert connected
    return communicator


async def read_until(communicator: WebsocketCommunicator, text: bytes, seconds: float = 25) -> tuple[bytes, dict]:
    """Console output until `text` shows (or the socket closes, or time is up); with the last message."""
    received, deadline, message = b"", time.monotonic() + seconds, {}
    while text not in received and time.monotonic() < deadline:
        try:
            message = await communicator.receive_output(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        if message["type"] == "websocket.close":
            break
        received += message.get("bytes") or b""
    return received, message


async def closing(communicator: WebsocketCommunicator, seconds: float = 20) -> dict:
    deadline = time.monotonic() + seconds
    message = await communicator.receive_output(timeout=seconds)
    while message["type"] != "websocket.close":
        message = await communicator.receive_output(timeout=max(0.1, deadline - time.monotonic()))
    return message


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


@pytest.mark.parametrize("transport", ["local", "tcp", "ssh"])
def test_seabios_output_through_the_serial_websocket(request, admin_client, lab: dict[str, Any], serial_vm,
                                                      transport) -> None:
    if transport == "ssh":
        request.getfixturevalue("panel_key_authorized")
    dom = serial_vm()
    host = add_host(transport, lab)
    path = ws_path(admin_client, host, dom.UUIDString())

    async def run() -> tuple[bytes, dict]:
        communicator = await open_ws(admin_client, path)
        dom.resume()  # the VM boots only now that the console is attached
        result = await read_until(communicator, b"SeaBIOS")
        await communicator.disconnect()
        return result
    received, last = async_to_sync(run)()
    assert b"SeaBIOS" in received, (received[-300:], last)
    assert AuditEvent.objects.filter(action="console.open", host_name=host.name, detail="serial ticket used").exists()
    assert wait_for(lambda: AuditEvent.objects.filter(action="console.close", host_name=host.name).exists())


def test_keys_reach_the_guest(admin_client, lab: dict[str, Any], serial_vm) -> None:
    """Esc typed into the console while SeaBIOS offers its boot menu opens that menu."""
    dom = serial_vm(boot_menu=True)
    host = add_host("local", lab)
    path = ws_path(admin_client, host, dom.UUIDString())

    async def run() -> bytes:
        communicator = await open_ws(admin_client, path)
        dom.resume()
        offered, _ = await read_until(communicator, b"Press ESC for boot menu")
        assert b"Press ESC for boot menu" in offered, offered
        await communicator.send_to(bytes_data=b"\x1b")
        menu, _ = await read_until(communicator, b"Select boot device")
        await communicator.disconnect()
        return menu
    assert b"Select boot device" in async_to_sync(run)()


def test_take_over_moves_the_session(admin_client, lab: dict[str, Any], serial_vm) -> None:
    dom = serial_vm()
    host = add_host("local", lab)
    bob = get_user_model().objects.create_user("bob", "", PASSWORD)
    VMGrant.objects.create(user=bob, host=host, vm_uuid=dom.UUIDString(), can_console=True)
    bob_client = Client()
    bob_client.force_login(bob)
    vm = dom.UUIDString()
    first_path = ws_path(admin_client, host, vm)
    bob_paths = [ws_path(bob_client, host, vm), ws_path(bob_client, host, vm, take_over=True)]

    async def run() -> tuple[bytes, dict, dict, bytes]:
        admin = await open_ws(admin_client, first_path)
        dom.resume()
        admin_saw, _ = await read_until(admin, b"SeaBIOS")
        refused = await closing(await open_ws(bob_client, bob_paths[0]))
        bob_ws = await open_ws(bob_client, bob_paths[1])
        admin_closed = await closing(admin)
        dom.reset()  # SeaBIOS again, now for bob's session only
        bob_saw, _ = await read_until(bob_ws, b"SeaBIOS")
        await bob_ws.disconnect()
        await admin.disconnect()
        return admin_saw, refused, admin_closed, bob_saw
    admin_saw, refused, admin_closed, bob_saw = async_to_sync(run)()
    assert b"SeaBIOS" in admin_saw
    assert refused["code"] == 4409 and refused["reason"].startswith("in use by root-admin since"), refused
    assert admin_closed["code"] == 4001 and admin_closed["reason"] == "taken over by bob", admin_closed
    assert b"SeaBIOS" in bob_saw
    assert AuditEvent.objects.filter(action="console.takeover", username="bob", detail__contains="root-admin").exists()


def test_console_held_outside_the_panel_is_taken_over_with_force(admin_client, lab: dict[str, Any],
                                                                 serial_vm) -> None:
    """Like `virsh console`: another libvirt client holds the console. The panel says so, and an
    explicit take over (VIR_DOMAIN_CONSOLE_FORCE) cuts that client off."""
    dom = serial_vm()
    host = add_host("tcp", lab)
    start_event_loop()  # as virsh does: the event loop delivers the daemon's word that the console was cut
    outside = libvirt.open(lab["unix_uri"])
    stream = outside.newStream(libvirt.VIR_STREAM_NONBLOCK)
    outside.lookupByUUIDString(dom.UUIDString()).openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_SAFE)
    try:
        paths = [ws_path(admin_client, host, dom.UUIDString()),
                 ws_path(admin_client, host, dom.UUIDString(), take_over=True)]

        async def run() -> tuple[dict, bytes]:
            refused = await closing(await open_ws(admin_client, paths[0]))
            taker = await open_ws(admin_client, paths[1])
            dom.resume()
            saw, _ = await read_until(taker, b"SeaBIOS")
            await taker.disconnect()
            return refused, saw
        refused, saw = async_to_sync(run)()
        assert refused["code"] == 4409 and "another client of the host" in refused["reason"]
        assert b"SeaBIOS" in saw

        def cut_off() -> bool:
            try:
                return stream.recv(4096) == b""
            except libvirt.libvirtError:
                return True  # "stream had I/O failure": the outside client lost the console
        assert wait_for(cut_off)
    finally:
        with contextlib.suppress(libvirt.libvirtError):  # already ended by the take over
            stream.abort()
        outside.close()


def test_stopping_the_vm_ends_the_session(admin_client, lab: dict[str, Any], serial_vm) -> None:
    dom = serial_vm()
    host = add_host("local", lab)
    path = ws_path(admin_client, host, dom.UUIDString())

    async def run() -> dict:
        communicator = await open_ws(admin_client, path)
        dom.resume()
        await read_until(communicator, b"SeaBIOS")
        dom.destroy()
        result = await closing(communicator)
        await communicator.disconnect()
        return result
    closed = async_to_sync(run)()
    assert closed["code"] == 4000 and "the VM stopped" in closed["reason"], closed
    assert wait_for(lambda: AuditEvent.objects.filter(action="console.close", detail__startswith="serial console: ",
                                                      host_name=host.name).exists())
