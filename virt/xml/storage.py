"""<pool> and <volume> XML: storage pools and the volumes in them."""

from __future__ import annotations

from virt.xml.base import XMLObject
from virt.xml.fields import Attr, Size, Text


class StoragePool(XMLObject):
    tag = "pool"
    type = Attr("./@type")  # dir, fs, netfs, logical, iscsi, rbd, ...
    name = Text("./name")
    uuid = Text("./uuid")
    # Reported by libvirt, not configurable: writing them would be silently ignored.
    capacity = Size("./capacity", unit="bytes", readonly=True)
    allocation = Size("./allocation", unit="bytes", readonly=True)
    available = Size("./available", unit="bytes", readonly=True)
    source_host = Attr("./source/host/@name")
    source_dir = Attr("./source/dir/@path")
    source_device = Attr("./source/device/@path")
    source_name = Text("./source/name")  # volume group, RBD pool, ...
    source_format = Attr("./source/format/@type")
    target_path = Text("./target/path")


class StorageVolume(XMLObject):
    tag = "volume"
    type = Attr("./@type")  # file, block
    name = Text("./name")
    key = Text("./key")
    capacity = Size("./capacity", unit="bytes")
    allocation = Size("./allocation", unit="bytes")
    target_path = Text("./target/path")
    format = Attr("./target/format/@type")  # raw, qcow2
    backing_path = Text("./backingStore/path")
    backing_format = Attr("./backingStore/format/@type")
