"""Acceptance walks of the "Done when" of the storage/networks issue and the VM configuration issue, through the
panel's own pages (Django's test client), with libvirt (virsh on the lab's unix socket) asked at every step.

1. On a host added over ssh: create a dir pool, upload an ISO, create a qcow2 volume and a NAT network, create a VM
   that uses all three; `virsh pool-list`, `vol-list`, `net-dumpxml` and the VM's XML agree with the pages.
2. On the local host: clone a VM, snapshot and revert it, add a disk and a NIC while it runs, change its boot order
   and VNC password, break its XML in the editor, fix it and roll it back from history.

Everything made here is named test-* and removed by the fixtures, also when a step fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import lxml.html
import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import resolve, reverse

from hosts import services
from hosts.models import Host
from instances.models import DomainDefinition
from tests.integration.test_networks_lab import Firewall, dnsmasq_pid, free_subnet
from tests.lab import remove_domain
from tests.lab_resources import IMAGES, local_or_ssh
from tests.unit.test_storage_asgi import asgi, body_of, csrf_token, headers_for
from virt.capabilities import BIOS
from virt.xml import Console, Disk, Domain, Graphics, Interface, Network, Serial, StorageVolume
from webkvm.models import AuditEvent

# transaction=True: the streamed upload and the clone job use the database from their own threads.
pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
MIB = 1 << 20
SECURE_INACTIVE = libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_INACTIVE


# ---- what the user sees, and what libvirt says ------------------------------------------------------


class Browser:
    """The admin's browser: every page it is sent is kept, to check afterwards that no secret was in any."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.pages: list[str] = []

    def _keep(self, response: HttpResponse) -> HttpResponse:
        if not response.streaming:
            self.pages.append(response.content.decode())
        return response

    def get(self, url: str) -> HttpResponse:
        return self._keep(self.client.get(url))

    def post(self, url: str, data: dict[str, str]) -> HttpResponse:
        return self._keep(self.client.post(url, data))

    def submit(self, url: str, data: dict[str, str]) -> str:
        """POST a form that redirects on success; the page it leads to (with its message)."""
        response = self.post(url, data)
        assert response.status_code == 302, (url, response.status_code, response.content.decode()[:3000])
        return self.get(response["Location"]).content.decode()

    def html(self, url: str) -> lxml.html.HtmlElement:
        response = self.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return lxml.html.fromstring(response.content.decode())


def text(page: lxml.html.HtmlElement, xpath: str) -> str:
    found = page.xpath(xpath)
    assert len(found) == 1, (xpath, len(found))
    return " ".join(" ".join(found[0].itertext()).split())  # a <br> separates words too


def table(page: lxml.html.HtmlElement, table_id: str) -> list[list[str]]:
    return [[" ".join(td.text_content().split()) for td in row.xpath("./td")]
            for row in page.xpath(f"//table[@id='{table_id}']/tbody/tr")]


@dataclass
class Virsh:
    uri: str

    def __call__(self, *args: str) -> str:
        return subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True, text=True, check=True,
                              timeout=60).stdout

    def rows(self, *args: str) -> list[list[str]]:
        """The rows of one of virsh's tables (below its header and dashes)."""
        return [line.split() for line in self(*args).splitlines()[2:] if line.strip()]

    def domain(self, name: str, *, inactive: bool = False) -> Domain:
        return Domain.from_xml(self("dumpxml", "--security-info", *(["--inactive"] if inactive else []), name))


# ---- issue 5: storage, ISO, network and a VM using them, on a host added over ssh ----------------------


@dataclass
class Made:
    """What the walk makes on the lab, to remove whatever is left of it."""

    vms: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)


@pytest.fixture
def made(lab_conn: libvirt.virConnect) -> Iterator[Made]:
    things = Made()
    yield things
    for name in things.vms:
        with contextlib.suppress(libvirt.libvirtError):
            remove_domain(lab_conn.lookupByName(name))
    for name in things.networks:
        with contextlib.suppress(libvirt.libvirtError):
            net = lab_conn.networkLookupByName(name)
            if net.isActive():
                net.destroy()
            net.undefine()
    for name in things.pools:
        with contextlib.suppress(libvirt.libvirtError):
            pool = lab_conn.storagePoolLookupByName(name)
            with contextlib.suppress(libvirt.libvirtError):
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
            with contextlib.suppress(libvirt.libvirtError):
                pool.destroy()
            pool.undefine()


