"""Cloud images: what a volume really is, read through libvirt, and whether it can be an image.

libvirt learns a file volume's format and virtual size from the file itself (qemu's header probe, on
every pool refresh), whatever its name says: a raw file named `debian.qcow2` is reported as raw, a
qcow2 file as qcow2 with its virtual size as capacity and its backing file, if any, as <backingStore>.
The panel therefore never looks at the name's extension; it refreshes the pool and reads the volume's
XML. Works over every transport (nothing is read on the panel's machine).
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from virt.devices import FieldProblem
from virt.errors import Term, gettext_noop
from virt.storage import lookup
from virt.xml.codecs import iec
from virt.xml.storage import StorageVolume

IMAGE_FORMATS = ("qcow2", "raw")


@dataclass(frozen=True)
class VolumeFacts:
    """A volume as libvirt sees it after a pool refresh."""

    format: str  # qcow2, raw, iso, vmdk, ... ("" when libvirt does not say: block devices)
    virtual_bytes: int  # the disk size a guest sees (capacity)
    allocation: int  # bytes it takes on the host
    backing_path: str = ""  # a qcow2 overlay's backing file
    path: str = ""
    type: str = ""  # file, block, network, ...


def inspect_volume(conn: libvirt.virConnect, pool: str, volume: str, *, refresh: bool = True) -> VolumeFacts:
    """Refresh `pool` (libvirt re-reads each file's header) and read `volume`'s facts from its XML.
    A missing pool or volume raises libvirt's own error (NotFound once the connection translates it)."""
    found = lookup(conn, pool)
    if refresh:
        found.refresh(0)
    described = StorageVolume.from_xml(str(found.storageVolLookupByName(volume).XMLDesc(0)))
    fmt = described.format or ""
    if not fmt and (described.type or "file") in ("block", "network", "netdir"):
        fmt = "raw"  # LVs, partitions, RBD images: raw block devices, libvirt names no format
    return VolumeFacts(format=fmt, virtual_bytes=described.capacity or 0, allocation=described.allocation or 0,
                       backing_path=described.backing_path or "", path=described.target_path or "",
                       type=described.type or "")


def check_image(facts: VolumeFacts, *, field: str = "volume") -> VolumeFacts:
    """Refuse what cannot be an image: a format other than qcow2 or raw, a qcow2 overlay (its backing file
    would have to stay, unseen by the panel), an empty disk. Raises FieldProblem on `field`."""
    if facts.format not in IMAGE_FORMATS:
        named = facts.format or Term(gettext_noop("unknown"))
        raise FieldProblem(field, gettext_noop("The volume's format is {format} (as read by libvirt): an image must be "
                                               "qcow2 or raw. Convert it (qemu-img convert -O qcow2) and upload it "
                                               "again."), format=named)
    if facts.backing_path:
        raise FieldProblem(field, gettext_noop("The volume is a qcow2 overlay on {path}: an image must stand "
                                               "alone. Flatten it (qemu-img convert) and upload the result."),
                           path=facts.backing_path)
    if facts.virtual_bytes <= 0:
        raise FieldProblem(field, gettext_noop("libvirt reports a size of 0 bytes for the volume: it cannot be an "
                                               "image."))
    return facts


def check_min_disk(min_disk_bytes: int, virtual_bytes: int, *, field: str = "min_disk") -> int:
    """The minimum disk of an image: at least the image's virtual size (a VM's disk grows to it, never
    shrinks below it)."""
    if min_disk_bytes < virtual_bytes:
        raise FieldProblem(field, gettext_noop("The image's disk is {size} ({bytes} bytes): the minimum "
                                               "disk size cannot be smaller."), size=iec(virtual_bytes),
                           bytes=virtual_bytes)
    return min_disk_bytes


def image_facts(conn: libvirt.virConnect, pool: str, volume: str) -> VolumeFacts:
    """inspect_volume() and check_image(): a missing volume is a field problem too (it may have been deleted
    since the form was shown)."""
    try:
        facts = inspect_volume(conn, pool, volume)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise  # a missing pool, an inactive one, the host's failure: the connection says it in words
        raise FieldProblem("volume", gettext_noop("Pool {pool} has no volume {volume} (any more)."), pool=pool,
                           volume=volume) from None
    return check_image(facts)
