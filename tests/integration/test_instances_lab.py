"""VM pages and actions on real KVM (or TCG) domains of the lab; virsh and libvirt are asked afterwards."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.lab]


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def domstate(name: str) -> str:
    return virsh("domstate", name)


@pytest.fixture
def tcp_host(lab: dict[str, Any]) -> Host:
    return Host.objects.create(name="lab-tcp", transport="tcp", hostname="127.0.0.1", port=16509, path="system",
                               insecure_tcp=True)


def act(client: Client, host: Host, dom: libvirt.virDomain, action: str, **data: str) -> str:
    """POST an action; returns the page it leads to (with its message)."""
    response = client.post(reverse("instances:action", args=[host.name, dom.UUIDString(), action]), data)
    assert response.status_code == 302, response.content[:500]
    return client.get(response["Location"]).content.decode()


def test_fleet_view_reads_real_domains_in_bulk(admin_client: Client, tcp_host: Host, lab_domain) -> None:
    dom = lab_domain(memory_mib=96)
    page = admin_client.get(reverse("instances:list"))
    row = next(item.row for item in page.context["fleet"].rows if item.row.uuid == dom.UUIDString())
    assert (row.state, row.vcpus, row.memory_kib) == ("running", 1, 96 * 1024)
    # A CPU figure needs a second sample: the next shared read, once the first is past its freshness window.
    deadline = time.monotonic() + 3.0
    while True:
        rows = admin_client.get(reverse("instances:rows")).json()["vms"]
        if rows[f"lab-tcp/{dom.UUIDString()}"]["cpu_percent"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rows[f"lab-tcp/{dom.UUIDString()}"]["cpu_percent"] is not None
    virsh("suspend", dom.name())
    # libvirt's event drops the kept read at once; allow the event its few milliseconds to arrive.
    deadline = time.monotonic() + 1.0
    while True:
        rows = admin_client.get(reverse("instances:rows")).json()["vms"]
        if rows[f"lab-tcp/{dom.UUIDString()}"]["state"] == "paused" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert rows[f"lab-tcp/{dom.UUIDString()}"]["state"] == "paused"


def test_every_power_action_on_a_real_vm(admin_client: Client, tcp_host: Host, lab_domain) -> None:
    dom = lab_domain()
    name = dom.name()
    assert domstate(name) == "running"
    act(admin_client, tcp_host, dom, "suspend")
    assert domstate(name) == "paused"
    act(admin_client, tcp_host, dom, "resume")
    assert domstate(name) == "running"
    act(admin_client, tcp_host, dom, "reboot")
    assert domstate(name) == "running"
    act(admin_client, tcp_host, dom, "reset", confirm="yes")
    assert domstate(name) == "running"
    # SeaBIOS without an OS ignores ACPI: the request is sent, the VM keeps running (test_shutdown_ignored...).
    page = act(admin_client, tcp_host, dom, "shutdown")
    assert "asked the guest to shut down; it is still running" in page
    act(admin_client, tcp_host, dom, "managedsave")
    assert domstate(name) == "shut off"
    assert "yes" in virsh("dominfo", name).split("Managed save:")[1].splitlines()[0]
    act(admin_client, tcp_host, dom, "restore")
    assert domstate(name) == "running"
    act(admin_client, tcp_host, dom, "destroy", confirm="yes")
    assert domstate(name) == "shut off"
    act(admin_client, tcp_host, dom, "start")
    assert domstate(name) == "running"
    act(admin_client, tcp_host, dom, "autostart-on")
    assert virsh("dominfo", name).split("Autostart:")[1].split()[0] == "enable"
    act(admin_client, tcp_host, dom, "autostart-off")
    assert virsh("dominfo", name).split("Autostart:")[1].split()[0] == "disable"
    results = AuditEvent.objects.filter(action__startswith="vm.").values_list("action", "result")
    assert len(results) == 11 and {r for _, r in results} == {"ok"}


def test_rename_and_describe_a_real_vm(admin_client: Client, tcp_host: Host, lab_domain) -> None:
    dom = lab_domain()
    uuid = dom.UUIDString()
    rename = reverse("instances:rename", args=[tcp_host.name, uuid])
    page = admin_client.post(rename, {"name": "test-renamed-x"}, follow=True).content.decode()
    assert "is running: shut it off" in page
    dom.destroy()
    admin_client.post(rename, {"name": "test-renamed-x"})
    assert virsh("domname", uuid) == "test-renamed-x"
    dom.create()
    admin_client.post(reverse("instances:describe", args=[tcp_host.name, uuid]),
                      {"title": "front end", "description": "serves the shop"})
    assert virsh("desc", "test-renamed-x", "--title", "--config") == "front end"
    assert virsh("desc", "test-renamed-x", "--live") == "serves the shop"


def test_detail_page_of_a_real_vm(admin_client: Client, tcp_host: Host, lab: dict[str, Any], lab_domain) -> None:
    dom = lab_domain(memory_mib=80)
    page = admin_client.get(reverse("instances:detail", args=[tcp_host.name, dom.UUIDString()]))
    vm = page.context["vm"]
    assert (vm.state, vm.memory_kib, vm.domain_type, vm.firmware) == ("running", 80 * 1024, lab["domain_type"], "BIOS")
    assert vm.graphics[0].type == "vnc" and vm.graphics[0].port and vm.graphics[0].listen == "127.0.0.1"
    assert vm.serials == ["serial0 (pty)"]
    stats = admin_client.get(reverse("instances:stats", args=[tcp_host.name, dom.UUIDString()])).json()
    assert stats["state"] == "running" and stats["cpu_time_ns"] > 0 and stats["memory_kib"] == 80 * 1024


def test_shutdown_ignored_by_the_guest_is_said_and_offers_force_off(admin_client: Client, lab_host: Host,
                                                                    lab_domain) -> None:
    """A diskless VM in SeaBIOS has no OS to act on ACPI: the panel says it asked, libvirt still runs it, and the
    VM's page offers Force off once the request is FORCE_OFF_AFTER_SECONDS old. On the local socket the page
    also knows since when it runs without having watched it: its qemu process's start."""
    from instances.models import VMState
    from instances.views.detail import FORCE_OFF_AFTER_SECONDS

    dom = lab_domain()
    detail = reverse("instances:detail", args=[lab_host.name, dom.UUIDString()])
    first = admin_client.get(detail)
    assert first.context["since"].source == "process" and time.time() - first.context["since"].at < 60
    assert "estimated from the start of its qemu process" in first.content.decode()
    page = act(admin_client, lab_host, dom, "shutdown")
    assert "asked the guest to shut down; it is still running" in page and "done" not in page
    assert 'id="shutdown-pending"' in page and 'id="shutdown-wait"' in page  # Force off waits its turn
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    # As if the guest had ignored it for the whole wait (rather than waiting here).
    VMState.objects.filter(vm_uuid=dom.UUIDString()).update(
        shutdown_asked=time.time() - FORCE_OFF_AFTER_SECONDS - 1)
    later = admin_client.get(detail).content.decode()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    offer = later.split('id="shutdown-force-off"', 1)[1].split("</div>", 1)[0]
    assert not offer.startswith(" hidden") and 'value="destroy"' in offer
    act(admin_client, lab_host, dom, "destroy", confirm="yes")
    assert domstate(dom.name()) == "shut off"
    assert 'id="shutdown-pending"' not in admin_client.get(detail).content.decode()
