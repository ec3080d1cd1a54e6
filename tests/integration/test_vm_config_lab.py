"""Clone, snapshots, resize, boot order and VNC settings through the panel on the lab's real libvirtd.

After each action `virsh dumpxml` is asked for the live definition and `virsh dumpxml --inactive`
for the persistent one. VMs, pools and networks made here are named test-* and removed by the
fixtures, also when a test fails.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from tests.integration.test_snapshot_jobs_lab import follow_job
from tests.unit.test_vm_config import wait_for
from virt.xml import Console, Disk, Domain, Graphics, Interface, Serial, StorageVolume
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]  # the clone job's thread writes to the db


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def dumpxml(name: str, *, inactive: bool = False) -> Domain:
    """What virsh says, with secrets (--security-info): live, or the persistent definition."""
    return Domain.from_xml(virsh("dumpxml", name, "--security-info", *(["--inactive"] if inactive else [])))


def follow(client: Client, response: Any) -> str:
    assert response.status_code == 302, (response.status_code, response.content[:800])
    return client.get(response["Location"]).content.decode()


@pytest.fixture
def make_vm(lab: dict[str, Any], lab_conn: libvirt.virConnect, test_pool: libvirt.virStoragePool, test_net: str,
            made_vms: list[str]) -> Callable[..., libvirt.virDomain]:
    """Factory: a test-* VM with a small disk volume in the test pool, a NIC on the test network, VNC."""

    def make(*, disk_format: str = "qcow2", start: bool = False, vcpus: int = 1, max_vcpus: int = 1,
             memory_mib: int = 64, max_memory_mib: int = 64, vnc_password: str | None = None) -> libvirt.virDomain:
        name = f"test-{uuid.uuid4().hex[:8]}"
        ext = "qcow2" if disk_format == "qcow2" else "img"
        vol = test_pool.createXML(StorageVolume.new(name=f"{name}.{ext}", capacity=16 << 20, allocation=0,
                                                    format=disk_format).to_xml(), 0)
        dom = Domain.new(type=lab["domain_type"], name=name)
        dom.memory, dom.current_memory = max_memory_mib * 1024, memory_mib * 1024
        dom.vcpus = max_vcpus
        dom.current_vcpus = vcpus if vcpus != max_vcpus else None
        dom.os.type, dom.os.arch = "hvm", "x86_64"
        dom.os.boot_devices = ["hd"]
        dom.on_poweroff, dom.on_reboot, dom.on_crash = "destroy", "restart", "destroy"
        dom.disks.add(Disk.new(type="file", device="disk", driver_name="qemu", driver_type=disk_format,
                               source_file=vol.path(), target_dev="vda", target_bus="virtio"))
        dom.interfaces.add(Interface.new(type="network", source_network=test_net, model="virtio"))
        dom.graphics.add(Graphics.new(type="vnc", autoport=True, listen="127.0.0.1", passwd=vnc_password))
        dom.serials.add(Serial.new(type="pty", target_port=0))
        dom.consoles.add(Console.new(type="pty", target_type="serial", target_port=0))
        made_vms.append(name)
        created = lab_conn.defineXML(dom.to_xml())
        if start:
            created.create()
        return created

    return make


# ---- clone -------------------------------------------------------------------------------


def test_clone_copies_the_disk_and_the_clone_starts(admin_client: Client, lab_host: Host, make_vm,
                                                    test_pool: libvirt.virStoragePool, made_vms: list[str]) -> None:
    source = make_vm()
    src_path = dumpxml(source.name(), inactive=True).disks[0].source_file or ""
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 4M", src_path], check=True, capture_output=True)
    test_pool.refresh(0)
    new_name = f"{source.name()}-c"
    made_vms.append(new_name)
    url = reverse("instances:clone", args=["labhost", source.UUIDString()])
    response = admin_client.post(url, {"name": new_name})
    assert response.status_code == 302, response.content[:800]
    status = wait_for(admin_client, response["Location"], timeout=120.0)
    assert status["state"] == "done", status
    assert status["percent"] == 100

    before = dumpxml(source.name(), inactive=True)
    clone = dumpxml(new_name, inactive=True)
    assert clone.uuid and clone.uuid != before.uuid and clone.uuid == status["uuid"]
    clone_path = clone.disks[0].source_file or ""
    assert Path(clone_path).parent == Path(src_path).parent and Path(clone_path).name == f"{new_name}.qcow2"
    compare = subprocess.run(["qemu-img", "compare", src_path, clone_path], capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr  # the data came along
    assert clone.interfaces[0].mac != before.interfaces[0].mac and (clone.interfaces[0].mac or "").startswith(
        "52:54:00:")
    assert clone.interfaces[0].source_network == before.interfaces[0].source_network
    assert virsh("domstate", source.name()) == "shut off"

    virsh("start", new_name)  # the clone starts cleanly, next to its source
    virsh("start", source.name())
    live = dumpxml(new_name)
    assert virsh("domstate", new_name) == "running"
    assert live.disks[0].source_file == clone_path and (live.graphics[0].port or 0) >= 5900
    assert live.graphics[0].port != dumpxml(source.name()).graphics[0].port
    event = AuditEvent.objects.get(action="vm.clone")
    assert event.result == "ok" and new_name in event.detail


def test_clone_of_a_running_vm_is_refused(admin_client: Client, lab_host: Host, make_vm,
                                          test_pool: libvirt.virStoragePool) -> None:
    source = make_vm(start=True)
    volumes = sorted(test_pool.listVolumes())
    response = admin_client.post(reverse("instances:clone", args=["labhost", source.UUIDString()]),
                                 {"name": f"{source.name()}-c"})
    assert response.status_code == 200
    assert "is running: shut it off before cloning it" in response.content.decode()
    test_pool.refresh(0)
    assert sorted(test_pool.listVolumes()) == volumes


# ---- snapshots ---------------------------------------------------------------------------


def describe(dom: libvirt.virDomain, text: str) -> None:
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, text, None, None, flags)


def test_snapshot_of_a_running_vm_and_revert(admin_client: Client, lab_host: Host, make_vm) -> None:
    dom = make_vm(start=True)
    name, base = dom.name(), ["labhost", dom.UUIDString()]
    describe(dom, "before")
    # A running VM's snapshot writes its memory: a job (tests/integration/test_snapshot_jobs_lab.py).
    state = follow_job(admin_client, admin_client.post(reverse("instances:snapshot_create", args=base),
                                                       {"name": "s1", "description": "known good"}))
    assert state["state"] == "done", state
    assert virsh("snapshot-list", name, "--name").split() == ["s1"]
    snap = virsh("snapshot-dumpxml", name, "s1")
    assert "<state>running</state>" in snap and "<memory snapshot='internal'/>" in snap
    listing = admin_client.get(reverse("instances:snapshots", args=base)).content.decode()
    assert 'data-snapshot="s1"' in listing and "known good" in listing and "(with memory)" in listing

    describe(dom, "after")
    virsh("destroy", name)
    revert = reverse("instances:snapshot_revert", args=base)  # a snapshot with memory: libvirt loads it, as a job
    state = follow_job(admin_client, admin_client.post(revert, {"snapshot": "s1", "confirm": "yes"}))
    assert (state["state"], state["kind"]) == ("done", "vm.snapshot.revert"), state
    assert virsh("domstate", name) == "running"  # the memory state came back: it runs again
    assert dumpxml(name).description == "before" and dumpxml(name, inactive=True).description == "before"

    delete = reverse("instances:snapshot_delete", args=base)
    follow(admin_client, admin_client.post(delete, {"snapshot": "s1", "confirm": "yes"}))
    assert virsh("snapshot-list", name, "--name") == ""
    results = list(AuditEvent.objects.filter(action__startswith="vm.snapshot").order_by("id")
                   .values_list("action", "result"))
    assert results == [("vm.snapshot.create", "ok"), ("vm.snapshot.revert", "ok"), ("vm.snapshot.delete", "ok")]


def test_raw_disk_snapshot_gets_a_clear_message(admin_client: Client, lab_host: Host, make_vm) -> None:
    dom = make_vm(disk_format="raw", start=True)
    base = ["labhost", dom.UUIDString()]
    html = follow(admin_client, admin_client.post(reverse("instances:snapshot_create", args=base), {"name": "s1"}))
    assert "cannot be snapshotted: disk vda" in html and "is raw: snapshots are stored inside qcow2 disks only" in html
    assert virsh("snapshot-list", dom.name(), "--name") == ""


# ---- resize ------------------------------------------------------------------------------


def test_resize_a_running_vm_live_and_in_the_definition(admin_client: Client, lab_host: Host, make_vm) -> None:
    dom = make_vm(start=True, vcpus=1, max_vcpus=2, memory_mib=96, max_memory_mib=128)
    name = dom.name()
    url = reverse("instances:resize", args=["labhost", dom.UUIDString()])
    html = follow(admin_client, admin_client.post(url, {"vcpus": "2", "max_vcpus": "3", "memory_mib": "80",
                                                        "max_memory_mib": "160"}))
    assert "Applied now: vCPUs, memory (handed to the guest&#x27;s balloon driver)." in html
    assert "Waits for the next boot: maximum vCPUs, maximum memory." in html
    live, saved = dumpxml(name), dumpxml(name, inactive=True)
    assert (live.current_vcpus or live.vcpus, live.vcpus) == (2, 2)  # hot-plugged up to the running maximum
    assert (saved.current_vcpus or saved.vcpus, saved.vcpus) == (2, 3)
    assert (saved.current_memory, saved.memory) == (80 * 1024, 160 * 1024)
    assert live.memory == 128 * 1024  # the running maximum waits for the next boot
    assert virsh("vcpucount", name, "--live", "--active") == "2"
    # The page shows both columns.
    shown = admin_client.get(url)
    assert shown.context["state"].live.vcpus == 2 and shown.context["state"].config.max_vcpus == 3
    pending = shown.context["state"].pending  # a guest without a balloon driver keeps its memory
    assert "maximum vCPUs" in pending and "maximum memory" in pending and "vCPUs" not in pending
    assert "Waiting for the next boot: maximum vCPUs" in shown.content.decode()

    too_many = admin_client.post(url, {"vcpus": "3", "max_vcpus": "2", "memory_mib": "80", "max_memory_mib": "160"})
    assert too_many.status_code == 200 and "vcpus" in too_many.context["form"].errors
    assert dumpxml(name, inactive=True).vcpus == 3

    virsh("destroy", name)
    virsh("start", name)
    after = dumpxml(name)
    assert (after.vcpus, after.memory) == (3, 160 * 1024)


# ---- boot --------------------------------------------------------------------------------


def test_boot_order_is_saved_and_used_at_the_next_boot(admin_client: Client, lab_host: Host, make_vm) -> None:
    dom = make_vm(start=True, vnc_password="keep1")
    name = dom.name()
    mac = (dumpxml(name).interfaces[0].mac or "").replace(":", "")
    url = reverse("instances:boot", args=["labhost", dom.UUIDString()])
    html = follow(admin_client, admin_client.post(url, {f"order_nic-{mac}": "1", "order_disk-vda": "2",
                                                        "bootmenu": "on", "autostart": "on"}))
    assert "boot order and menu saved; they apply at the next boot." in html
    saved, live = dumpxml(name, inactive=True), dumpxml(name)
    assert saved.interfaces[0].boot_order == 1 and saved.disks[0].boot_order == 2 and saved.os.bootmenu is True
    assert saved.os.boot_devices == [] and saved.graphics[0].passwd == "keep1"  # the password survived
    assert live.os.boot_devices == ["hd"] and live.interfaces[0].boot_order is None
    assert virsh("dominfo", name).count("Autostart:      enable") == 1
    assert 'id="pending"' in admin_client.get(url).content.decode()
    virsh("destroy", name)
    virsh("start", name)
    assert dumpxml(name).interfaces[0].boot_order == 1
    virsh("autostart", "--disable", name)


# ---- VNC ---------------------------------------------------------------------------------


def test_vnc_password_live_and_keymap_at_next_boot(admin_client: Client, lab_host: Host, make_vm) -> None:
    dom = make_vm(start=True, vnc_password="old1")
    name = dom.name()
    url = reverse("instances:vnc", args=["labhost", dom.UUIDString()])
    html = follow(admin_client, admin_client.post(url, {"password_action": "set", "password": "n3w-pw",
                                                        "keymap": "de", "listen": "127.0.0.1"}))
    assert "Applied now: password." in html and "On next boot: keymap." in html and "n3w-pw" not in html
    live, saved = dumpxml(name).graphics[0], dumpxml(name, inactive=True).graphics[0]
    assert (live.passwd, live.keymap) == ("n3w-pw", None)
    assert (saved.passwd, saved.keymap, saved.listen) == ("n3w-pw", "de", "127.0.0.1")
    assert "n3w-pw" not in admin_client.get(url).content.decode()

    follow(admin_client, admin_client.post(url, {"password_action": "clear", "keymap": "de", "listen": "127.0.0.1"}))
    assert dumpxml(name).graphics[0].passwd is None and dumpxml(name, inactive=True).graphics[0].passwd is None
    virsh("destroy", name)
    virsh("start", name)
    assert dumpxml(name).graphics[0].keymap == "de"


def test_vnc_password_on_a_vm_started_without_one_waits(admin_client: Client, lab_host: Host, make_vm) -> None:
    """qemu only takes a live password when the display started with one: the page says it waits."""
    dom = make_vm(start=True)
    url = reverse("instances:vnc", args=["labhost", dom.UUIDString()])
    html = follow(admin_client, admin_client.post(url, {"password_action": "set", "password": "pw",
                                                        "keymap": "", "listen": "127.0.0.1"}))
    assert "On next boot: password (" in html
    assert dumpxml(dom.name()).graphics[0].passwd is None
    assert dumpxml(dom.name(), inactive=True).graphics[0].passwd == "pw"


def test_vnc_on_every_address_is_saved_with_a_warning(admin_client: Client, lab_host: Host, make_vm) -> None:
    dom = make_vm()  # never started here: nothing listens on every address
    url = reverse("instances:vnc", args=["labhost", dom.UUIDString()])
    html = follow(admin_client, admin_client.post(url, {"password_action": "keep", "keymap": "",
                                                        "listen": "0.0.0.0"}))
    assert "VNC listens on every address of the host" in html
    assert dumpxml(dom.name(), inactive=True).graphics[0].listen == "0.0.0.0"
    bad = admin_client.post(url, {"password_action": "keep", "keymap": "", "listen": "host.example.org"})
    assert bad.status_code == 200 and "listen" in bad.context["form"].errors
    assert dumpxml(dom.name(), inactive=True).graphics[0].listen == "0.0.0.0"
