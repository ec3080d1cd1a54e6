"""Migration through the panel between the lab's two real hosts: the main libvirtd ("lab1", local
socket) and lab host 2 ("lab2", its own network namespace, qemu+tcp://10.213.0.2:16509).

Each migration is a durable job (instances/migrate_jobs.py) followed through its JSON (jobs:status);
an evacuation, or several VMs from the fleet view, is a parent job with one migration job per VM.
Every step is checked on both daemons. Whatever a test makes is named test-* and removed from both
hosts by the fixtures.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from lxml import etree
from lxml.builder import E

from hosts.models import Host
from jobs.models import Job
from tests.conftest import need
from tests.integration.test_console_lab import open_console
from tests.lab import domain_xml, remove_domain
from virt.xml import Network, StoragePool
from webkvm.models import AuditEvent, VMGrant

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
IMAGES = Path("/var/lib/libvirt/images")  # private to each host: host 2 has its own copy of this folder
MiB = 1024 * 1024


def _quiet(*_: object) -> None:
    """libvirt prints every error to stderr by default; the exceptions are enough."""


@pytest.fixture
def conns(lab: dict[str, Any], lab2: dict[str, Any]) -> Iterator[tuple[libvirt.virConnect, libvirt.virConnect]]:
    libvirt.registerErrorHandler(_quiet, None)
    one, two = libvirt.open(lab["unix_uri"]), libvirt.open(lab2["uri"])
    yield one, two
    one.close()
    two.close()


@pytest.fixture
def hosts(lab2: dict[str, Any]) -> tuple[Host, Host]:
    """Both lab hosts as an admin adds them: the main daemon locally, host 2 over tcp on its address."""
    return (Host.objects.create(name="lab1", transport="local", path="system"),
            Host.objects.create(name="lab2", transport="tcp", hostname=lab2["address"], port=16509,
                                insecure_tcp=True))


@pytest.fixture
def vms(conns: tuple[libvirt.virConnect, libvirt.virConnect]) -> Iterator[list[str]]:
    """Names of the VMs a test makes; each is removed from both hosts afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        for conn in conns:
            with contextlib.suppress(libvirt.libvirtError):
                remove_domain(conn.lookupByName(name))


def vm_xml(lab: dict[str, Any], name: str, memory_mib: int = 64, devices: list[Any] = (), cpu: Any = None) -> str:
    """The lab's small diskless VM, plus extra devices (lxml elements)."""
    root = etree.fromstring(domain_xml(name, lab["domain_type"], memory_mib))
    for device in devices:
        root.find("devices").append(device)
    if cpu is not None:
        root.find("os").addnext(cpu)
    return etree.tostring(root, encoding="unicode")


def make_vm(conn: libvirt.virConnect, lab: dict[str, Any], vms: list[str], start: bool = True,
            **kwargs: Any) -> libvirt.virDomain:
    name = f"test-mig-{uuid.uuid4().hex[:8]}"
    vms.append(name)
    dom = conn.defineXML(vm_xml(lab, name, **kwargs))
    if start:
        dom.create()
    return dom


def where(conns: tuple[libvirt.virConnect, libvirt.virConnect], vm_uuid: str) -> list[str]:
    """What each host says about the VM: running, shut off, or absent (like `virsh list --all`)."""
    out = []
    for conn in conns:
        try:
            dom = conn.lookupByUUIDString(vm_uuid)
        except libvirt.libvirtError:
            out.append("absent")
            continue
        out.append("running" if dom.isActive() else "shut off")
    return out


def check_page(client: Client, source: Host, vm_uuid: str, target: Host, **options: Any) -> str:
    response = client.get(reverse("instances:migrate", args=[source.name, vm_uuid]),
                          {"target": target.name, **options})
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def job_id(response: Any) -> int:
    """The job a start answered with: its page, /jobs/<id>/."""
    assert response.status_code == 302, response.content[:800]
    assert response.url.startswith("/jobs/"), response.url
    return int(response.url.rstrip("/").rsplit("/", 1)[-1])


def start(client: Client, source: Host, vm_uuid: str, target: Host, **options: Any) -> int:
    return job_id(client.post(reverse("instances:migrate", args=[source.name, vm_uuid]),
                              {"target": target.name, **options}))


def status(client: Client, job: int) -> dict[str, Any]:
    response = client.get(reverse("jobs:status", args=[job]))
    assert response.status_code == 200
    return response.json()


