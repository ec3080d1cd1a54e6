"""Fixtures for the libvirt XML layer tests: libvirt's built-in test driver and golden files.

Golden cases parse golden/<case>-in.xml, edit it through the typed API, compare with
golden/<case>-out.xml, then define the result in the test driver to prove libvirt accepts
it. Cases without an -in file build their object from scratch. To regenerate the -out
files after a deliberate change, run with WEBKVM_UPDATE_GOLDEN=1 and review the diff.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from virt.xml import Domain, Network, StoragePool, StorageVolume, XMLObject

GOLDEN = Path(__file__).parent / "golden"
KINDS: dict[str, type[XMLObject]] = {
    "domain": Domain,
    "network": Network,
    "pool": StoragePool,
    "volume": StorageVolume,
}


def _ignore_libvirt_error(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; the exceptions are enough."""


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(_ignore_libvirt_error, None)
    connection = libvirt.open("test:///default")
    try:
        yield connection
    finally:
        connection.close()


def canonical(xml: str) -> str:
    """Whitespace- and quoting-insensitive form, one element per line for readable diffs."""
    root = etree.fromstring(xml.encode())
    for element in root.iter():
        if element.text is not None and not element.text.strip() and len(element):
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    etree.indent(root)
    return etree.tostring(root, method="c14n").decode()


def define_in_libvirt(conn: libvirt.virConnect, obj: XMLObject) -> str:
    """Define (or create) obj in the test driver, return libvirt's XML of it, clean up."""
    xml = obj.to_xml()
    if isinstance(obj, Domain):
        dom = conn.defineXML(xml)
        try:
            return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
        finally:
            dom.undefine()
    if isinstance(obj, Network):
        net = conn.networkDefineXML(xml)
        try:
            return str(net.XMLDesc())
        finally:
            net.undefine()
    if isinstance(obj, StoragePool):
        pool = conn.storagePoolDefineXML(xml)
        try:
            return str(pool.XMLDesc())
        finally:
            pool.undefine()
    assert isinstance(obj, StorageVolume)
    vol = conn.storagePoolLookupByName("default-pool").createXML(xml)
    try:
        return str(vol.XMLDesc())
    finally:
        vol.delete()


def boot_default(dom: Domain) -> list[str]:
    """What libvirt fills in when <os> names no boot device."""
    per_device = [d.boot_order for d in dom.disks] + [i.boot_order for i in dom.interfaces]
    return [] if any(per_device) else ["hd"]


def summary(obj: XMLObject) -> object:
    """The settings we edit, to check libvirt read them the way we wrote them."""
    if isinstance(obj, Domain):
        return (
            obj.name,
            obj.memory,
            obj.vcpus,
            obj.os.boot_devices or boot_default(obj),
            [(d.device, d.source_path, d.target_dev, d.boot_order, d.readonly) for d in obj.disks],
            [(i.type, i.source_network or i.source_bridge, i.model, i.link_state) for i in obj.interfaces],
            [(g.type, g.listen, g.autoport, g.passwd, g.keymap) for g in obj.graphics],
            [(s.type, s.target_port) for s in obj.serials],
        )
    if isinstance(obj, Network):
        return (
            obj.name,
            obj.forward_mode,
            obj.bridge_name,
            obj.domain_name,
            [
                (
                    ip.address,
                    ip.prefix or ip.netmask,
                    [(r.start, r.end) for r in ip.dhcp_ranges],
                    [(h.mac, h.name, h.ip) for h in ip.dhcp_hosts],
                )
                for ip in obj.ips
            ],
        )
    if isinstance(obj, StoragePool):
        return (obj.type, obj.name, obj.source_host, obj.source_dir, obj.target_path)
    assert isinstance(obj, StorageVolume)
    return (obj.name, obj.capacity, obj.format, obj.backing_path)


class Golden:
    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn

    def check(self, name: str, edit: Callable[..., XMLObject]) -> None:
        source = GOLDEN / f"{name}-in.xml"
        if source.exists():
            kind = KINDS[str(etree.fromstring(source.read_bytes()).tag)]
            obj = edit(kind.from_xml(source.read_text()))
        else:
            obj = edit()
        expected = GOLDEN / f"{name}-out.xml"
        if os.environ.get("WEBKVM_UPDATE_GOLDEN") == "1":
            expected.write_text(obj.to_xml() + "\n")
        assert canonical(obj.to_xml()) == canonical(expected.read_text())

        # A round trip through text must not change anything.
        assert canonical(type(obj).from_xml(obj.to_xml()).to_xml()) == canonical(obj.to_xml())

        # libvirt accepts it, and reads back the settings we wrote.
        from_libvirt = type(obj).from_xml(define_in_libvirt(self.conn, obj))
        assert summary(from_libvirt) == summary(obj)


@pytest.fixture
def golden(conn: libvirt.virConnect) -> Callable[[str, Callable[..., XMLObject]], None]:
    """golden(name, edit): run one golden case end to end."""
    return Golden(conn).check
