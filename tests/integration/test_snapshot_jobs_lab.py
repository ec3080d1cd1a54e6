"""The panel's durable jobs on the lab's real libvirtd: a running VM's snapshot (qemu writes its memory into
the qcow2 disk) and a VM creation that allocates its whole disk up front.

Each is started through the panel, its job page is shown, its status is followed until it ends, and
`virsh` is asked afterwards. VMs, pools and networks made here are named test-* and removed by the
fixtures (tests/lab_resources.py), also when a test fails.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from virt.capabilities import BIOS
from virt.xml import Console, Disk, Domain, Graphics, Interface, Serial, StorageVolume
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]  # the jobs' threads write to the db
JOB_SECONDS = 180.0


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def follow_job(client: Client, response: Any) -> dict[str, Any]:
    """The job a POST started: its page is shown, then its status followed until it ends."""
    assert response.status_code == 302, (response.status_code, response.content[:800])
    location = response["Location"]
    assert location.startswith("/jobs/"), location
    page = client.get(location)
    assert page.status_code == 200 and "job-progress.js" in page.content.decode()
    job_id = int(location.strip("/").split("/")[-1])
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        state: dict[str, Any] = client.get(reverse("jobs:status", args=[job_id])).json()
        if not state["active"]:
            state["page"] = client.get(location).content.decode()
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end within {JOB_SECONDS:g} s")


def running_vm(lab: dict[str, Any], lab_conn: libvirt.virConnect, pool: libvirt.virStoragePool, network: str,
               made_vms: list[str]) -> libvirt.virDomain:
    """A running test-* VM with a qcow2 disk in the test pool (nothing to boot: the firmware waits), 128 MiB."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    vol = pool.createXML(StorageVolume.new(name=f"{name}.qcow2", capacity=32 << 20, allocation=0,
                                           format="qcow2").to_xml(), 0)
    dom = Domain.new(type=lab["domain_type"], name=name)
    dom.memory = dom.current_memory = 128 * 1024
    dom.vcpus = 1
    dom.os.type, dom.os.arch = "hvm", "x86_64"
    dom.os.boot_devices = ["hd"]
    dom.on_poweroff, dom.on_reboot, dom.on_crash = "destroy", "restart", "destroy"
    dom.disks.add(Disk.new(type="file", device="disk", driver_name="qemu", driver_type="qcow2",
                           source_file=vol.path(), target_dev="vda", target_bus="virtio"))
    dom.interfaces.add(Interface.new(type="network", source_network=network, model="virtio"))
    dom.graphics.add(Graphics.new(type="vnc", autoport=True, listen="127.0.0.1"))
    dom.serials.add(Serial.new(type="pty", target_port=0))
    dom.consoles.add(Console.new(type="pty", target_type="serial", target_port=0))
    made_vms.append(name)
    created = lab_conn.defineXML(dom.to_xml())
    created.create()
    return created


def test_memory_snapshot_of_a_running_vm_is_a_job(admin_client: Client, lab: dict[str, Any],
                                                  lab_conn: libvirt.virConnect, lab_host: Host,
                                                  test_pool: libvirt.virStoragePool, test_net: str,
                                                  made_vms: list[str]) -> None:
    dom = running_vm(lab, lab_conn, test_pool, test_net, made_vms)
    name, base = dom.name(), ["labhost", dom.UUIDString()]
    shown = admin_client.get(reverse("instances:snapshots", args=base)).content.decode()
    assert "it runs as a job" in shown and 'id="snapshot-create"' in shown

    started = admin_client.post(reverse("instances:snapshot_create", args=base), {"name": "s1",
                                                                                 "description": "with memory"})
    status = follow_job(admin_client, started)
    assert status["state"] == "done", status
    assert (status["kind"], status["target"]) == ("vm.snapshot.create", {"type": "vm", "name": name})
    assert status["percent"] == 100 and status["result"].startswith(f"Snapshot s1 of {name} taken with its memory")
    assert status["link"] == reverse("instances:snapshots", args=base) and "Show the snapshots" in status["page"]

    assert virsh("snapshot-list", name, "--name").split() == ["s1"]
    snap = virsh("snapshot-dumpxml", name, "s1")
    assert "<state>running</state>" in snap and "<memory snapshot='internal'/>" in snap and "with memory" in snap
    assert virsh("domstate", name) == "running"  # it goes on running after its memory was written
    assert not services.vm_locks.held(str(lab_host.pk), dom.UUIDString())
    listing = admin_client.get(reverse("instances:snapshots", args=base)).content.decode()
    assert 'data-snapshot="s1"' in listing and "(with memory)" in listing
    [event] = AuditEvent.objects.filter(action="vm.snapshot.create")
    assert (event.result, event.object_name) == ("ok", name) and event.duration_ms is not None

    # The VM is free again: a second snapshot, then going back to s1, which loads its memory: a job too.
    again = follow_job(admin_client, admin_client.post(reverse("instances:snapshot_create", args=base),
                                                       {"name": "s2"}))
    assert again["state"] == "done", again
    assert sorted(virsh("snapshot-list", name, "--name").split()) == ["s1", "s2"]
    assert virsh("snapshot-current", name, "--name") == "s2"
    reverted = follow_job(admin_client, admin_client.post(reverse("instances:snapshot_revert", args=base),
                                                          {"snapshot": "s1", "confirm": "yes"}))
    assert (reverted["state"], reverted["kind"]) == ("done", "vm.snapshot.revert"), reverted
    assert reverted["result"].startswith(f"{name} went back to snapshot s1, its memory loaded")
    assert virsh("snapshot-current", name, "--name") == "s1" and virsh("domstate", name) == "running"
    assert not services.vm_locks.held(str(lab_host.pk), dom.UUIDString())


def test_a_creation_that_allocates_its_disk_is_a_job(admin_client: Client, lab_conn: libvirt.virConnect,
                                                     lab_host: Host, test_pool: libvirt.virStoragePool,
                                                     test_net: str, made_vms: list[str]) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    made_vms.append(name)
    data = {
        "name": name, "vcpus": "1", "size": "custom", "memory": "64M", "firmware": BIOS, "machine": "",
        "cpu_mode": "default",
        "disk_source": "new", "disk_pool": test_pool.name(), "disk_size": "256M", "disk_format": "raw",
        "disk_allocate": "on", "existing_volume": "", "iso": "",
        "nic1_source": f"network:{test_net}", "nic1_model": "virtio",
        "nic2_source": "", "nic2_model": "virtio", "nic3_source": "", "nic3_model": "virtio",
    }
    status = follow_job(admin_client, admin_client.post(reverse("instances:create") + "?host=labhost", data))
    assert status["state"] == "done", status
    assert (status["kind"], status["total"], status["done"]) == ("vm.create", 256 << 20, 256 << 20)
    dom = lab_conn.lookupByName(name)
    assert status["link"] == reverse("instances:detail", args=["labhost", dom.UUIDString()])
    assert not dom.isActive()  # nobody asked to start it
    path = Path(Domain.from_xml(dom.XMLDesc(0)).disks[0].source_file or "")
    assert path.name == f"{name}.img" and path.is_file()
    assert os.stat(path).st_blocks * 512 >= 256 << 20  # written in full, not sparse
    test_pool.refresh(0)
    capacity, allocation = test_pool.storageVolLookupByName(path.name).info()[1:]
    assert allocation >= capacity == 256 << 20
    assert list(AuditEvent.objects.filter(action="vm.create").values_list("result", flat=True)) == ["ok"]
