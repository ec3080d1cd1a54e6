"""Migration through the panel between the lab's two real hosts: the main libvirtd ("lab1", local
socket) and lab host 2 ("lab2", its own network namespace, qemu+tcp://10.213.0.2:16509).

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


def start(client: Client, source: Host, vm_uuid: str, target: Host, **options: Any) -> str:
    response = client.post(reverse("instances:migrate", args=[source.name, vm_uuid]),
                           {"target": target.name, **options})
    assert response.status_code == 302, response.content[:800]
    return response.url.rstrip("/").rsplit("/", 1)[-1]


def status(client: Client, job: str) -> dict[str, Any]:
    response = client.get(reverse("instances:migration_status", args=[job]))
    assert response.status_code == 200
    return response.json()


def wait(client: Client, job: str, timeout: float = 90) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        data = status(client, job)
        if data["finished"]:
            return data
        assert time.monotonic() < end, data
        time.sleep(0.2)


def migrate(client: Client, source: Host, vm_uuid: str, target: Host, **options: Any) -> dict[str, Any]:
    data = wait(client, start(client, source, vm_uuid, target, **options))
    assert data["report"]["outcome"] == "done", data
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
    assert there["progress"]["percent"] == 100.0 and there["progress"]["downtime_ms"] is not None
    assert there["report"]["vm_host"] == "lab2" and there["vm_url"] == f"/instances/lab2/{vm_uuid}/"
    assert there["console_url"] == reverse("console:page", args=["lab2", vm_uuid])
    assert conns[1].lookupByUUIDString(vm_uuid).isPersistent()
    # The console follows: through the panel's proxy to host 2's VNC server on its own address.
    first = open_console(admin_client, lab2_host, vm_uuid)
    assert first["bytes"].startswith(b"RFB 003.008"), first
    # The fleet view shows it on its new host at once.
    fleet = admin_client.get(reverse("instances:list")).content.decode()
    assert f'data-key="lab2/{vm_uuid}"' in fleet and f'data-key="lab1/{vm_uuid}"' not in fleet
    record = AuditEvent.objects.get(action="vm.migrate")
    assert record.result == "ok" and record.host_name == "lab1"
    assert "from lab1 to lab2" in record.detail and "options: live" in record.detail
    assert "downtime" in record.detail and "duration" in record.detail
    # Grants name a VM by host and UUID: bob's followed it.
    assert list(VMGrant.objects.filter(user=bob).values_list("host__name", "can_console")) == [("lab2", True)]

    # Back: host 1 listens on loopback only, so the data goes to its address on the veth pair.
    back = migrate(admin_client, lab2_host, vm_uuid, lab1, migration_address=lab2["host1_address"],
                   max_downtime_ms="300", bandwidth_mib="500")
    assert back["options"] == f"live, max downtime 300 ms, bandwidth 500 MiB/s, data to {lab2['host1_address']}"
    assert where(conns, vm_uuid) == ["running", "absent"]
    assert back["report"]["vm_host"] == "lab1"
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
    assert "peer-to-peer" in data["options"]
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
    assert data["live"] is False and data["options"] == "offline"
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
    refused = wait(admin_client, start(admin_client, lab1, vm_uuid, lab2_host, copy_storage="on"))
    assert refused["report"]["outcome"] == "refused" and where(conns, vm_uuid) == ["running", "absent"]

    pools(conns[1])  # the same path on host 2
    assert 'id="migrate-now"' in check_page(admin_client, lab1, vm_uuid, lab2_host, copy_storage="on")
    data = migrate(admin_client, lab1, vm_uuid, lab2_host, copy_storage="on")
    assert where(conns, vm_uuid) == ["absent", "running"]
    assert any("stays on lab1" in note for note in data["report"]["notes"])
    copy = host2_path(lab2, disk)
    assert copy.exists() and copy.stat().st_ino != disk.stat().st_ino
    compared = subprocess.run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", str(raw), str(copy)],
                              capture_output=True, text=True, timeout=60)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "copy storage" in AuditEvent.objects.filter(action="vm.migrate", result="ok").get().detail


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
    # untouched, so it costs nothing on host 1).
    free = conns[1].getFreeMemory()
    total = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    need(free + 1024 * MiB < total - 512 * MiB, "the machine has no room for a VM larger than host 2's free memory")
    big = make_vm(conns[0], lab, vms, memory_mib=(free + 1024 * MiB) // MiB)
    page = check_page(admin_client, lab1, big.UUIDString(), lab2_host)
    assert findings(page) == {"memory"} and "free; the VM needs" in page
    big.destroy()
    # Nothing moved, and a POST that skips the check page is refused by the job's own checks.
    refused = wait(admin_client, start(admin_client, lab1, vm_uuid, again))
    assert refused["report"]["outcome"] == "refused" and refused["findings"][0]["code"] == "same-host"
    assert where(conns, vm_uuid) == ["running", "absent"]
    record = AuditEvent.objects.get(action="vm.migrate")
    assert record.result == "failed" and "pre-flight" in record.detail


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
    while (data := status(admin_client, job))["progress"]["processed"] == 0:
        assert not data["finished"] and time.monotonic() < end, data
        time.sleep(0.2)
    assert data["state"] == "migrating" and 0 <= data["progress"]["percent"] < 100
    assert admin_client.post(reverse("instances:migration_cancel", args=[job])).status_code == 302
    data = wait(admin_client, job, timeout=60)
    assert data["report"]["outcome"] == "cancelled", data
    assert "still running on lab1 with its definition intact" in data["report"]["message"]
    assert where(conns, vm_uuid) == ["running", "absent"]
    assert conns[0].lookupByUUIDString(vm_uuid).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert AuditEvent.objects.get(action="vm.migrate").result == "failed"
    assert AuditEvent.objects.filter(action="vm.migrate-cancel", result="ok").count() == 1


def test_target_dying_half_way_leaves_the_vm_on_the_source(admin_client: Client, lab: dict[str, Any],
                                                           lab2: dict[str, Any], conns, hosts, vms) -> None:
    """The incoming qemu on host 2 is killed mid-migration: the VM keeps running on host 1, and the page says so."""
    lab1, lab2_host = hosts
    need(conns[1].getFreeMemory() > 2200 * MiB, "host 2 has less than 2.2 GiB free")
    dom = make_vm(conns[0], lab, vms, memory_mib=2048)
    job = start(admin_client, lab1, dom.UUIDString(), lab2_host, bandwidth_mib="1")
    pidfile = Path(lab2["state_dir"]) / "root" / "run-libvirt" / "qemu" / f"{dom.name()}.pid"
    end = time.monotonic() + 30
    while status(admin_client, job)["progress"]["processed"] == 0 or not pidfile.exists():
        assert time.monotonic() < end
        time.sleep(0.2)
    os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
    data = wait(admin_client, job, timeout=60)
    assert data["report"]["outcome"] == "failed", data
    assert f"{dom.name()} is still running on lab1 with its definition intact" in data["report"]["message"]
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
    response = admin_client.post(reverse("instances:migrate_many"), {
        "vm": [f"lab1/{u}" for u in [*running, off]], "go": "1", "target": "lab2"})
    assert response.status_code == 302, response.content[:800]
    batch = response.url.rstrip("/").rsplit("/", 1)[-1]
    data = wait(admin_client, batch)
    assert data["counts"] == {"done": 3}, data
    assert [where(conns, u) for u in running] == [["absent", "running"]] * 2 and where(conns, off) == ["absent",
                                                                                                      "shut off"]
    response = admin_client.post(reverse("instances:evacuate", args=["lab2"]),
                                 {"target": "__spread__", "include_shut_off": "on",
                                  "migration_address": lab2["host1_address"]})
    assert response.status_code == 302, response.content[:800]
    data = wait(admin_client, response.url.rstrip("/").rsplit("/", 1)[-1])
    assert data["counts"] == {"done": 3}, data
    assert [j["live"] for j in data["jobs"]] == [True, True, False]
    assert [where(conns, u) for u in running] == [["running", "absent"]] * 2 and where(conns, off) == ["shut off",
                                                                                                      "absent"]
    assert conns[1].listAllDomains() == []
    assert AuditEvent.objects.filter(action="vm.migrate", result="ok").count() == 6
    assert AuditEvent.objects.get(action="host.evacuate").detail.startswith("3 VM(s): 3 done")


def test_stop_an_evacuation(admin_client: Client, lab: dict[str, Any], conns, hosts, vms) -> None:
    need(conns[1].getFreeMemory() > 2200 * MiB, "host 2 has less than 2.2 GiB free")
    slow = make_vm(conns[0], lab, vms, memory_mib=2048).UUIDString()
    other = make_vm(conns[0], lab, vms).UUIDString()
    response = admin_client.post(reverse("instances:migrate_many"), {
        "vm": [f"lab1/{slow}", f"lab1/{other}"], "go": "1", "target": "lab2", "bandwidth_mib": "1"})
    batch = response.url.rstrip("/").rsplit("/", 1)[-1]
    end = time.monotonic() + 30
    while status(admin_client, batch)["jobs"][0]["state"] != "migrating":
        assert time.monotonic() < end
        time.sleep(0.2)
    admin_client.post(reverse("instances:migration_cancel", args=[batch]))
    data = wait(admin_client, batch, timeout=60)
    assert data["stopped"] and [j["state"] for j in data["jobs"]] == ["cancelled", "skipped"]
    assert where(conns, slow) == ["running", "absent"] and where(conns, other) == ["running", "absent"]


def test_job_pages_render(admin_client: Client, lab: dict[str, Any], conns, hosts, vms) -> None:
    lab1, lab2_host = hosts
    vm_uuid = make_vm(conns[0], lab, vms).UUIDString()
    job = start(admin_client, lab1, vm_uuid, lab2_host)
    page = admin_client.get(reverse("instances:migration", args=[job])).content.decode()
    assert 'id="migration-bar"' in page and "migrate-progress.js" in page and 'id="cancel-button"' in page
    wait(admin_client, job)
    page = admin_client.get(reverse("instances:migration", args=[job])).content.decode()
    assert "now runs on lab2" in page and f'href="/instances/lab2/{vm_uuid}/"' in page
    assert admin_client.get(reverse("instances:migration", args=["0" * 24])).status_code == 404