def wait(client: Client, job: int, timeout: float = 90) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        data = status(client, job)
        if not data["active"]:
            return data
        assert time.monotonic() < end, data
        time.sleep(0.2)


def migrate(client: Client, source: Host, vm_uuid: str, target: Host, **options: Any) -> dict[str, Any]:
    data = wait(client, start(client, source, vm_uuid, target, **options))
    assert data["state"] == "done", data
    return data


def test_live_there_and_back_with_console(admin_client: Client, lab: dict[str, Any], lab2: dict[str, Any],
                                          conns, hosts, vms) -> None:
    lab1, lab2_host = hosts
    dom = make_vm(conns[0], lab, vms)
    vm_uuid = dom.UUIDString()
    page = check_page(admin_client, lab1, vm_uuid, lab2_host)
    assert 'id="migrate-now"' in page and "Problem:" not in page
    bob = get_user_model().objects.create_user("bob", "", "bob-password-123")
    VMGrant.objects.create(user=bob, host=lab1, vm_uuid=vm_uuid, vm_name=dom.name(), can_console=True)

    there = migrate(admin_client, lab1, vm_uuid, lab2_host)
    assert where(conns, vm_uuid) == ["absent", "running"]
    assert there["percent"] == 100.0 and there["done"] == there["total"] > 0 and there["unit"] == "bytes"
    assert f"{dom.name()} now runs on lab2 (libvirt job " in there["result"] and " ms)." in there["result"]
    assert there["link"] == f"/instances/lab2/{vm_uuid}/" and there["summary"] == (
        f"migration of {dom.name()} from lab1 to lab2 (live)")
    assert conns[1].lookupByUUIDString(vm_uuid).isPersistent()
    # The console follows: through the panel's proxy to host 2's VNC server on its own address.
    first = open_console(admin_client, lab2_host, vm_uuid)
    assert first["bytes"].startswith(b"RFB 003.008"), first
    # The fleet view shows it on its new host at once.
    fleet = admin_client.get(reverse("instances:list")).content.decode()
    assert f'data-key="lab2/{vm_uuid}"' in fleet and f'data-key="lab1/{vm_uuid}"' not in fleet
    record = AuditEvent.objects.get(action="vm.migrate")
    assert record.result == "ok" and record.host_name == "lab1" and record.duration_ms is not None
    assert record.detail.startswith(f"migration of {dom.name()} from lab1 to lab2 (live): ")
    assert "downtime" in record.detail and record.detail.endswith(" s)")
    # Grants name a VM by host and UUID: bob's followed it.
    assert list(VMGrant.objects.filter(user=bob).values_list("host__name", "can_console")) == [("lab2", True)]

    # Back: host 1 listens on loopback only, so the data goes to its address on the veth pair.
    back = migrate(admin_client, lab2_host, vm_uuid, lab1, migration_address=lab2["host1_address"],
                   max_downtime_ms="300", bandwidth_mib="500")
    assert back["summary"] == (f"migration of {dom.name()} from lab2 to lab1 (live, max downtime 300 ms, "
                               f"bandwidth 500 MiB/s, data to {lab2['host1_address']})")
    assert where(conns, vm_uuid) == ["running", "absent"]
    assert back["link"] == f"/instances/lab1/{vm_uuid}/"
    first = open_console(admin_client, lab1, vm_uuid)
    assert first["bytes"].startswith(b"RFB 003.008"), first
    assert AuditEvent.objects.filter(action="vm.migrate", result="ok").count() == 2
    assert list(VMGrant.objects.filter(user=bob).values_list("host__name", flat=True)) == ["lab1"]


@pytest.mark.parametrize("option", ["peer_to_peer", "tunnelled"])
def test_peer_to_peer_and_tunnelled(admin_client: Client, lab: dict[str, Any], lab2: dict[str, Any], conns, hosts,
                                    vms, option: str) -> None:
    lab1, lab2_host = hosts
    vm_uuid = make_vm(conns[0], lab, vms).UUIDString()
    data = migrate(admin_client, lab1, vm_uuid, lab2_host, **{option: "on", "keep_source": "on"})
    assert "peer-to-peer" in data["summary"] and "lab1 keeps an inactive definition" in data["result"]
    assert where(conns, vm_uuid) == ["shut off", "running"]  # the source kept its definition
    # Host 1 is known to the panel by its local socket: its libvirtd cannot be reached from host 2.
    page = check_page(admin_client, lab2_host, vm_uuid, lab1, peer_to_peer="on")
    assert 'data-code="p2p"' in page and 'id="migrate-now"' not in page
    migrate(admin_client, lab2_host, vm_uuid, lab1, migration_address=lab2["host1_address"])
    assert where(conns, vm_uuid) == ["running", "absent"]