@pytest.fixture
def firewall(lab_conn: libvirt.virConnect) -> Iterator[Firewall]:
    """The machine's firewall and forwarding as found; forwarding put back even when the walk fails."""
    state = Firewall(lab_conn)
    state.snapshot()
    yield state
    state.restore_forwarding()


@pytest.fixture
def pool_root(settings: Any) -> Iterator[Path]:
    """A folder the admin allows pools in (qemu, running as libvirt-qemu, must reach it: not pytest's tmp)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="test-accept-", dir=IMAGES))
    root.chmod(0o755)
    settings.WEBKVM_POOL_ROOTS = [str(root)]
    yield root
    shutil.rmtree(root, ignore_errors=True)


def upload_iso(browser: Browser, host: Host, pool: str, name: str, data: bytes) -> dict[str, Any]:
    """What the pool page's script does: announce name and size, then PUT the bytes (streamed by the ASGI app)."""
    check = browser.post(reverse("storage:upload_check", args=[host.name, pool]),
                         {"name": name, "size": str(len(data))})
    assert check.status_code == 200 and check.json()["ok"], check.content
    url = check.json()["url"] + f"?name={name}"
    headers = [*headers_for(browser.client, csrf_token(browser.client, host, pool)),
               (b"content-length", str(len(data)).encode())]
    status, _headers, content = asgi("PUT", url, headers, body_of(data))
    assert status == 201, content
    return {"status": status, "content": content}


