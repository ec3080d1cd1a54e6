"""Typed, round-trip-safe views of libvirt XML (domains, storage, networks).

Parse with e.g. Domain.from_xml(text), edit through typed fields, write back
with to_xml(); elements the classes do not model are preserved. New objects are
built with Cls.new(...) and the same fields, never from string templates.
"""

from virt.xml.base import Field, XMLObject
from virt.xml.codecs import INT, ON_OFF, STR, UNIT_BYTES, YES_NO, Codec
from virt.xml.domain import (
    OS,
    BootDevice,
    CharDevice,
    Console,
    Disk,
    Domain,
    Features,
    Graphics,
    GraphicsListen,
    Interface,
    Serial,
)
from virt.xml.fields import Attr, Child, ChildList, Children, Flag, Size, Text
from virt.xml.network import IP, DHCPHost, DHCPRange, Network
from virt.xml.parser import MAX_XML_BYTES, XMLInputError, parse_xml
from virt.xml.storage import StoragePool, StorageVolume

__all__ = [
    "INT",
    "IP",
    "MAX_XML_BYTES",
    "ON_OFF",
    "OS",
    "STR",
    "UNIT_BYTES",
    "YES_NO",
    "Attr",
    "BootDevice",
    "CharDevice",
    "Child",
    "ChildList",
    "Children",
    "Codec",
    "Console",
    "DHCPHost",
    "DHCPRange",
    "Disk",
    "Domain",
    "Features",
    "Field",
    "Flag",
    "Graphics",
    "GraphicsListen",
    "Interface",
    "Network",
    "Serial",
    "Size",
    "StoragePool",
    "StorageVolume",
    "Text",
    "XMLInputError",
    "XMLObject",
    "parse_xml",
]