def test_offline_migration(admin_client: Client, lab: dict[str, Any], conns, hosts, vms) -> None:
    lab1, lab2_host = hosts
    dom = make_vm(conns[0], lab, vms, start=False)
    dom.setAutostart(1)
    vm_uuid = dom.UUIDString()
    assert "offline" in check_page(admin_client, lab1, vm_uuid, lab2_host)
    refused = admin_client.post(reverse("instances:migrate", args=["lab1", vm_uuid]),
                                {"target": "lab2", "copy_storage": "on"})
    assert refused.status_code == 200 and "Storage is copied during a live migration" in refused.content.decode()
    data = migrate(admin_client, lab1, vm_uuid, lab2_host)
    assert data["summary"].endswith(" from lab1 to lab2 (offline)") and "(shut off) is now defined on lab2" in \
        data["result"]
    assert Job.objects.get(pk=data["id"]).params["live"] is False
    assert where(conns, vm_uuid) == ["absent", "shut off"]
    assert conns[1].lookupByUUIDString(vm_uuid).autostart() == 1
    # Keeping the definition: on both hosts, autostart only on the new one.
    data = migrate(admin_client, lab2_host, vm_uuid, lab1, keep_source="on")
    assert where(conns, vm_uuid) == ["shut off", "shut off"]
    assert conns[0].lookupByUUIDString(vm_uuid).autostart() == 1
    assert conns[1].lookupByUUIDString(vm_uuid).autostart() == 0
    assert AuditEvent.objects.filter(action="vm.migrate", result="ok").count() == 2


@pytest.fixture
def pools(conns, lab2: dict[str, Any]) -> Iterator[Callable[[libvirt.virConnect], libvirt.virStoragePool]]:
    """make(conn): a dir pool at the same path on whichever host asks (separate folders on each)."""
    name = f"test-migpool-{uuid.uuid4().hex[:8]}"
    path = IMAGES / name
    made: list[libvirt.virStoragePool] = []

    def make(conn: libvirt.virConnect) -> libvirt.virStoragePool:
        pool = conn.storagePoolDefineXML(StoragePool.new(type="dir", name=name, target_path=str(path)).to_xml(), 0)
        made.append(pool)
        pool.build(0)
        pool.create(0)
        return pool

    make.path = path  # type: ignore[attr-defined]
    yield make
    for pool in made:
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
        with contextlib.suppress(libvirt.libvirtError):
            pool.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            pool.delete(0)
        with contextlib.suppress(libvirt.libvirtError):
            pool.undefine()
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(host2_path(lab2, path), ignore_errors=True)


def host2_path(lab2: dict[str, Any], path: Path) -> Path:
    """Where a file of host 2's private /var/lib/libvirt lives, seen from this side."""
    return Path(lab2["state_dir"]) / "root" / "var-lib-libvirt" / path.relative_to("/var/lib/libvirt")


def data_disk(path: Path) -> Any:
    return E.disk(E.driver(name="qemu", type="qcow2"), E.source(file=str(path)), E.target(dev="vdb", bus="virtio"),
                  type="file", device="disk")