def test_issue5_pool_iso_volume_network_and_a_vm_over_ssh(
        admin_client: Client, lab: dict[str, Any], lab_conn: libvirt.virConnect, panel_key_authorized: None,
        pool_root: Path, firewall: Firewall, made: Made) -> None:
    browser, virsh = Browser(admin_client), Virsh(lab["unix_uri"])
    host = local_or_ssh("ssh", lab)
    assert host.transport == "ssh"
    assert 'class="state up"' in browser.get(reverse("hosts:detail", args=[host.name])).content.decode()
    suffix = uuid.uuid4().hex[:8]
    pool, net_name, vm_name = f"test-pool-{suffix}", f"test-net-{suffix}", f"test-vm-{suffix}"
    made.pools.append(pool)
    made.networks.append(net_name)
    made.vms.append(vm_name)
    firewall.mine.add(net_name)
    pool_dir = pool_root / "pool"

    # A dir pool in the allowed folder: built (libvirt makes the directory) and started.
    browser.submit(reverse("storage:pool_new", args=[host.name, "dir"]),
                   {"name": pool, "target_path": str(pool_dir), "build": "on", "start": "on"})
    assert pool_dir.is_dir()
    assert [pool, "active"] in [row[:2] for row in virsh.rows("pool-list", "--all")]
    pools_page = browser.html(reverse("storage:pools", args=[host.name]))
    row = f"//tr[@data-pool='{pool}']"
    assert (text(pools_page, f"{row}/td[@data-col='type']"), text(pools_page, f"{row}/td[@data-col='state']")) == (
        "dir", "active")
    assert str(pool_dir) in text(pools_page, row)

    # An ISO, uploaded from the "browser" through libvirt's stream API over ssh.
    iso = os.urandom(384 * 1024)
    upload_iso(browser, host, pool, "installer.iso", iso)
    assert hashlib.sha256((pool_dir / "installer.iso").read_bytes()).digest() == hashlib.sha256(iso).digest()

    # A qcow2 volume.
    browser.submit(reverse("storage:volume_new", args=[host.name, pool]),
                   {"name": "disk.qcow2", "size": "64M", "format": "qcow2"})
    info = virsh("vol-info", "--bytes", "--pool", pool, "disk.qcow2")
    assert int(info.split("Capacity:")[1].split()[0]) == 64 * MIB
    assert "<format type='qcow2'/>" in virsh("vol-dumpxml", "--pool", pool, "disk.qcow2")

    # The pool's page and `virsh vol-list` agree: the same volumes at the same paths.
    listed = {name: path for name, path in virsh.rows("vol-list", pool)}
    assert listed == {"installer.iso": str(pool_dir / "installer.iso"), "disk.qcow2": str(pool_dir / "disk.qcow2")}
    pool_page = browser.html(reverse("storage:pool", args=[host.name, pool]))
    for name, path in listed.items():
        assert path in text(pool_page, f"//tr[@data-volume='{name}']")
    assert text(pool_page, "//tr[@data-volume='disk.qcow2']/td[@data-col='format']") == "qcow2"
    assert pool_page.xpath("//tr[@data-volume='installer.iso']/td[@data-col='capacity']/@title") == [
        f"{len(iso)} bytes"]

    # A NAT network with DHCP, started: dnsmasq runs for it.
    x = free_subnet(lab_conn)
    browser.submit(reverse("networks:create", args=[host.name]), {
        "name": net_name, "mode": "nat", "macvtap_mode": "bridge", "ipv4_address": f"10.213.{x}.1/24",
        "ipv4_dhcp_start": f"10.213.{x}.100", "ipv4_dhcp_end": f"10.213.{x}.199", "start": "on"})
    assert dnsmasq_pid(net_name) is not None
    net = Network.from_xml(virsh("net-dumpxml", net_name))
    ip = net.ips[0]
    assert (net.forward_mode, ip.address, ip.prefix) == ("nat", f"10.213.{x}.1", 24)
    assert [(r.start, r.end) for r in ip.dhcp_ranges] == [(f"10.213.{x}.100", f"10.213.{x}.199")]
    net_page = browser.html(reverse("networks:detail", args=[host.name, net_name]))
    assert text(net_page, "//dd[@data-fact='mode']") == "nat"
    assert text(net_page, "//dd[@data-fact='bridge']") == net.bridge_name
    dash = "\N{EN DASH}"
    assert text(net_page, "//dd[@data-fact='ipv4']") == f"10.213.{x}.1/24 DHCP 10.213.{x}.100 {dash} 10.213.{x}.199"

    # The create form offers all three; the VM uses the volume as its disk, the ISO as CD-ROM, the network as NIC.
    create = reverse("instances:create") + f"?host={host.name}"
    form = browser.get(create).context["form"]
    assert (f"{pool}/disk.qcow2", f"{pool}/disk.qcow2") in form.fields["existing_volume"].choices
    assert (f"{pool}/installer.iso", f"{pool}/installer.iso") in form.fields["iso"].choices
    assert (f"network:{net_name}", f"network {net_name}") in form.fields["nic1_source"].choices
    created = browser.post(create, {
        "name": vm_name, "vcpus": "1", "size": "custom", "memory": "64M", "firmware": BIOS, "machine": "",
        "cpu_mode": "default",
        "disk_source": "existing", "disk_pool": "", "disk_size": "", "disk_format": "qcow2",
        "existing_volume": f"{pool}/disk.qcow2", "iso": f"{pool}/installer.iso",
        "nic1_source": f"network:{net_name}", "nic1_model": "virtio", "nic2_source": "", "nic2_model": "virtio",
        "nic3_source": "", "nic3_model": "virtio", "start": "on"})
    assert created.status_code == 302, created.context and created.context["form"].errors
    vm_uuid = lab_conn.lookupByName(vm_name).UUIDString()
    assert created["Location"] == reverse("instances:detail", args=[host.name, vm_uuid])
    assert virsh("domstate", vm_name).strip() == "running"

    # The VM's XML (live and saved) points at exactly those three; its NIC is on the network's bridge.
    live, saved = virsh.domain(vm_name), virsh.domain(vm_name, inactive=True)
    for doc in (live, saved):
        disks = {d.device: d for d in doc.disks}
        assert set(disks) == {"disk", "cdrom"}
        assert (disks["disk"].source_file, disks["disk"].driver_type) == (listed["disk.qcow2"], "qcow2")
        assert disks["cdrom"].source_file == listed["installer.iso"] and disks["cdrom"].readonly
        assert [i.source_network for i in doc.interfaces] == [net_name]
    assert live.interfaces[0].source_bridge == net.bridge_name and live.interfaces[0].target_dev
    detail = browser.html(created["Location"])
    assert text(detail, "//dd[@data-fact='state']") == "running"
    assert sorted((row[0], row[3]) for row in table(detail, "disks")) == sorted(
        (d.target_dev, d.source_file) for d in live.disks)
    assert table(detail, "nics")[0][:3] == [live.interfaces[0].mac, "virtual network", net_name]
    pool_page = browser.html(reverse("storage:pool", args=[host.name, pool]))
    for name in listed:
        assert vm_name in text(pool_page, f"//tr[@data-volume='{name}']/td[@data-col='used-by']")
    net_page = browser.html(reverse("networks:detail", args=[host.name, net_name]))
    assert text(net_page, "//dd[@data-fact='connections']") == "1"
    assert Network.from_xml(virsh("net-dumpxml", net_name)).connections == 1

    # Cleaned up through the pages as well: the VM (its volumes stay), the network, the pool with its storage.
    browser.submit(reverse("instances:delete", args=[host.name, vm_uuid]), {"force_off": "1"})
    assert vm_name not in virsh("list", "--all", "--name").split()
    browser.submit(reverse("networks:confirm", args=[host.name, net_name, "delete"]), {"confirm": "yes"})
    assert net_name not in virsh("net-list", "--all", "--name").split() and dnsmasq_pid(net_name) is None
    browser.submit(reverse("storage:pool_delete", args=[host.name, pool]), {"delete_storage": "on"})
    assert pool not in [row[0] for row in virsh.rows("pool-list", "--all")] and not pool_dir.exists()
    firewall.assert_as_found()
    actions = list(AuditEvent.objects.filter(host_name=host.name).order_by("id").values_list("action", "result"))
    assert actions == [(a, "ok") for a in ("pool.create", "volume.upload", "volume.create", "network.create",
                                           "vm.create", "vm.delete", "network.delete", "pool.delete")]


