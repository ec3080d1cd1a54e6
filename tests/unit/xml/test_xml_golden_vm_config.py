"""Golden tests for the definition changes of the VM configuration pages (clone, boot, VNC, snapshots).

Each case runs the very function the page uses on a golden/config-*-in.xml document full of
elements the panel does not model (metadata, clock, pm, controllers, video, a USB host device...),
compares with config-*-out.xml, and defines the result in libvirt's test driver (see conftest.py).
"""

import libvirt
import pytest

from tests.unit.xml.cases import GOLDEN, Cases, GoldenCheck
from tests.unit.xml.conftest import canonical
from virt import boot, clone, graphics, snapshots
from virt.xml import Domain
from virt.xml.domain import DomainSnapshot

CASES = Cases()
case = CASES.case


@case("config-clone")
def clone_definition(dom: Domain) -> Domain:
    sources = {"vda": clone.NewSource(path="/var/lib/libvirt/images/web1-copy.qcow2"),
               "vdb": clone.NewSource(pool="default-pool", volume="web1-copy-vdb.img")}
    copy = clone.clone_domain_xml(dom, "web1-copy", sources, ["52:54:00:aa:00:01", "52:54:00:aa:00:02"])
    assert (copy.name, copy.uuid) == ("web1-copy", None)
    assert dom.name == "web1" and dom.disks[0].source_file == "/var/lib/libvirt/images/web1.qcow2"  # untouched
    assert [d.source_path for d in copy.disks] == ["/var/lib/libvirt/images/web1-copy.qcow2",
                                                   "default-pool/web1-copy-vdb.img",
                                                   "/var/lib/libvirt/iso/debian-12.iso"]  # the CD-ROM is shared
    vnc = copy.graphics[0]
    assert (vnc.port, vnc.autoport, vnc.passwd, vnc.keymap) == (None, True, "s3cret", "de")
    return copy


@case("config-boot-order")
def per_device_order(dom: Domain) -> Domain:
    assert boot.current_order(dom) == {"disk-vda": 1, "disk-sda": 2}
    boot.set_device_order(dom, ["disk-sda", "nic-5254006b3c58", "disk-vda"])
    boot.set_bootmenu(dom, True)
    # The USB host device keeps its order 1; ours are numbered around it.
    assert [d.boot_order for d in dom.disks] == [4, 2] and dom.interfaces[0].boot_order == 3
    assert dom.os.boot_devices == []
    return dom


@case("config-boot-type")
def order_by_type(dom: Domain) -> Domain:
    assert boot.current_order(dom) == {"nic-5254006b3c58": 1, "disk-vda": 2}
    boot.set_type_order(dom, ["cdrom", "hd", "network"])
    boot.set_bootmenu(dom, False)  # absent stays absent
    return dom


@case("config-vnc")
def vnc_settings(dom: Domain) -> Domain:
    vnc = graphics.first_vnc(dom)
    assert vnc is not None and vnc.passwd == "old"
    graphics.apply_vnc(vnc, graphics.VncChange(password="n3w-pw", keymap="de-ch", listen="127.0.0.1"))
    assert dom.graphics[0].type == "spice" and dom.graphics[0].listen is None  # the other display is untouched
    return dom


@case("config-vnc-clear")
def vnc_clear(dom: Domain) -> Domain:
    vnc = graphics.first_vnc(dom)
    assert vnc is not None
    graphics.apply_vnc(vnc, graphics.VncChange(password="", keymap="", listen="127.0.0.1"))
    assert (vnc.passwd, vnc.keymap, vnc.listen) == (None, None, "127.0.0.1")
    return dom


def test_every_golden_file_has_a_case() -> None:
    names = {p.name.removesuffix("-in.xml").removesuffix("-out.xml") for p in GOLDEN.glob("*.xml")}
    assert {n for n in names if n.startswith("config-")} == set(CASES) | {"config-snapshot-new"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, golden: GoldenCheck) -> None:
    golden(name, CASES[name])


def test_keeping_the_password_changes_nothing() -> None:
    source = (GOLDEN / "config-clone-in.xml").read_text()
    dom = Domain.from_xml(source)
    vnc = graphics.first_vnc(dom)
    assert vnc is not None
    graphics.apply_vnc(vnc, graphics.VncChange(password=None, keymap="de", listen="127.0.0.1"))
    assert canonical(dom.to_xml()) == canonical(Domain.from_xml(source).to_xml())


def test_new_snapshot_request(conn: libvirt.virConnect) -> None:
    """The snapshot request is golden too, and libvirt takes it as written."""
    xml = snapshots.snapshot_xml("before-upgrade", "Debian 12.4, <nginx> & php")
    assert canonical(xml) == canonical((GOLDEN / "config-snapshot-new-out.xml").read_text())
    dom = conn.lookupByName("test")
    snap = dom.snapshotCreateXML(xml, 0)
    try:
        read = DomainSnapshot.from_xml(snap.getXMLDesc(0))
        assert (read.name, read.description, read.state) == ("before-upgrade", "Debian 12.4, <nginx> & php", "running")
    finally:
        snap.delete(0)
