"""The console proxy against real qemu VNC servers of the lab: the RFB banner through a ticket."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from webkvm.asgi import application
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def open_console(client: Client, host: Host, vm_uuid: str) -> dict:
    """Mint a ticket as the page does, open the WebSocket, return the first message back."""
    answer = client.post(reverse("console:ticket", args=[host.name, vm_uuid])).json()
    path = f"{answer['ws_path']}?ticket={answer['ticket']}"
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def run() -> dict:
        communicator = WebsocketCommunicator(application, path, headers=[
            (b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), (b"cookie", cookie)])
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