# ---- issue 6: a VM's configuration, step by step -----------------------------------------------------


OLD_PASSWORD, NEW_PASSWORD = "old-pw1", "n3w-pw8"  # VNC uses at most 8 characters


def define_vm(conn: libvirt.virConnect, domain_type: str, name: str, pool: libvirt.virStoragePool,
              network: str) -> libvirt.virDomain:
    """A shut-off VM with a qcow2 disk in the pool, a NIC, a VNC password and ACPI (what PCI hot-plug needs)."""
    vol = pool.createXML(StorageVolume.new(name=f"{name}.qcow2", capacity=16 * MIB, allocation=0,
                                           format="qcow2").to_xml(), 0)
    dom = Domain.new(type=domain_type, name=name)
    dom.memory = dom.current_memory = 64 * 1024
    dom.vcpus = 1
    dom.os.type, dom.os.arch = "hvm", "x86_64"
    dom.os.boot_devices = ["hd"]
    dom.features.acpi = True
    dom.on_poweroff, dom.on_reboot, dom.on_crash = "destroy", "restart", "destroy"
    dom.disks.add(Disk.new(type="file", device="disk", driver_name="qemu", driver_type="qcow2",
                           source_file=vol.path(), target_dev="vda", target_bus="virtio"))
    dom.interfaces.add(Interface.new(type="network", source_network=network, model="virtio"))
    dom.graphics.add(Graphics.new(type="vnc", autoport=True, listen="127.0.0.1", passwd=OLD_PASSWORD))
    dom.serials.add(Serial.new(type="pty", target_port=0))
    dom.consoles.add(Console.new(type="pty", target_type="serial", target_port=0))
    return conn.defineXML(dom.to_xml())


def qemu_io(path: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path], capture_output=True, text=True,
                          timeout=30)


def wait_for_clone(browser: Browser, progress: str, source_uuid: str, host: Host) -> dict[str, Any]:
    """Poll the job page's JSON until the job ends (and the source VM's lock is free again); "uuid": the
    clone's, from the job's link."""
    deadline = time.monotonic() + 45
    status_url = reverse("jobs:status", kwargs=resolve(progress).kwargs)
    while time.monotonic() < deadline:
        status: dict[str, Any] = browser.get(status_url).json()
        if not status["active"] and not services.vm_locks.held(str(host.pk), source_uuid):
            status["uuid"] = str(resolve(status["link"]).kwargs["vm"]) if status["link"] else ""
            return status
        time.sleep(0.2)
    raise AssertionError("the clone job did not end")


