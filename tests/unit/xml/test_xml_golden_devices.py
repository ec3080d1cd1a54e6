"""Golden tests for what the disk, CD-ROM and NIC pages change (virt/disks.py, virt/nics.py).

Each case edits a definition with the same functions the pages use, so the -out file is
the device XML libvirt receives, in place; the elements those functions do not know
(iotune, serial, filterref, bandwidth, vlan, tpm, rng, qemu:commandline, metadata,
guest addresses and aliases of a running VM) must come out untouched.
"""

import pytest

from tests.unit.xml.cases import GOLDEN, Cases, GoldenCheck
from virt import create, disks, nics
from virt.create import DiskSource
from virt.devices import Definitions
from virt.xml import Disk, Domain

CASES = Cases()
case = CASES.case


def saved(dom: Domain) -> Definitions:
    return Definitions(dom.name or "", None, dom)


def attach(dom: Domain, disk: Disk) -> None:
    """Where libvirt puts an attached disk: after the disks of its bus with a smaller target, else last."""
    same_bus = [d for d in dom.disks if d.target_bus == disk.target_bus]
    before = [d for d in same_bus if (d.target_dev or "") < (disk.target_dev or "")]
    if before:
        before[-1].element.addnext(disk.element)
    elif same_bus:
        same_bus[0].element.addprevious(disk.element)
    else:
        dom.disks.add(disk)


@case("device-disk-attach")
def attach_disks(dom: Domain) -> Domain:
    defs = saved(dom)
    new_qcow2 = DiskSource("file", path="/var/lib/libvirt/images/files-data.qcow2", format="qcow2")
    attach(dom, disks.disk_element(new_qcow2, target=disks.free_target(defs, "virtio"), bus="virtio", cache="none"))
    lun = DiskSource("block", path="/dev/vg0/files-scratch", format="raw")
    attach(dom, disks.disk_element(lun, target=disks.free_target(defs, "scsi"), bus="scsi", cache="directsync"))
    rbd = DiskSource("volume", pool="ceph", volume="files-archive", format="raw")
    attach(dom, disks.disk_element(rbd, target=disks.free_target(defs, "sata"), bus="sata"))  # default cache
    legacy = DiskSource("file", path="/var/lib/libvirt/images/files-legacy.img", format="raw")
    attach(dom, disks.disk_element(legacy, target=disks.free_target(defs, "ide"), bus="ide", cache="writeback"))
    assert [d.target_dev for d in dom.disks] == ["vda", "vdb", "hda", "hdc", "sda", "sdb"]
    return dom


@case("device-cdrom-media")
def change_media(dom: Domain) -> Domain:
    """A running VM's live definition: the page edits each definition's own copy of the drive."""
    installer, empty = (d for d in dom.disks if d.device == "cdrom")
    disks.set_source(installer, None)  # eject
    disks.set_source(empty, DiskSource("file", path="/var/lib/libvirt/iso/virtio-win.iso"))
    empty.driver_type = "raw"
    return dom


@case("device-cdrom-add")
def add_cdroms(dom: Domain) -> Domain:
    defs = saved(dom)
    bus = create.cdrom_bus(defs.machine)
    assert bus == "sata"  # q35 has no IDE
    attach(dom, disks.cdrom_element(target=disks.free_target(defs, bus), bus=bus))
    iso = DiskSource("volume", pool="isos", volume="rescue.iso")
    attach(dom, disks.cdrom_element(target=disks.free_target(defs, bus), bus=bus, source=iso))
    assert [d.target_dev for d in dom.disks] == ["vda", "sda", "sdb", "sdc"]
    return dom


@case("device-nic-add")
def add_nics(dom: Domain) -> Domain:
    dom.interfaces.add(nics.nic_element(nics.NewNIC("network", "isolated", "e1000"), "52:54:00:00:0e:02"))
    dom.interfaces.add(nics.nic_element(nics.NewNIC("bridge", "br-lan", "virtio"), "52:54:00:00:0e:03"))
    dom.interfaces.add(nics.nic_element(nics.NewNIC("network", "default", "rtl8139"), "52:54:00:00:0e:04"))
    return dom


@case("device-nic-change")
def change_nics(dom: Domain) -> Domain:
    """Live XML of a running VM: port ids and the bridge a network NIC sits on are dropped with the old source."""
    first, second, third = dom.interfaces
    first.set_source("bridge", "br-dmz")
    nics.set_link(first, up=False)
    nics.set_link(second, up=True)
    third.set_source("network", "isolated")
    return dom


def test_every_device_golden_file_has_a_case() -> None:
    names = {p.name.removesuffix("-in.xml").removesuffix("-out.xml") for p in GOLDEN.glob("device-*.xml")}
    assert names == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, golden: GoldenCheck) -> None:
    golden(name, CASES[name])
