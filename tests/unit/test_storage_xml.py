"""Pool XML of every type the panel creates, from PoolSpec through lxml to libvirt's test driver and back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from virt.storage import PoolSpec
from virt.xml import StoragePool, StorageVolume
from virt.xml.secret import Secret

SECRET = "2ec115d7-3a88-3ceb-bc12-0ac909a6fd87"
ROOTS = ["/var/lib/libvirt/images", "/srv/libvirt"]
SPECS = {
    "dir": PoolSpec("dir", "t-dir", target_path="/var/lib/libvirt/images/t-dir"),
    "netfs": PoolSpec("netfs", "t-nfs", target_path="/srv/libvirt/isos", hosts=(("nas.example.org", None),),
                      source_dir="/export/isos"),
    "logical": PoolSpec("logical", "t-lvm", source_name="vg_guests", devices=("/dev/sdb", "/dev/sdc")),
    "iscsi": PoolSpec("iscsi", "t-iscsi", hosts=(("10.0.0.5", 3260),), iqn="iqn.2024-01.org.example:storage",
                      initiator_iqn="iqn.2024-01.org.example:kvm1"),
    "rbd": PoolSpec("rbd", "t-rbd", source_name="libvirt-pool", hosts=(("mon1.example.org", 6789), ("mon2", None)),
                    ceph_user="libvirt", secret_uuid=SECRET),
    "disk": PoolSpec("disk", "t-disk", devices=("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",), source_format="gpt"),
}


def _quiet(*_: object) -> None:
    """libvirt prints every error to stderr by default; the exceptions are enough."""


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(_quiet, None)
    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


def canonical(xml: str) -> bytes:
    root = etree.fromstring(xml.encode(), etree.XMLParser(remove_blank_text=True))
    return etree.tostring(root, method="c14n")


def settings_of(pool: StoragePool) -> tuple[object, ...]:
    """Everything the create forms set, as libvirt reads it back."""
    return (
        pool.type, pool.name, pool.target_path, [(h.name, h.port) for h in pool.source_hosts], pool.source_dir,
        pool.source_name, [d.path for d in pool.source_devices], pool.source_format, pool.initiator_iqn,
        pool.auth_type, pool.auth_username, pool.auth_secret_uuid,
    )


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_pool_type_round_trips_through_libvirt(conn: libvirt.virConnect, kind: str) -> None:
    spec = SPECS[kind]
    assert spec.problems(ROOTS) == []
    ours = spec.to_pool()
    xml = ours.to_xml()
    assert canonical(StoragePool.from_xml(xml).to_xml()) == canonical(xml)  # text round trip changes nothing

    pool = conn.storagePoolDefineXML(xml, 0)
    try:
        assert spec.name in [p.name() for p in conn.listAllStoragePools(0)]
        theirs = StoragePool.from_xml(pool.XMLDesc(0))
        assert settings_of(theirs) == settings_of(ours)
        assert canonical(StoragePool.from_xml(pool.XMLDesc(0)).to_xml()) == canonical(pool.XMLDesc(0))
        pool.create(0)
        assert pool.isActive()
        pool.destroy()
    finally:
        pool.undefine()
    assert spec.name not in [p.name() for p in conn.listAllStoragePools(0)]


def test_type_specific_shapes() -> None:
    iscsi = SPECS["iscsi"].to_pool()
    assert [d.path for d in iscsi.source_devices] == ["iqn.2024-01.org.example:storage"]
    assert iscsi.target_path == "/dev/disk/by-path" and iscsi.source_hosts[0].port == 3260
    logical = SPECS["logical"].to_pool()
    assert (logical.source_format, logical.target_path) == ("lvm2", "/dev/vg_guests")
    rbd = SPECS["rbd"].to_pool()
    assert (rbd.auth_type, rbd.auth_username, rbd.auth_secret_uuid, rbd.target_path) == ("ceph", "libvirt", SECRET,
                                                                                         None)
    assert [(h.name, h.port) for h in rbd.source_hosts] == [("mon1.example.org", 6789), ("mon2", None)]
    disk = SPECS["disk"].to_pool()
    assert (disk.source_format, disk.target_path) == ("gpt", "/dev")
    netfs = SPECS["netfs"].to_pool()
    assert (netfs.source_host, netfs.source_dir, netfs.source_format) == ("nas.example.org", "/export/isos", "nfs")


def test_markup_in_values_stays_text() -> None:
    """Values land in attributes and text nodes: lxml escapes them (the rules refuse them anyway)."""
    pool = StoragePool.new(type="dir", name="a</name><x/>", target_path="/p'\"<>&")
    parsed = StoragePool.from_xml(pool.to_xml())
    assert (parsed.name, parsed.target_path) == ("a</name><x/>", "/p'\"<>&")
    assert parsed.element.find("x") is None


def test_existing_golden_pool_reads_its_hosts_and_devices() -> None:
    golden = Path(__file__).parent / "xml" / "golden" / "pool-netfs-in.xml"
    pool = StoragePool.from_xml(golden.read_text())
    assert [(h.name, h.port) for h in pool.source_hosts] == [("nas.example.lan", None)]
    assert (pool.target_mode, pool.source_format) == ("0755", "nfs")


def test_secret_xml() -> None:
    secret = Secret.new(ephemeral=False, private=True, usage_type="ceph", usage_name="client.libvirt t-rbd",
                        description="Ceph key")
    parsed = Secret.from_xml(secret.to_xml())
    assert (parsed.ephemeral, parsed.private, parsed.usage_type, parsed.usage_name) == (
        False, True, "ceph", "client.libvirt t-rbd")
    assert 'ephemeral="no"' in secret.to_xml() and 'private="yes"' in secret.to_xml()


def test_volume_physical_is_read_only(conn: libvirt.virConnect) -> None:
    pool = conn.storagePoolLookupByName("default-pool")
    vol = pool.createXML(StorageVolume.new(name="phys.img", capacity=2**20, allocation=0, format="raw").to_xml(), 0)
    try:
        desc = StorageVolume.from_xml(vol.XMLDesc(0))
        assert desc.capacity == 2**20
        with pytest.raises(AttributeError):
            desc.physical = 5  # type: ignore[misc]
    finally:
        vol.delete(0)