def test_copy_storage_keeps_the_data(admin_client: Client, lab: dict[str, Any], lab2: dict[str, Any], conns, hosts,
                                     vms, pools, tmp_path: Path) -> None:
    need(shutil.which("qemu-img") is not None, "qemu-img is not installed")
    lab1, lab2_host = hosts
    pool = pools(conns[0])
    disk = pools.path / "test-data.qcow2"
    # 4 MiB of random data as the guest sees it, written before the move.
    raw = tmp_path / "data.raw"
    raw.write_bytes(random.randbytes(4 * MiB))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)], check=True, timeout=30)
    pool.refresh(0)
    vm_uuid = make_vm(conns[0], lab, vms, devices=[data_disk(disk)]).UUIDString()

    # Pre-flight, for real: the disk is on storage host 2 cannot see; copying needs a pool there.
    page = check_page(admin_client, lab1, vm_uuid, lab2_host)
    assert 'data-code="storage"' in page and "cannot see" in page and 'id="migrate-now"' not in page
    page = check_page(admin_client, lab1, vm_uuid, lab2_host, copy_storage="on")
    assert 'data-code="pool"' in page and str(pools.path) in page and 'id="migrate-now"' not in page
    refused = admin_client.post(reverse("instances:migrate", args=["lab1", vm_uuid]),
                                {"target": "lab2", "copy_storage": "on"})  # checked again: refused, no job
    assert refused.status_code == 200 and 'data-code="pool"' in refused.content.decode()
    assert not Job.objects.exists() and where(conns, vm_uuid) == ["running", "absent"]

    pools(conns[1])  # the same path on host 2
    assert 'id="migrate-now"' in check_page(admin_client, lab1, vm_uuid, lab2_host, copy_storage="on")
    data = migrate(admin_client, lab1, vm_uuid, lab2_host, copy_storage="on")
    assert where(conns, vm_uuid) == ["absent", "running"]
    assert f"The source copy of disk vdb stays on lab1 at {disk}" in data["result"]
    copy = host2_path(lab2, disk)
    assert copy.exists() and copy.stat().st_ino != disk.stat().st_ino
    compared = subprocess.run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", str(raw), str(copy)],
                              capture_output=True, text=True, timeout=60)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "(live, copy storage)" in AuditEvent.objects.filter(action="vm.migrate", result="ok").get().detail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing_cpu_feature() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    missing = [f for f in ("avx512f", "avx512bw", "amx_tile", "sha_ni", "avx2") if f not in flags]
    need(bool(missing), "this CPU has every feature the test could require")
    return missing[0].replace("_", "-")  # libvirt's spelling of the /proc/cpuinfo flag


def findings(page: str) -> set[str]:
    return {code for code in ("unreachable", "same-host", "cpu", "network", "bridge", "memory", "name", "storage",
                              "pool", "p2p") if f'data-code="{code}"' in page}


