"""Disks and CD-ROM drives of an existing VM: attach, detach, insert and eject media.

Hot-plug follows the bus: virtio and SCSI disks join a running VM at once, SATA and IDE
ones only at its next boot (QEMU cannot add them live). The saved definition always
changes, so the next boot matches what the page says. Device XML is built only through
virt.xml objects: every value lands in an attribute, escaped by lxml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from virt.capabilities import ISO_SUFFIX
from virt.create import DISK_FORMATS, MIB, DiskSource, PoolVolume, cdrom_bus, disk_source, volume_name
from virt.devices import CONFIG, LIVE, Definitions, FieldProblem, definitions, device_xml, still_live, update_each
from virt.domains import state_name
from virt.errors import InvalidInput, InvalidState, Term, Text, gettext_noop, reworded, translate
from virt.storage_rules import MAX_VOLUME_BYTES, check_name
from virt.xml.codecs import iec
from virt.xml.domain import Disk, Domain
from virt.xml.storage import StorageVolume

BUSES = ("virtio", "scsi", "sata", "ide")
HOTPLUG_BUSES = frozenset({"virtio", "scsi"})  # QEMU adds and removes these on a running VM
TARGET_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "ide": "hd"}
CACHE_DEFAULT = "default"  # no cache attribute: the hypervisor's default
CACHE_MODES = (CACHE_DEFAULT, "none", "writeback", "writethrough", "directsync", "unsafe")


@dataclass(frozen=True)
class NewVolume:
    """A volume to create in a pool and attach; an empty name is chosen after the VM."""

    pool: str
    size_bytes: int
    format: str = "qcow2"
    name: str = ""


@dataclass(frozen=True)
class DiskRow:
    target: str
    device: str  # disk, cdrom
    bus: str
    source: str  # empty: no medium
    format: str
    cache: str
    placement: str  # attached, added at next boot, removed at next boot


# ---- input rules --------------------------------------------------------------------------


def _check_choices(bus: str, cache: str) -> None:
    if bus not in BUSES:
        raise FieldProblem("bus", gettext_noop("Bus: one of {buses}."), buses=", ".join(BUSES))
    if cache not in CACHE_MODES:
        raise FieldProblem("cache", gettext_noop("Cache mode: one of {modes}."), modes=", ".join(CACHE_MODES))


# ---- device XML (pure: golden-tested) -------------------------------------------------------


def set_source(disk: Disk, source: DiskSource | None) -> None:
    """Point a disk (or CD-ROM drive) at a new source, or at none (an empty drive)."""
    disk.clear_source()
    if source is None:
        return
    disk.type = source.kind
    if source.kind == "file":
        disk.source_file = source.path
    elif source.kind == "block":
        disk.source_dev = source.path
    else:
        disk.source_pool, disk.source_volume = source.pool, source.volume


def disk_element(source: DiskSource, *, target: str, bus: str, cache: str = CACHE_DEFAULT) -> Disk:
    disk = Disk.new(type=source.kind, device="disk", driver_name="qemu", driver_type=source.format)
    if cache != CACHE_DEFAULT:
        disk.driver_cache = cache
    set_source(disk, source)
    disk.target_dev, disk.target_bus = target, bus
    return disk


def cdrom_element(*, target: str, bus: str, source: DiskSource | None = None) -> Disk:
    disk = Disk.new(type=source.kind if source else "file", device="cdrom", driver_name="qemu", driver_type="raw")
    set_source(disk, source)
    disk.target_dev, disk.target_bus = target, bus
    disk.readonly = True
    return disk


def free_target(defs: Definitions, bus: str) -> str:
    """A target name free in both definitions (a disk may wait in one of them for the next boot)."""
    taken = [d.target_dev for doc in (defs.live, defs.saved) if doc is not None for d in doc.disks]
    return defs.current.free_target_dev(TARGET_PREFIX[bus], taken=taken)


def _finder(target: str, device: str | None = None) -> Callable[[Domain], Disk | None]:
    def find(doc: Domain) -> Disk | None:
        for disk in doc.disks:
            if disk.target_dev == target and (device is None or (disk.device or "disk") == device):
                return disk
        return None

    return find


# ---- reading -------------------------------------------------------------------------------


def disk_rows(defs: Definitions) -> list[DiskRow]:
    """Every disk and CD-ROM drive of either definition, saved order first."""
    rows: dict[str, DiskRow] = {}
    docs = [doc for doc in (defs.saved, defs.live) if doc is not None]
    for doc in docs:
        for disk in doc.disks:
            target = disk.target_dev or ""
            if target in rows:
                continue
            in_live = defs.live is not None and _finder(target)(defs.live) is not None
            in_saved = defs.saved is not None and _finder(target)(defs.saved) is not None
            rows[target] = DiskRow(
                target=target, device=disk.device or "disk", bus=disk.target_bus or "",
                source=disk.source_path or "", format=disk.driver_type or "",
                cache=disk.driver_cache or CACHE_DEFAULT, placement=defs.placement(in_live, in_saved),
            )
    return list(rows.values())


# ---- disks ---------------------------------------------------------------------------------


def _create_volume(conn: libvirt.virConnect, spec: NewVolume, vm_name: str) -> libvirt.virStorageVol:
    if spec.format not in DISK_FORMATS:
        raise FieldProblem("format", gettext_noop("Format: qcow2 or raw."))
    if not 0 < spec.size_bytes <= MAX_VOLUME_BYTES:
        raise FieldProblem("size", gettext_noop("Size: between 1 MiB and 64 TiB."))
    size = -(-spec.size_bytes // MIB) * MIB  # whole MiB: what every image format can hold
    pool = conn.storagePoolLookupByName(spec.pool)
    if not pool.isActive():
        raise FieldProblem("pool", gettext_noop("Storage pool {pool} is not active."), pool=spec.pool)
    pool.refresh(0)  # files made or removed behind libvirt's back
    taken = set(pool.listVolumes())
    if spec.name:
        check_name(spec.name, "volume name")
        if spec.name in taken:
            raise FieldProblem("volume_name", gettext_noop("Pool {pool} already has a volume named {name}."),
                               pool=spec.pool, name=spec.name)
        name = spec.name
    else:
        name = volume_name(taken, f"{vm_name}-data", spec.format)
    available = int(pool.info()[3])
    if size > available:
        raise FieldProblem("size", gettext_noop("Storage pool {pool} has only {size} free."), pool=spec.pool,
                           size=iec(available))
    xml = StorageVolume.new(name=name, capacity=size, allocation=0, format=spec.format).to_xml()
    return pool.createXML(xml, 0)


def _uses(defs: Definitions, source: DiskSource) -> bool:
    wanted = source.path or f"{source.pool}/{source.volume}"
    return any(disk.source_path == wanted for doc in (defs.live, defs.saved) if doc is not None for disk in doc.disks)


def attach_disk(dom: libvirt.virDomain, source: NewVolume | PoolVolume, *, bus: str,
                cache: str = CACHE_DEFAULT) -> str:
    """Attach a new or existing volume; returns what happened, in words."""
    _check_choices(bus, cache)
    defs = definitions(dom)
    live = defs.running and bus in HOTPLUG_BUSES
    if defs.running and not live and defs.saved is None:
        raise InvalidState(gettext_noop("{name} is a transient VM: a {bus} disk cannot be added while it runs, "
                                        "and it has no saved definition for the next boot."), name=defs.name, bus=bus)
    conn = dom.connect()
    created: libvirt.virStorageVol | None = None
    try:
        if isinstance(source, NewVolume):
            created = _create_volume(conn, source, defs.name)
            src = disk_source(conn, PoolVolume(source.pool, created.name()))
            label = Text(gettext_noop("new volume {pool}/{volume}"), pool=source.pool, volume=created.name())
        else:
            src = disk_source(conn, source)
            if _uses(defs, src):
                raise FieldProblem("volume", gettext_noop("{name} already uses {pool}/{volume}."), name=defs.name,
                                   pool=source.pool, volume=source.volume)
            label = Text(gettext_noop("volume {pool}/{volume}"), pool=source.pool, volume=source.volume)
        disk = disk_element(src, target=free_target(defs, bus), bus=bus, cache=cache)
        flags = (LIVE if live else 0) | (CONFIG if defs.saved is not None else 0)
        dom.attachDeviceFlags(disk.to_xml(), flags)
    except libvirt.libvirtError as exc:
        error = translate(exc)
        note = _remove_new(created)
        if note:
            raise reworded(error, gettext_noop("{error} {note}"), error=error, note=note) from None
        raise error from None
    except BaseException:
        _remove_new(created)
        raise
    target = disk.target_dev
    if live or not defs.running:
        return Text(gettext_noop("{what} attached as {target} ({bus})."), what=label, target=target, bus=bus)
    return Text(gettext_noop("{what} attached as {target} ({bus}) from the next boot: a {bus} disk cannot be added to "
                             "a running VM."), what=label, target=target, bus=bus)


def _remove_new(volume: libvirt.virStorageVol | None) -> str:
    """Undo a volume made for a disk libvirt then refused; returns a note when it stays behind."""
    if volume is None:
        return ""
    try:
        volume.delete(0)
    except libvirt.libvirtError as exc:
        return Text(gettext_noop("The new volume {name} could not be removed ({error}): delete it by hand."),
                    name=volume.name(), error=translate(exc))
    return Text(gettext_noop("The new volume was removed again."))


def _detach(dom: libvirt.virDomain, defs: Definitions, target: str, device: str, live_ok: bool) -> tuple[bool, bool]:
    """Detach from the definitions that have the device; returns (in the running VM, detached from it)."""
    find = _finder(target, device)
    in_live = defs.live is not None and find(defs.live) is not None
    in_saved = defs.saved is not None and find(defs.saved) is not None
    if not in_live and not in_saved:
        if device == "cdrom":
            raise InvalidInput(gettext_noop("{name} has no CD-ROM drive {target}."), name=defs.name, target=target)
        raise InvalidInput(gettext_noop("{name} has no disk {target}."), name=defs.name, target=target)
    live = in_live and live_ok
    if in_live and not live and not in_saved:
        raise InvalidState(gettext_noop("{target} can only be removed once {name} is shut off."), target=target,
                           name=defs.name)
    doc = defs.saved if in_saved else defs.live
    element = find(doc) if doc is not None else None
    assert element is not None
    dom.detachDeviceFlags(device_xml(element), (LIVE if live else 0) | (CONFIG if in_saved else 0))
    return in_live, live


def detach_disk(dom: libvirt.virDomain, target: str) -> str:
    """Detach a disk (its volume stays in its pool)."""
    defs = definitions(dom)
    current = next((d for doc in (defs.saved, defs.live) if doc is not None for d in doc.disks
                    if d.target_dev == target and (d.device or "disk") == "disk"), None)
    bus = (current.target_bus or "") if current is not None else ""
    in_live, live = _detach(dom, defs, target, "disk", bus in HOTPLUG_BUSES)
    if in_live and not live:
        return Text(gettext_noop("{target} is removed at the next boot: a {bus} disk cannot be removed from a running "
                                 "VM. Its volume stays in its pool."), target=target, bus=bus)
    if live and still_live(dom, _finder(target, "disk")):
        return Text(gettext_noop("{target} is removed from the saved definition; the guest has not released it yet, "
                                 "so the running VM keeps it until the guest lets go or the VM is shut off. Its volume "
                                 "stays in its pool."), target=target)
    return Text(gettext_noop("{target} detached. Its volume stays in its pool."), target=target)


# ---- CD-ROM --------------------------------------------------------------------------------


def _iso(conn: libvirt.virConnect, iso: PoolVolume) -> DiskSource:
    if not iso.volume.lower().endswith(ISO_SUFFIX):
        raise FieldProblem("iso", gettext_noop("Choose an ISO image (a volume whose name ends in .iso)."))
    return disk_source(conn, iso)


def _cdrom(defs: Definitions, target: str) -> None:
    if not any(_finder(target, "cdrom")(doc) for doc in (defs.live, defs.saved) if doc is not None):
        raise InvalidInput(gettext_noop("{name} has no CD-ROM drive {target}."), name=defs.name, target=target)


def insert_media(dom: libvirt.virDomain, target: str, iso: PoolVolume) -> str:
    """Put an ISO into a CD-ROM drive: at once on a running VM, and in the saved definition."""
    defs = definitions(dom)
    _cdrom(defs, target)
    source = _iso(dom.connect(), iso)

    def insert(disk: Disk) -> None:
        set_source(disk, source)
        disk.driver_type = "raw"

    update_each(dom, defs, _finder(target, "cdrom"), insert)
    return Text(gettext_noop("{pool}/{volume} inserted in {target}."), pool=iso.pool, volume=iso.volume, target=target)


def eject_media(dom: libvirt.virDomain, target: str) -> str:
    defs = definitions(dom)
    _cdrom(defs, target)
    update_each(dom, defs, _finder(target, "cdrom"), lambda disk: set_source(disk, None))
    return Text(gettext_noop("{target} ejected."), target=target)


def _shut_off(dom: libvirt.virDomain, defs: Definitions, what: str) -> None:
    if defs.running:
        state = state_name(int(dom.state()[0]))
        raise InvalidState(gettext_noop("{name} is {state}: shut it off to {what} (QEMU cannot change CD-ROM drives "
                                        "of a running VM)."), name=defs.name, state=state, what=Term(what))


def add_cdrom(dom: libvirt.virDomain, iso: PoolVolume | None = None) -> str:
    """Add a CD-ROM drive (optionally with an ISO in it) to a shut-off VM."""
    defs = definitions(dom)
    _shut_off(dom, defs, gettext_noop("add a CD-ROM drive"))
    bus = cdrom_bus(defs.machine)
    source = _iso(dom.connect(), iso) if iso else None
    drive = cdrom_element(target=free_target(defs, bus), bus=bus, source=source)
    dom.attachDeviceFlags(drive.to_xml(), CONFIG)
    if iso:
        return Text(gettext_noop("CD-ROM drive {target} ({bus}) added with {pool}/{volume}."), target=drive.target_dev,
                    bus=bus, pool=iso.pool, volume=iso.volume)
    return Text(gettext_noop("CD-ROM drive {target} ({bus}) added."), target=drive.target_dev, bus=bus)


def remove_cdrom(dom: libvirt.virDomain, target: str) -> str:
    defs = definitions(dom)
    _shut_off(dom, defs, gettext_noop("remove a CD-ROM drive"))
    _detach(dom, defs, target, "cdrom", live_ok=False)
    return Text(gettext_noop("CD-ROM drive {target} removed."), target=target)

