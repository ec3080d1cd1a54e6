"""Golden tests for <domain> XML: see Golden in conftest.py for what each case proves."""

import pytest

from tests.unit.xml.cases import GOLDEN, Cases, GoldenCheck
from virt.xml import (
    Console,
    Disk,
    Domain,
    Graphics,
    Interface,
    Serial,
)
from virt.xml.domain import Channel

CASES = Cases()
case = CASES.case


# --- domains -------------------------------------------------------------------


@case("domain-rename")
def rename(dom: Domain) -> Domain:
    assert (dom.name, dom.title, dom.description) == ("web1", "Web server", "Front-end nginx")
    dom.name = "web2"
    dom.title = "Web server (staging)"
    dom.description = None
    return dom


@case("domain-memory")
def change_memory(dom: Domain) -> Domain:
    # The document uses GiB and MiB; the API always speaks KiB.
    assert (dom.memory, dom.current_memory) == (2 * 1024 * 1024, 1536 * 1024)
    assert (dom.vcpus, dom.current_vcpus) == (2, 1)
    dom.memory = dom.current_memory = 4 * 1024 * 1024
    dom.vcpus = 4
    dom.current_vcpus = None
    return dom


@case("domain-add-disk")
def add_disks(dom: Domain) -> Domain:
    dom.disks.add(
        Disk.new(
            type="file",
            device="disk",
            driver_name="qemu",
            driver_type="qcow2",
            driver_cache="none",
            source_file="/var/lib/libvirt/images/web1-data.qcow2",
            target_dev=dom.free_target_dev("vd"),
            target_bus="virtio",
        )
    )
    dom.disks.add(
        Disk.new(
            type="volume",
            device="disk",
            driver_name="qemu",
            driver_type="raw",
            source_pool="default-pool",
            source_volume="scratch.img",
            target_dev=dom.free_target_dev("vd"),
            target_bus="virtio",
        )
    )
    cdrom = Disk.new(type="file", device="cdrom", driver_name="qemu", driver_type="raw", readonly=True)
    cdrom.source_file = "/var/lib/libvirt/iso/debian-12.iso"
    cdrom.target_dev, cdrom.target_bus = dom.free_target_dev("sd"), "sata"
    dom.disks.add(cdrom)
    # Per-device boot order replaces <os><boot dev=...>; libvirt refuses both at once.
    dom.os.boot_devices = []
    cdrom.boot_order, dom.disks[0].boot_order = 1, 2
    assert [d.target_dev for d in dom.disks] == ["vda", "vdb", "vdc", "sda"]
    assert dom.disks[2].source_path == "default-pool/scratch.img"
    return dom


@case("domain-add-nic")
def add_nics(dom: Domain) -> Domain:
    dom.interfaces[0].model = "virtio"
    dom.interfaces.add(Interface.new(type="bridge", mac="52:54:00:00:0c:02", source_bridge="br0", model="virtio"))
    isolated = dom.interfaces.add()  # an empty <interface/>, filled in place
    isolated.type, isolated.source_network, isolated.model = "network", "isolated", "e1000e"
    isolated.link_state = "down"
    return dom


@case("domain-vnc-listen")
def vnc_listen(dom: Domain) -> Domain:
    vnc = dom.graphics[0]
    assert (vnc.type, vnc.listen, vnc.autoport, vnc.port) == ("vnc", "0.0.0.0", True, -1)
    vnc.listen = "127.0.0.1"
    vnc.passwd = "s3cret"
    vnc.keymap = "de"
    return dom


@case("domain-boot-os")
def boot_and_os(dom: Domain) -> Domain:
    assert dom.os.boot_devices == ["hd"] and dom.features.acpi and dom.features.apic
    dom.os.boot_devices = ["cdrom", "hd"]
    dom.os.bootmenu = True
    dom.os.firmware = "efi"
    dom.features.apic = False
    dom.cpu_mode = "host-model"
    dom.cpu_migratable = None  # libvirt rejects it outside host-passthrough
    return dom


@case("domain-remove-devices")
def remove_devices(dom: Domain) -> Domain:
    cdrom = next(d for d in dom.disks if d.device == "cdrom")
    assert cdrom.readonly
    dom.disks.remove(cdrom)
    dom.interfaces.remove(dom.interfaces[1])
    dom.interfaces[0].link_state = "down"
    dom.os.boot_devices = ["hd"]
    vnc = dom.graphics[0]
    vnc.passwd = None
    vnc.listen = None  # back to libvirt's default listen address
    vnc.port, vnc.autoport = None, True
    return dom


@case("domain-unknown")
def edit_around_unknown_elements(dom: Domain) -> Domain:
    dom.name = "legacy-renamed"
    dom.memory = 2 * 1024 * 1024
    dom.disks[0].driver_cache = "none"
    return dom


@case("domain-new")
def new_domain() -> Domain:
    dom = Domain.new(type="kvm", name="fresh", uuid="3f0c7a52-5d1e-4c33-9a57-0f0e2b1d0f01")
    dom.memory = dom.current_memory = 1024 * 1024
    dom.vcpus = 2
    dom.os.type, dom.os.arch, dom.os.machine = "hvm", "x86_64", "q35"
    dom.os.boot_devices = ["hd"]
    dom.features.acpi = dom.features.apic = True
    dom.cpu_mode = "host-passthrough"
    dom.disks.add(
        Disk.new(
            type="file",
            device="disk",
            driver_name="qemu",
            driver_type="qcow2",
            source_file="/var/lib/libvirt/images/fresh.qcow2",
            target_dev=dom.free_target_dev(),
            target_bus="virtio",
        )
    )
    dom.interfaces.add(Interface.new(type="network", source_network="default", model="virtio"))
    dom.graphics.add(Graphics.new(type="vnc", autoport=True, listen="127.0.0.1"))
    dom.serials.add(Serial.new(type="pty", target_port=0))
    dom.consoles.add(Console.new(type="pty", target_type="serial", target_port=0))
    dom.channels.add(Channel.guest_agent())  # as virt/create.py's VMs have: libvirt picks the socket path
    return dom


def test_every_golden_file_has_a_case() -> None:
    names = {p.name.removesuffix("-in.xml").removesuffix("-out.xml") for p in GOLDEN.glob("*.xml")}
    assert {n for n in names if n.startswith(("domain-",))} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, golden: GoldenCheck) -> None:
    golden(name, CASES[name])