def test_each_preflight_failure_for_real(admin_client: Client, lab: dict[str, Any], lab2: dict[str, Any], conns,
                                         hosts, vms) -> None:
    lab1, lab2_host = hosts
    dom = make_vm(conns[0], lab, vms)
    vm_uuid = dom.UUIDString()
    # Target unreachable: nothing listens on that port.
    dead = Host.objects.create(name="lab-dead", transport="tcp", hostname="127.0.0.1", port=_free_port(),
                               insecure_tcp=True)
    page = check_page(admin_client, lab1, vm_uuid, dead)
    assert findings(page) == {"unreachable"} and "does not answer" in page and 'id="migrate-now"' not in page
    # The same host under two names: equal host UUIDs.
    again = Host.objects.create(name="lab1-tcp", transport="tcp", hostname="127.0.0.1", port=16509, insecure_tcp=True)
    page = check_page(admin_client, lab1, vm_uuid, again)
    assert "same-host" in findings(page) and "are the same hypervisor" in page
    # A name already defined on the target (another VM).
    twin = conns[1].defineXML(vm_xml(lab, dom.name()))
    try:
        page = check_page(admin_client, lab1, vm_uuid, lab2_host)
        assert findings(page) == {"name"} and twin.UUIDString() in page
    finally:
        remove_domain(twin)
    # Not enough free memory on the target: a VM larger than what host 2 reports free (guest memory stays
    # untouched, so it costs nothing on host 1). Both lab hosts share this machine's memory: the VM must
    # still fit under its total, so the margins are small (a quiet machine has little more free than used).
    free = conns[1].getFreeMemory()
    total = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    need(free + 256 * MiB < total - 128 * MiB, "the machine has no room for a VM larger than host 2's free memory")
    big = make_vm(conns[0], lab, vms, memory_mib=(free + 256 * MiB) // MiB)
    page = check_page(admin_client, lab1, big.UUIDString(), lab2_host)
    assert findings(page) == {"memory"} and "free; the VM needs" in page
    big.destroy()
    # Nothing moved, and a POST that skips the check page is refused by the same checks: no job.
    refused = admin_client.post(reverse("instances:migrate", args=["lab1", vm_uuid]), {"target": "lab1-tcp"})
    assert refused.status_code == 200 and "same-host" in findings(refused.content.decode())
    assert where(conns, vm_uuid) == ["running", "absent"] and not Job.objects.exists()
    record = AuditEvent.objects.get(action="vm.migrate")
    assert record.result == "failed" and record.detail.startswith("refused: to lab1-tcp: pre-flight: ")


def test_cpu_network_and_bridge_missing_on_target(admin_client: Client, lab: dict[str, Any], conns, hosts,
                                                  vms) -> None:
    lab1, lab2_host = hosts
    feature = _missing_cpu_feature()
    cpu = E.cpu(E.model("qemu64", fallback="forbid"), E.feature(policy="require", name=feature), mode="custom",
                match="exact")
    off = make_vm(conns[0], lab, vms, start=False, cpu=cpu)
    page = check_page(admin_client, lab1, off.UUIDString(), lab2_host)
    assert "cpu" in findings(page) and "does not work on lab2" in page and 'id="migrate-now"' not in page

    net_name = f"test-mignet-{uuid.uuid4().hex[:8]}"
    net = conns[0].networkDefineXML(Network.new(name=net_name).to_xml())
    try:
        net.create()
        bridge = net.bridgeName()
        nics = [E.interface(E.source(network=net_name), E.model(type="virtio"), type="network"),
                E.interface(E.source(bridge=bridge), E.model(type="virtio"), type="bridge")]
        dom = make_vm(conns[0], lab, vms, devices=nics)
        page = check_page(admin_client, lab1, dom.UUIDString(), lab2_host)
        assert findings(page) == {"network", "bridge"}, page
        assert f"Network {net_name} used by a NIC does not exist on lab2" in page
        assert f"Bridge {bridge} used by a NIC does not exist on lab2" in page
        dom.destroy()
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            net.destroy()
        net.undefine()


def test_cancel_leaves_the_vm_running_on_the_source(admin_client: Client, lab: dict[str, Any], conns, hosts,
                                                    vms) -> None:
    lab1, lab2_host = hosts
    # 2 GiB of (untouched) guest memory at 1 MiB/s: about 9 s of migration, long enough to cancel.
    need(conns[1].getFreeMemory() > 2200 * MiB, "host 2 has less than 2.2 GiB free")
    vm_uuid = make_vm(conns[0], lab, vms, memory_mib=2048).UUIDString()
    job = start(admin_client, lab1, vm_uuid, lab2_host, bandwidth_mib="1")
    end = time.monotonic() + 30
    while (data := status(admin_client, job))["done"] == 0:
        assert data["active"] and time.monotonic() < end, data
        time.sleep(0.2)
    assert data["state"] == "running" and data["phase"].startswith("copying memory") and data["can_cancel"]
    assert 0 <= data["percent"] < 100
    assert admin_client.post(reverse("jobs:cancel", args=[job])).status_code == 302
    data = wait(admin_client, job, timeout=60)
    assert data["state"] == "cancelled", data
    assert data["result"].startswith("Cancelled on request (")
    assert "still running on lab1 with its definition intact" in data["result"]
    assert where(conns, vm_uuid) == ["running", "absent"]
    assert conns[0].lookupByUUIDString(vm_uuid).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert AuditEvent.objects.get(action="vm.migrate").result == "failed"


def test_target_dying_half_way_leaves_the_vm_on_the_source(admin_client: Client, lab: dict[str, Any],
                                                           lab2: dict[str, Any], conns, hosts, vms) -> None:
    """The incoming qemu on host 2 is killed mid-migration: the VM keeps running on host 1, and the page says so."""
    lab1, lab2_host = hosts
    need(conns[1].getFreeMemory() > 2200 * MiB, "host 2 has less than 2.2 GiB free")
    dom = make_vm(conns[0], lab, vms, memory_mib=2048)
    job = start(admin_client, lab1, dom.UUIDString(), lab2_host, bandwidth_mib="1")
    pidfile = Path(lab2["state_dir"]) / "root" / "run-libvirt" / "qemu" / f"{dom.name()}.pid"
    end = time.monotonic() + 30
    while status(admin_client, job)["done"] == 0 or not pidfile.exists():
        assert time.monotonic() < end
        time.sleep(0.2)
    os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
    data = wait(admin_client, job, timeout=60)
    assert data["state"] == "failed", data
    assert data["result"].startswith("The migration failed: ")
    assert f"{dom.name()} is still running on lab1 with its definition intact" in data["result"]
    assert where(conns, dom.UUIDString()) == ["running", "absent"] and dom.isPersistent()
    assert AuditEvent.objects.get(action="vm.migrate").result == "failed"


def test_evacuate_a_host_with_a_shut_off_vm(admin_client: Client, lab: dict[str, Any], lab2: dict[str, Any], conns,
                                            hosts, vms) -> None:
    running = [make_vm(conns[0], lab, vms).UUIDString() for _ in range(2)]
    off = make_vm(conns[0], lab, vms, start=False).UUIDString()
    page = admin_client.get(reverse("instances:evacuate", args=["lab1"])).content.decode()
    assert all(name in page for name in vms)
    # Only our VMs: other engineers' VMs share the main lab daemon, so evacuate host 1 through the fleet
    # form for ours and evacuate host 2 (which holds only ours) back for real.
    batch = job_id(admin_client.post(reverse("instances:migrate_many"), {
        "vm": [f"lab1/{u}" for u in [*running, off]], "go": "1", "target": "lab2"}))
    data = wait(admin_client, batch)
    assert data["kind"] == "vm.migrate-many" and data["state"] == "done", data
    assert data["result"].startswith("All 3 VM(s) moved: ")
    assert set(Job.objects.filter(parent_id=batch).values_list("state", flat=True)) == {"done"}
    assert [where(conns, u) for u in running] == [["absent", "running"]] * 2 and where(conns, off) == ["absent",
                                                                                                      "shut off"]
    evacuation = job_id(admin_client.post(reverse("instances:evacuate", args=["lab2"]),
                                          {"target": "__spread__", "include_shut_off": "on",
                                           "migration_address": lab2["host1_address"]}))
    data = wait(admin_client, evacuation)
    assert data["kind"] == "host.evacuate" and data["state"] == "done", data
    steps = Job.objects.filter(parent_id=evacuation).order_by("pk")
    assert [(j.state, j.params["live"]) for j in steps] == [("done", True), ("done", True), ("done", False)]
    page = admin_client.get(reverse("jobs:detail", args=[evacuation])).content.decode()
    assert 'id="job-children"' in page and all(f'href="/jobs/{j.pk}/"' in page for j in steps)
    assert [where(conns, u) for u in running] == [["running", "absent"]] * 2 and where(conns, off) == ["shut off",
                                                                                                      "absent"]
    assert conns[1].listAllDomains() == []
    assert AuditEvent.objects.filter(action="vm.migrate", result="ok").count() == 6
    assert AuditEvent.objects.get(action="host.evacuate").detail.startswith(
        "evacuation of lab2: 3 VM(s): All 3 VM(s) moved: ")


def test_stop_an_evacuation(admin_client: Client, lab: dict[str, Any], conns, hosts, vms) -> None:
    need(conns[1].getFreeMemory() > 2200 * MiB, "host 2 has less than 2.2 GiB free")
    slow = make_vm(conns[0], lab, vms, memory_mib=2048).UUIDString()
    other = make_vm(conns[0], lab, vms).UUIDString()
    batch = job_id(admin_client.post(reverse("instances:migrate_many"), {
        "vm": [f"lab1/{slow}", f"lab1/{other}"], "go": "1", "target": "lab2", "bandwidth_mib": "1"}))
    steps = Job.objects.filter(parent_id=batch).order_by("pk")
    first = steps[0].pk
    end = time.monotonic() + 30
    while not status(admin_client, first)["phase"].startswith("copying memory"):
        assert time.monotonic() < end
        time.sleep(0.2)
    admin_client.post(reverse("jobs:cancel", args=[batch]))
    data = wait(admin_client, batch, timeout=60)
    assert data["state"] == "cancelled", data
    assert [j.state for j in steps.all()] == ["cancelled", "cancelled"]
    assert "before its turn: nothing was moved" in steps.all()[1].result
    assert where(conns, slow) == ["running", "absent"] and where(conns, other) == ["running", "absent"]


def test_job_pages_render(admin_client: Client, lab: dict[str, Any], conns, hosts, vms) -> None:
    lab1, lab2_host = hosts
    vm_uuid = make_vm(conns[0], lab, vms).UUIDString()
    job = start(admin_client, lab1, vm_uuid, lab2_host)
    page = admin_client.get(reverse("jobs:detail", args=[job])).content.decode()
    assert 'Migrate VM <span translate="no">test-mig-' in page  # the VM's name is data, not words
    assert "job-progress.js" in page and 'id="job-cancel"' in page
    wait(admin_client, job)
    page = admin_client.get(reverse("jobs:detail", args=[job])).content.decode()
    assert "now runs on lab2" in page and f'href="/instances/lab2/{vm_uuid}/"' in page and "Open the VM" in page