def test_issue6_clone_snapshot_devices_boot_vnc_and_the_xml_editor(
        admin_client: Client, lab: dict[str, Any], lab_conn: libvirt.virConnect, lab_host: Host,
        test_pool: libvirt.virStoragePool, isolated_net: Callable[[], str], made_vms: list[str]) -> None:
    browser, virsh = Browser(admin_client), Virsh(lab["unix_uri"])
    first_net, second_net = isolated_net(), isolated_net()
    name = f"test-cfg-{uuid.uuid4().hex[:8]}"
    made_vms.append(name)
    dom = define_vm(lab_conn, lab["domain_type"], name, test_pool, first_net)
    base = [lab_host.name, dom.UUIDString()]

    def url(view: str) -> str:
        return reverse(f"instances:{view}", args=base)

    disk_path = virsh.domain(name, inactive=True).disks[0].source_file or ""
    assert qemu_io(disk_path, "write -P 0x11 0 1M").returncode == 0

    # Clone: a new VM with a new UUID and MAC, its own copy of the disk, which starts cleanly.
    clone_name = f"{name}-c"
    made_vms.append(clone_name)
    assert browser.get(url("clone")).status_code == 200
    started = browser.post(url("clone"), {"name": clone_name})
    assert started.status_code == 302, started.content.decode()[:2000]
    assert browser.get(started["Location"]).status_code == 200  # the progress page
    status = wait_for_clone(browser, started["Location"], dom.UUIDString(), lab_host)
    assert (status["state"], status["percent"]) == ("done", 100), status
    source, clone = virsh.domain(name, inactive=True), virsh.domain(clone_name, inactive=True)
    assert clone.uuid == status["uuid"] != source.uuid
    clone_disk = clone.disks[0].source_file or ""
    assert Path(clone_disk).parent == Path(disk_path).parent and clone_disk != disk_path
    assert Path(clone_disk).name in virsh("vol-list", test_pool.name())
    assert subprocess.run(["qemu-img", "compare", disk_path, clone_disk], capture_output=True).returncode == 0
    assert clone.interfaces[0].mac != source.interfaces[0].mac
    assert clone.interfaces[0].source_network == first_net
    clone_base = [lab_host.name, status["uuid"]]
    browser.submit(reverse("instances:action", args=[*clone_base, "start"]), {})
    assert virsh("domstate", clone_name).strip() == "running"
    assert virsh("domstate", name).strip() == "shut off"
    browser.submit(reverse("instances:action", args=[*clone_base, "destroy"]), {"confirm": "yes"})
    assert virsh("domstate", clone_name).strip() == "shut off"

    # Snapshot, change the disk and the description, revert: both come back.
    browser.submit(url("describe"), {"title": "", "description": "before the snapshot"})
    page = browser.submit(url("snapshot_create"), {"name": "s1", "description": "known good"})
    assert f"{name}: snapshot s1 taken." in page
    assert virsh("snapshot-list", name, "--name").split() == ["s1"]
    listing = browser.html(url("snapshots"))
    assert listing.xpath("//*[@data-snapshot='s1']") and "known good" in text(listing, "//*[@data-snapshot='s1']")
    browser.submit(url("describe"), {"title": "", "description": "after the snapshot"})
    assert qemu_io(disk_path, "write -P 0x22 0 1M").returncode == 0
    confirm = browser.post(url("snapshot_revert"), {"snapshot": "s1"})
    assert confirm.status_code == 200 and "Whatever changed since the snapshot is lost." in confirm.content.decode()
    assert "back to snapshot s1." in browser.submit(url("snapshot_revert"), {"snapshot": "s1", "confirm": "yes"})
    assert virsh.domain(name, inactive=True).description == "before the snapshot"
    assert qemu_io(disk_path, "read -P 0x11 0 1M").returncode == 0  # the data written after s1 is gone

    # Start it; add a disk and a NIC while it runs: the running VM and its definition both have them.
    browser.submit(reverse("instances:action", args=[*base, "start"]), {})
    assert virsh("domstate", name).strip() == "running"
    page = browser.submit(url("disk_attach"), {
        "source": "new", "pool": test_pool.name(), "volume_name": "", "size": "16M", "format": "qcow2",
        "volume": "", "bus": "virtio", "cache": "none"})
    assert f"new volume {test_pool.name()}/{name}-data.qcow2 attached as vdb (virtio)." in page
    page = browser.submit(url("nic_add"), {"source": f"network:{second_net}", "model": "virtio", "mac": ""})
    live, saved = virsh.domain(name), virsh.domain(name, inactive=True)
    assert [d.target_dev for d in live.disks] == [d.target_dev for d in saved.disks] == ["vda", "vdb"]
    new_mac = next(i.mac for i in live.interfaces if i.source_network == second_net) or ""
    assert f"Network interface {new_mac} (virtio) on network {second_net} added." in page
    assert [i.mac for i in saved.interfaces] == [i.mac for i in live.interfaces] and len(live.interfaces) == 2
    assert all(i.target_dev for i in live.interfaces)  # a tap device each: really plugged in
    detail = browser.html(url("detail"))
    assert [row[0] for row in table(detail, "disks")] == ["vda", "vdb"]
    assert sorted(row[0] for row in table(detail, "nics")) == sorted(i.mac or "" for i in live.interfaces)

    # Boot order: the new NIC first, then the first disk; saved for the next boot.
    boot_form = browser.get(url("boot")).context["form"]
    keys = {d.key for d in boot_form.settings.devices}
    nic_key = "nic-" + new_mac.replace(":", "")
    assert {"disk-vda", "disk-vdb", nic_key} <= keys
    page = browser.submit(url("boot"), {f"order_{nic_key}": "1", "order_disk-vda": "2", "bootmenu": "on"})
    assert "boot order and menu saved; they apply at the next boot." in page
    saved = virsh.domain(name, inactive=True)
    orders = {**{f"disk-{d.target_dev}": d.boot_order for d in saved.disks},
              **{"nic-" + (i.mac or "").replace(":", ""): i.boot_order for i in saved.interfaces}}
    assert {k: v for k, v in orders.items() if v} == {nic_key: 1, "disk-vda": 2}
    assert saved.os.boot_devices == [] and saved.os.bootmenu is True
    assert virsh.domain(name).os.boot_devices == ["hd"]  # the running VM keeps its order until it restarts

    # VNC password: reaches the running VM at once, lives in libvirt's definition only.
    page = browser.submit(url("vnc"), {"password_action": "set", "password": NEW_PASSWORD, "keymap": "",
                                       "listen": "127.0.0.1"})
    assert "Applied now: password." in page
    assert Domain.from_xml(dom.XMLDesc(SECURE_INACTIVE)).graphics[0].passwd == NEW_PASSWORD
    assert Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)).graphics[0].passwd == NEW_PASSWORD
    assert NEW_PASSWORD not in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)  # without SECURE libvirt hides it

    # The XML editor: a broken definition is refused with libvirt's words and its line; nothing changes.
    before = dom.XMLDesc(SECURE_INACTIVE)
    editor = browser.get(url("xml_edit"))
    form = {k: editor.context[k] for k in ("base", "original")}
    broken = editor.context["text"].replace("<on_crash>", "<no-such-setting/>\n  <on_crash>")
    refused = browser.post(url("xml_edit"), {**form, "xml": broken})
    assert refused.status_code == 400
    assert "failed to validate against schema" in refused.content.decode()
    assert refused.context["error_line"] == broken.split("\n").index("  <no-such-setting/>") + 1
    assert dom.XMLDesc(SECURE_INACTIVE) == before and not DomainDefinition.objects.exists()

    # Fixed in the same editor, with the change that was meant: saved, the password kept, pending until next boot.
    fixed = refused.context["text"].replace("<no-such-setting/>\n  ", "").replace(
        "<on_crash>destroy</on_crash>", "<on_crash>restart</on_crash>")
    page = browser.submit(url("xml_edit"), {"base": refused.context["base"], "original": refused.context["original"],
                                            "xml": fixed})
    assert "definition saved; the previous one is kept in the history." in page and "Pending until next boot" in page
    edited = Domain.from_xml(dom.XMLDesc(SECURE_INACTIVE))
    assert edited.on_crash == "restart" and edited.graphics[0].passwd == NEW_PASSWORD
    assert virsh.domain(name).on_crash == "destroy"  # the running VM is untouched

    # Rolled back from the history: byte for byte the definition from before the edit.
    history = browser.get(url("xml_history"))
    entry = DomainDefinition.objects.get(host=lab_host, vm_uuid=dom.UUIDString())
    assert [e["pk"] for e in history.context["entries"]] == [entry.pk]
    rollback = reverse("instances:xml_rollback", args=[*base, entry.pk])
    browser.submit(rollback, {"base": history.context["base"]})
    assert dom.XMLDesc(SECURE_INACTIVE) == before
    assert virsh("dumpxml", "--inactive", "--security-info", name) == before + "\n"

    # The password was in no page the panel sent, and every step left one audit record.
    assert browser.pages and not [p for p in browser.pages if NEW_PASSWORD in p or OLD_PASSWORD in p]
    assert list(AuditEvent.objects.filter(action__startswith="vm.").order_by("id").values_list("action", "result")) \
        == [*((a, "ok") for a in ("vm.clone", "vm.start", "vm.destroy", "vm.describe", "vm.snapshot.create",
                                  "vm.describe", "vm.snapshot.revert", "vm.start", "vm.disk.attach", "vm.nic.add",
                                  "vm.boot", "vm.vnc")),
            ("vm.xml.edit", "failed"), ("vm.xml.edit", "ok"), ("vm.xml.rollback", "ok")]
