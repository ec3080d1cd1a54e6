"""The descriptor machinery: typed reads, writes that create, None that removes, live lists."""

import pytest
from lxml import etree

from virt.xml import (
    ON_OFF,
    YES_NO,
    Attr,
    Child,
    Children,
    Disk,
    Domain,
    Graphics,
    Interface,
    Network,
    Size,
    StoragePool,
    StorageVolume,
    Text,
    XMLObject,
)

SMALL = """<domain type='kvm'>
  <name>web1</name>
  <memory unit='MiB'>512</memory>
  <devices>
    <disk type='file' device='disk'><source file='/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/b.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
    <interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>
    <memballoon model='virtio'/>
  </devices>
</domain>"""


def tags(element: etree._Element) -> list[str]:
    return [str(child.tag) for child in element]


def test_reads_are_typed_and_absent_values_are_none() -> None:
    dom = Domain.from_xml(SMALL)
    assert (dom.type, dom.name, dom.memory) == ("kvm", "web1", 512 * 1024)
    assert dom.uuid is None and dom.vcpus is None and dom.id is None
    assert dom.disks[1].readonly is True and dom.disks[0].readonly is False


def test_reading_never_changes_the_document() -> None:
    dom = Domain.from_xml(SMALL)
    before = dom.to_xml(pretty=False)
    assert dom.os.type is None and dom.os.boot_devices == [] and not dom.os.exists
    assert dom.features.acpi is False and len(dom.graphics) == 0 and dom.graphics[:] == []
    assert dom.to_xml(pretty=False) == before


def test_writing_creates_missing_elements_in_declaration_order() -> None:
    dom = Domain.new(memory=1024)
    dom.name = "new"  # declared before memory: goes in front of it
    dom.os.arch = "x86_64"
    dom.os.type = "hvm"
    dom.uuid = "3f0c7a52-5d1e-4c33-9a57-0f0e2b1d0a99"
    assert tags(dom.element) == ["name", "uuid", "memory", "os"]
    assert dom.os.element.find("type").get("arch") == "x86_64"  # type: ignore[union-attr]
    assert dom.os.exists


def test_none_removes_attributes_and_prunes_emptied_elements() -> None:
    dom = Domain.from_xml(SMALL)
    iface = dom.interfaces[0]
    iface.mac = None  # <mac> only had the address: it goes too
    assert tags(iface.element) == ["source"]
    disk = dom.disks[0]
    disk.target_bus = None  # <target> keeps dev, so it stays
    assert disk.element.find("target").attrib == {"dev": "vda"}  # type: ignore[union-attr]
    dom.name = None
    assert dom.element.find("name") is None
    dom.memory = None
    assert tags(dom.element) == ["devices"]


def test_none_on_absent_values_is_a_no_op() -> None:
    dom = Domain.from_xml(SMALL)
    before = dom.to_xml(pretty=False)
    dom.title = None
    dom.cpu_mode = None
    dom.features.acpi = False
    dom.os = None
    assert dom.to_xml(pretty=False) == before


def test_flags() -> None:
    dom = Domain.new()
    dom.features.acpi = True
    dom.features.acpi = True  # idempotent
    assert dom.to_xml(pretty=False) == "<domain><features><acpi/></features></domain>"
    dom.features.acpi = False
    assert dom.features.acpi is False


def test_bool_codecs() -> None:
    vnc = Graphics.new(autoport=True)
    net = Network.new(bridge_stp=False)
    assert vnc.element.get("autoport") == "yes" and vnc.autoport is True
    assert net.element.find("bridge").get("stp") == "off" and net.bridge_stp is False  # type: ignore[union-attr]
    assert YES_NO.parse("no") is False and ON_OFF.format(True) == "on"


@pytest.mark.parametrize(
    ("unit", "value", "kib"),
    [
        (None, "1024", 1024),  # libvirt's default memory unit is KiB
        ("b", "1024", 1),
        ("bytes", "1025", 2),  # rounded up, like libvirt
        ("KB", "1024", 1000),
        ("k", "3", 3),
        ("M", "2", 2048),
        ("MiB", "2", 2048),
        ("MB", "1", 977),
        ("G", "1", 1 << 20),
        ("GiB", "4", 4 << 20),
        ("TiB", "1", 1 << 30),
    ],
)
def test_memory_units_are_converted_to_kib(unit: str | None, value: str, kib: int) -> None:
    attr = f" unit='{unit}'" if unit else ""
    assert Domain.from_xml(f"<domain><memory{attr}>{value}</memory></domain>").memory == kib


def test_size_writes_its_own_unit_and_rejects_unknown_ones() -> None:
    vol = StorageVolume.from_xml("<volume><capacity unit='G'>1</capacity></volume>")
    assert vol.capacity == 1 << 30
    vol.capacity = 5
    assert vol.to_xml(pretty=False) == '<volume><capacity unit="bytes">5</capacity></volume>'
    with pytest.raises(ValueError, match="unknown size unit 'parsecs'"):
        _ = Domain.from_xml("<domain><memory unit='parsecs'>1</memory></domain>").memory


def test_reported_pool_sizes_are_read_only() -> None:
    pool = StoragePool.from_xml("<pool type='dir'><capacity unit='bytes'>100</capacity></pool>")
    assert pool.capacity == 100
    with pytest.raises(AttributeError, match="read-only"):
        pool.capacity = 5


