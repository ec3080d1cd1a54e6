"""Read the XML that libvirt's own test driver produces, and survive its round trip."""

from pathlib import Path

import libvirt
import pytest
from lxml import etree

from virt.xml import Domain, Network, StoragePool, StorageVolume, XMLObject

NAMESPACES = {"qemu": "http://libvirt.org/schemas/domain/qemu/1.0", "wk": "https://webkvm.example/xmlns/instance/1"}


def canonical(xml: str) -> bytes:
    root = etree.fromstring(xml.encode(), etree.XMLParser(remove_blank_text=True))
    return etree.tostring(root, method="c14n")


def test_read_test_domain(conn: libvirt.virConnect) -> None:
    dom = Domain.from_xml(conn.lookupByName("test").XMLDesc())
    assert (dom.type, dom.id, dom.name) == ("test", 1, "test")
    assert dom.uuid == "6695eb01-f6a4-8304-79aa-97f2502e193f"
    assert (dom.memory, dom.current_memory, dom.vcpus, dom.current_vcpus) == (8388608, 2097152, 2, None)
    assert (dom.os.type, dom.os.arch, dom.os.boot_devices, dom.os.firmware) == ("hvm", "i686", ["hd"], None)
    assert (dom.on_poweroff, dom.on_reboot, dom.on_crash) == ("destroy", "restart", "destroy")
    [disk] = dom.disks
    assert (disk.type, disk.device, disk.source_path, disk.target_dev, disk.target_bus) == (
        "file",
        "disk",
        "/guest/diskimage1",
        "vda",
        "virtio",
    )
    [nic] = dom.interfaces
    assert (nic.type, nic.mac, nic.source_network, nic.target_dev) == (
        "network",
        "aa:bb:cc:dd:ee:ff",
        "default",
        "testnet0",
    )
    assert len(dom.graphics) == len(dom.serials) == len(dom.consoles) == 0


def test_read_default_pool_and_its_volumes(conn: libvirt.virConnect) -> None:
    pool_ptr = conn.storagePoolLookupByName("default-pool")
    pool = StoragePool.from_xml(pool_ptr.XMLDesc())
    assert (pool.type, pool.name, pool.target_path) == ("dir", "default-pool", "/default-pool")
    assert pool.capacity == pool.available == 100 * 2**30 and pool.allocation == 0
    assert pool.source_host is None and pool.source_dir is None

    vol_ptr = pool_ptr.createXML(StorageVolume.new(name="probe.img", capacity=2**20).to_xml())
    try:
        vol = StorageVolume.from_xml(vol_ptr.XMLDesc())
        assert (vol.type, vol.name, vol.key) == ("file", "probe.img", "/default-pool/probe.img")
        assert (vol.capacity, vol.target_path) == (2**20, "/default-pool/probe.img")
    finally:
        vol_ptr.delete()


def test_read_default_network(conn: libvirt.virConnect) -> None:
    net = Network.from_xml(conn.networkLookupByName("default").XMLDesc())
    assert (net.name, net.forward_mode, net.forward_dev) == ("default", "nat", None)
    assert (net.bridge_name, net.bridge_stp, net.bridge_delay) == ("virbr0", True, 0)
    [ip] = net.ips
    assert (ip.address, ip.netmask, ip.prefix, ip.family) == ("192.168.122.1", "255.255.255.0", None, None)
    assert [(r.start, r.end) for r in ip.dhcp_ranges] == [("192.168.122.2", "192.168.122.254")]
    assert len(ip.dhcp_hosts) == 0


@pytest.mark.parametrize(
    ("kind", "fetch"),
    [
        (Domain, lambda c: c.lookupByName("test").XMLDesc()),
        (StoragePool, lambda c: c.storagePoolLookupByName("default-pool").XMLDesc()),
        (Network, lambda c: c.networkLookupByName("default").XMLDesc()),
    ],
)
def test_untouched_documents_round_trip_exactly(kind: type[XMLObject], fetch, conn: libvirt.virConnect) -> None:  # type: ignore[no-untyped-def]
    xml = fetch(conn)
    assert canonical(kind.from_xml(xml).to_xml()) == canonical(xml)
    assert kind.from_xml(xml).to_xml(pretty=False) + "\n" == xml.replace("'", '"')


def test_unknown_elements_survive_our_edit_and_libvirt(conn: libvirt.virConnect) -> None:
    source = (Path(__file__).parent / "golden" / "domain-unknown-in.xml").read_text()
    dom = Domain.from_xml(source)
    dom.name = "unknown-survivor"
    dom.vcpus = 1

    def subtree(xml: str, path: str) -> bytes:
        root = etree.fromstring(xml.encode(), etree.XMLParser(remove_blank_text=True))
        found = root.find(path, NAMESPACES)
        assert found is not None, path
        # exclusive: ignore namespaces merely inherited from the root (libvirt drops qemu:)
        return etree.tostring(found, method="c14n", exclusive=True, with_tail=False)

    untouched = [
        "metadata",
        "cputune",
        "sysinfo",
        "devices/rng",
        "devices/watchdog",
        "devices/channel",
        "seclabel",
        "qemu:commandline",
        "devices/disk/iotune",
        "devices/disk/source/seclabel",
    ]
    for path in untouched:
        assert subtree(dom.to_xml(), path) == subtree(source, path)
    assert "kept on purpose" in dom.to_xml()

    # libvirt stores foreign metadata verbatim as well.
    ptr = conn.defineXML(dom.to_xml())
    try:
        assert subtree(ptr.XMLDesc(), "metadata/wk:instance") == subtree(source, "metadata/wk:instance")
        assert '<owner id="42">alice</owner>' in ptr.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACES["wk"])
    finally:
        ptr.undefine()
