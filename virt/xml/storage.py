"""<pool> and <volume> XML: storage pools and the volumes in them."""

from __future__ import annotations

from virt.xml.base import XMLObject
from virt.xml.fields import Attr, Children, Size, Text


class SourceHost(XMLObject):
    """A server of a network pool: NFS server, iSCSI portal, Ceph monitor."""

    tag = "host"
    name = Attr("./@name")
    port = Attr("./@port", int)


class SourceDevice(XMLObject):
    """A block device (disk, LVM physical volume) or, for iSCSI, the target IQN."""

    tag = "device"
    path = Attr("./@path")


class StoragePool(XMLObject):
    tag = "pool"
    type = Attr("./@type")  # dir, fs, netfs, logical, iscsi, rbd, disk, ...
    name = Text("./name")
    uuid = Text("./uuid")
    # Reported by libvirt, not configurable: writing them would be silently ignored.
    capacity = Size("./capacity", unit="bytes", readonly=True)
    allocation = Size("./allocation", unit="bytes", readonly=True)
    available = Size("./available", unit="bytes", readonly=True)
    source_host = Attr("./source/host/@name")  # the first host; see source_hosts for all
    source_dir = Attr("./source/dir/@path")
    source_device = Attr("./source/device/@path")  # the first device; see source_devices
    source_name = Text("./source/name")  # volume group, RBD pool, ...
    source_format = Attr("./source/format/@type")  # nfs, lvm2, dos, gpt, ...
    source_hosts = Children(SourceHost, "./source/host")
    source_devices = Children(SourceDevice, "./source/device")
    initiator_iqn = Attr("./source/initiator/iqn/@name")  # iSCSI: our own initiator name
    auth_type = Attr("./source/auth/@type")  # ceph, chap
    auth_username = Attr("./source/auth/@username")
    auth_secret_uuid = Attr("./source/auth/secret/@uuid")
    auth_secret_usage = Attr("./source/auth/secret/@usage")
    target_path = Text("./target/path")
    target_mode = Text("./target/permissions/mode")  # octal string such as 0755


class StorageVolume(XMLObject):
    tag = "volume"
    type = Attr("./@type")  # file, block, network, ...
    name = Text("./name")
    key = Text("./key")
    capacity = Size("./capacity", unit="bytes")
    allocation = Size("./allocation", unit="bytes")
    physical = Size("./physical", unit="bytes", readonly=True)  # bytes a download delivers
    target_path = Text("./target/path")
    format = Attr("./target/format/@type")  # raw, qcow2, iso, ...
    backing_path = Text("./backingStore/path")
    backing_format = Attr("./backingStore/format/@type")