def test_children_list_behaves_like_a_live_sequence() -> None:
    dom = Domain.from_xml(SMALL)
    disks = dom.disks
    assert len(disks) == 2 and [d.target_dev for d in disks] == ["vda", "sda"]
    assert disks[-1].device == "cdrom" and [d.device for d in disks[::-1]] == ["cdrom", "disk"]
    disks.add(Disk.new(device="disk", target_dev="vdb"))
    assert len(dom.disks) == 3  # a fresh view sees it as well
    # New disks join the other disks, not the end of <devices>.
    assert tags(dom.element.find("devices")) == ["disk"] * 3 + ["interface", "memballoon"]  # type: ignore[arg-type]


def test_children_remove_and_replace() -> None:
    dom = Domain.from_xml(SMALL)
    vda, sda = dom.disks
    dom.disks.remove(sda)
    assert [d.target_dev for d in dom.disks] == ["vda"]
    with pytest.raises(ValueError, match="not in this list"):
        dom.disks.remove(sda)
    dom.disks = [sda, vda]  # assignment replaces and reorders
    assert [d.target_dev for d in dom.disks] == ["sda", "vda"]
    dom.disks.add(dom.disks[0])  # re-adding a member moves it to the end
    assert [d.target_dev for d in dom.disks] == ["vda", "sda"]
    dom.disks.clear()
    assert len(dom.disks) == 0 and tags(dom.element.find("devices")) == ["interface", "memballoon"]  # type: ignore[arg-type]


def test_children_add_creates_missing_parents_and_checks_the_tag() -> None:
    net = Network.new(name="n")
    ip = net.ips.add()
    host = ip.dhcp_hosts.add()
    host.mac = "52:54:00:00:00:09"
    assert (
        net.to_xml(pretty=False)
        == '<network><name>n</name><ip><dhcp><host mac="52:54:00:00:00:09"/></dhcp></ip></network>'
    )
    with pytest.raises(ValueError, match="cannot add <interface> where <disk> belongs"):
        Domain.new().disks.add(Interface.new())  # type: ignore[arg-type]


def test_moving_a_device_between_documents() -> None:
    source, target = Domain.from_xml(SMALL), Domain.new(name="other")
    nic = source.interfaces[0]
    target.interfaces.add(nic)
    assert len(source.interfaces) == 0
    assert target.interfaces[0].mac == "52:54:00:00:00:01"


def test_child_assignment() -> None:
    first, second = Domain.from_xml(SMALL), Domain.new()
    first.os.type = "hvm"
    second.os = first.os
    assert second.os.type == "hvm"
    second.os = None
    assert not second.os.exists and second.to_xml(pretty=False) == "<domain/>"


def test_graphics_listen_writes_both_spellings() -> None:
    vnc = Graphics.new(type="vnc", listen="0.0.0.0")
    assert (
        vnc.to_xml(pretty=False)
        == '<graphics type="vnc" listen="0.0.0.0"><listen type="address" address="0.0.0.0"/></graphics>'
    )
    vnc.listen = None
    assert vnc.to_xml(pretty=False) == '<graphics type="vnc"/>'
    legacy = Graphics.from_xml("<graphics type='vnc' listen='10.0.0.1'/>")
    assert legacy.listen == "10.0.0.1"


def test_free_target_dev() -> None:
    dom = Domain.from_xml(SMALL)
    assert dom.free_target_dev() == "vdb" and dom.free_target_dev("sd") == "sdb"
    for letter in "bcdefghijklmnopqrstuvwxyz":
        dom.disks.add(Disk.new(target_dev=f"vd{letter}"))
    assert dom.free_target_dev() == "vdaa"


def test_new_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError, match="Domain has no field 'colour'"):
        Domain.new(colour="blue")
    with pytest.raises(TypeError, match="no field '_element'"):
        Domain.new(_element=None)
    with pytest.raises(TypeError, match="no field 'to_xml'"):
        Domain.new(to_xml="not a field")
    assert Graphics.new(listen="::1").listen == "::1"  # properties count as fields


def test_sub_elements_serialise_on_their_own() -> None:
    # e.g. for attachDeviceFlags(): one device, namespaces included, no tail.
    disk = Domain.from_xml(SMALL).disks[1]
    assert disk.to_xml(pretty=False) == (
        '<disk type="file" device="cdrom"><source file="/b.iso"/><target dev="sda" bus="sata"/><readonly/></disk>'
    )


def test_field_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="must end in /@name"):
        Attr("./name")
    with pytest.raises(ValueError, match="must name an element"):
        Text("./@name")
    with pytest.raises(ValueError, match="start with"):
        Text("name")
    with pytest.raises(ValueError, match="unsupported path step"):
        Text("./a[1]")
    with pytest.raises(TypeError, match="pass a Codec"):
        Attr("./@x", float)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must name an element"):
        Children(Disk, "./@x")
    with pytest.raises(ValueError, match="must name an element"):
        Child(Disk, ".")
    assert isinstance(Domain.name, Text) and isinstance(Domain.memory, Size)


def test_custom_object_kinds_are_a_few_lines() -> None:
    class Watchdog(XMLObject):
        tag = "watchdog"
        model = Attr("./@model")
        action = Attr("./@action")

    class WithWatchdog(Domain):
        watchdogs = Children(Watchdog, "./devices/watchdog")

    dom = WithWatchdog.from_xml(SMALL)
    dom.watchdogs.add(Watchdog.new(model="i6300esb", action="reset"))
    assert Domain.from_xml(dom.to_xml()).name == "web1" and dom.watchdogs[0].action == "reset"
