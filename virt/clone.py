"""Cloning a shut-off VM: a new name, new MAC addresses, a copy of each disk in the disk's own pool.

Copying disks takes minutes, so the work runs as a durable job (instances/clone_jobs.py) that reports
progress by polling the new volume's allocation. The clone's definition comes from the source's persistent
XML (INACTIVE|SECURE: its VNC password and everything the panel does not model come along) without
the uuid, so that libvirt assigns a fresh one. A failure removes every volume the job made; so does a stop
asked between two steps (before a disk's copy, before the definition).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import libvirt

from virt import names as name_rules
from virt.create import volume_name
from virt.domains import state_name
from virt.errors import InvalidInput, InvalidState, Text, VirtError, and_joined, gettext_noop, translate
from virt.lifecycle import OFF
from virt.macs import fresh_macs, host_macs
from virt.volumes import remove_partial as remove_partial_volume
from virt.xml.domain import Disk, Domain
from virt.xml.storage import StorageVolume

log = logging.getLogger(__name__)
T = TypeVar("T")
# Runs fn(conn) on the VM's host and waits for it at most the given number of seconds.
Runner = Callable[[Callable[[libvirt.virConnect], T], float], T]

SECURE_CONFIG = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
POLL_SECONDS = 0.5
COPY_TIMEOUT = 24 * 3600.0  # one disk copy: as long as it takes
CALL_TIMEOUT = 30.0  # anything else the job asks


# ---- what to copy -----------------------------------------------------------------------


@dataclass
class DiskCopy:
    target: str
    pool: str
    source_volume: str
    new_volume: str
    format: str
    capacity: int
    source_bytes: int  # the source's allocation: how much there is to copy
    copied_bytes: int = 0
    done: bool = False


@dataclass
class ClonePlan:
    source_name: str
    source_uuid: str
    new_name: str
    source_xml: str
    disks: list[DiskCopy]
    shared: list[str]  # disks the clone uses as they are (CD-ROMs, read-only disks)
    macs: list[str]


@dataclass(frozen=True)
class NewSource:
    """Where a copied disk lives, in the terms of the <disk> it replaces."""

    path: str = ""
    pool: str = ""
    volume: str = ""


def copied(disk: Disk) -> bool:
    """Writable disks are copied; CD-ROMs, floppies and read-only disks are shared as they are."""
    return (disk.device or "disk") in ("disk", "lun") and not disk.readonly and bool(disk.source_path)


def _volume_of(conn: libvirt.virConnect, disk: Disk) -> libvirt.virStorageVol | None:
    try:
        if disk.type == "volume" and disk.source_pool and disk.source_volume:
            return conn.storagePoolLookupByName(disk.source_pool).storageVolLookupByName(disk.source_volume)
        path = disk.source_file or disk.source_dev
        if disk.type in (None, "file", "block") and path:
            return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            raise
    return None


def _refusal(dom: libvirt.virDomain) -> VirtError | None:
    """Why this VM cannot be cloned now, or None."""
    name = str(dom.name())
    code = int(dom.state()[0])
    if code not in OFF:
        return InvalidState(gettext_noop("{name} is {state}: shut it off before cloning it "
                                         "(the disks of a running VM change while they are copied)."),
                            name=name, state=state_name(code))
    if dom.hasManagedSaveImage(0):
        return InvalidState(gettext_noop("{name} has a saved memory state: its disks belong to that state. Restore "
                                         "and shut it down, or discard the saved state, before cloning it."), name=name)
    return None


@dataclass(frozen=True)
class ClonePreview:
    """What the clone page shows before anything is done."""

    name: str
    refusal: str  # "" when the VM can be cloned now
    copies: list[str]  # "vda: pool/volume"
    shared: list[str]
    taken_names: frozenset[str]


def preview(dom: libvirt.virDomain) -> ClonePreview:
    conn = dom.connect()
    source = Domain.from_xml(dom.XMLDesc(SECURE_CONFIG))
    refusal = _refusal(dom)
    copies, shared = [], []
    for disk in source.disks:
        if not copied(disk):
            if disk.source_path:
                shared.append(f"{disk.target_dev}: {disk.source_path}")
            continue
        vol = _volume_of(conn, disk)
        if vol is None:
            refusal = refusal or InvalidInput(gettext_noop("Disk {target} ({path}) is not a volume of a storage pool: "
                                                           "the panel copies pool volumes only."),
                                              target=disk.target_dev, path=disk.source_path)
            continue
        copies.append(f"{disk.target_dev}: {vol.storagePoolLookupByVolume().name()}/{vol.name()}")
    return ClonePreview(name=str(dom.name()), refusal=Text.of(refusal) if refusal else "", copies=copies, shared=shared,
                        taken_names=frozenset(str(d.name()) for d in conn.listAllDomains(0)))


def plan_clone(dom: libvirt.virDomain, new_name: str) -> ClonePlan:
    """Check everything that can be checked before copying a byte, and choose the new names."""
    name_rules.check_name(new_name)
    name = str(dom.name())
    refusal = _refusal(dom)
    if refusal is not None:
        raise refusal
    conn = dom.connect()
    if new_name in {str(d.name()) for d in conn.listAllDomains(0)}:
        raise InvalidInput(gettext_noop("A VM named {name} already exists on this host."), name=new_name)
    xml = dom.XMLDesc(SECURE_CONFIG)
    source = Domain.from_xml(xml)
    disks: list[DiskCopy] = []
    shared: list[str] = []
    taken: dict[str, set[str]] = {}
    for disk in source.disks:
        if not copied(disk):
            if disk.source_path:
                shared.append(f"{disk.target_dev}: {disk.source_path}")
            continue
        vol = _volume_of(conn, disk)
        if vol is None:
            raise InvalidInput(gettext_noop("Disk {target} ({path}) is not a volume of a storage pool: "
                                            "the panel copies pool volumes only."),
                               target=disk.target_dev, path=disk.source_path)
        pool = vol.storagePoolLookupByVolume()
        if not pool.isActive():
            raise InvalidState(gettext_noop("Storage pool {pool} of disk {target} is not active."), pool=pool.name(),
                               target=disk.target_dev)
        desc = StorageVolume.from_xml(vol.XMLDesc(0))
        fmt = desc.format or "raw"
        names = taken.setdefault(str(pool.name()), set(pool.listVolumes()))
        new_volume = volume_name(names, new_name if not disks else f"{new_name}-{disk.target_dev}", fmt)
        names.add(new_volume)
        _type, capacity, allocation = vol.info()
        disks.append(DiskCopy(target=disk.target_dev or "", pool=str(pool.name()), source_volume=str(vol.name()),
                              new_volume=new_volume, format=fmt, capacity=int(capacity),
                              source_bytes=max(1, int(allocation))))
    return ClonePlan(source_name=name, source_uuid=str(dom.UUIDString()), new_name=new_name, source_xml=xml,
                     disks=disks, shared=shared, macs=fresh_macs(host_macs(conn), len(source.interfaces)))


# ---- the clone's definition ------------------------------------------------------------


def clone_domain_xml(source: Domain, new_name: str, sources: Mapping[str, NewSource], macs: list[str]) -> Domain:
    """The source's definition with a new name, no uuid, the copied disks and new MACs."""
    dom = Domain.from_xml(source.to_xml(pretty=False))
    dom.name = new_name
    dom.uuid = None  # libvirt assigns a new one
    dom.id = None
    for disk in dom.disks:
        new = sources.get(disk.target_dev or "")
        if new is None:
            continue
        if disk.type == "volume":
            disk.source_pool, disk.source_volume = new.pool, new.volume
        elif disk.type == "block":
            disk.source_dev = new.path
        else:
            disk.source_file = new.path
        for chain in disk.element.findall("backingStore"):  # the copy is a standalone image
            disk.element.remove(chain)
    if len(macs) < len(dom.interfaces):
        raise ValueError("one new MAC address per interface")
    for nic, mac in zip(dom.interfaces, macs, strict=False):
        nic.mac = mac
        nic.target_dev = None  # a tap name is per running VM
    for display in dom.graphics:
        if display.autoport is False or (display.port or -1) > 0:
            display.port, display.autoport = None, True  # two VMs cannot share a fixed port
    dom.os.nvram = None  # fresh UEFI variables from the firmware's template, not a shared file
    return dom


def _new_source(vol: libvirt.virStorageVol, pool: str) -> NewSource:
    desc = StorageVolume.from_xml(vol.XMLDesc(0))
    return NewSource(path=desc.target_path or str(vol.path()), pool=pool, volume=str(vol.name()))


# ---- the copy ---------------------------------------------------------------------------

# Reports what is done: bytes copied so far, bytes to copy in all, the phase in words.
Report = Callable[[int, int, str], None]


class Stopped(VirtError):
    """The clone stopped between two steps because it was asked to; its words say the step it did not begin and
    what it removed again (or could not)."""


def plan_params(plan: ClonePlan) -> dict[str, Any]:
    """The plan as JSON-able values, without the source's definition (it holds secrets such as the VNC
    password): the job reads that again when it runs."""
    values = asdict(plan)
    del values["source_xml"]
    return values


def plan_from_params(values: Mapping[str, Any], source_xml: str) -> ClonePlan:
    return ClonePlan(source_name=values["source_name"], source_uuid=values["source_uuid"],
                     new_name=values["new_name"], source_xml=source_xml,
                     disks=[DiskCopy(**disk) for disk in values["disks"]], shared=list(values["shared"]),
                     macs=list(values["macs"]))


def source_config(dom: libvirt.virDomain) -> str:
    """What the job copies the clone's definition from (checked again: it must still be shut off)."""
    refusal = _refusal(dom)
    if refusal is not None:
        raise refusal
    return str(dom.XMLDesc(SECURE_CONFIG))


def run_clone(plan: ClonePlan, runner: Runner[Any], report: Report, stop: Callable[[], bool] | None = None) -> str:
    """Copy each disk, then define the clone; returns the clone's uuid. On failure the copies made so far
    are removed and VirtError("The clone failed: ...") is raised. `stop()` is asked before each step (a disk's
    copy, the definition): when it says yes, the copies made so far are removed and Stopped is raised."""
    total = sum(d.source_bytes for d in plan.disks)
    asked = stop or (lambda: False)

    def done() -> int:
        return sum(d.source_bytes if d.done else min(d.copied_bytes, d.source_bytes) for d in plan.disks)

    made: list[DiskCopy] = []
    try:
        sources: dict[str, NewSource] = {}
        for disk in plan.disks:
            if asked():
                raise _stopped(runner, made, Text(gettext_noop("copying disk {target}"), target=disk.target))
            phase = Text(gettext_noop("copying disk {target}"), target=disk.target)
            report(done(), total, phase)
            sources[disk.target] = _copy(runner, disk, functools.partial(_report_now, report, done, total, phase))
            made.append(disk)
        if asked():
            raise _stopped(runner, made, Text(gettext_noop("defining the clone")))
        report(total, total, Text(gettext_noop("defining the clone")))
        xml = clone_domain_xml(Domain.from_xml(plan.source_xml), plan.new_name, sources, plan.macs).to_xml()
        uuid: str = runner(lambda conn: str(conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE).UUIDString()),
                           CALL_TIMEOUT)
        return uuid
    except Stopped:
        raise
    except Exception as exc:
        error = translate(exc) if isinstance(exc, libvirt.libvirtError) else exc
        if not isinstance(error, VirtError):
            log.exception("clone of %s failed", plan.source_name)
        left = _remove(runner, made)
        if left:
            raise VirtError(gettext_noop("The clone failed: {error} Could not remove {left}: please remove it by "
                                         "hand."),
                            error=error, left=and_joined(left)) from None
        raise VirtError(gettext_noop("The clone failed: {error}"), error=error) from None


def _stopped(runner: Runner[Any], made: list[DiskCopy], before: Text) -> Stopped:
    """What a clone stopped before `before` (its next step) says, once the copies it made are removed."""
    if not made:
        return Stopped(gettext_noop("Stopped before {step}: nothing was copied."), step=before)
    left = _remove(runner, made)
    if left:
        return Stopped(gettext_noop("Stopped before {step}; could not remove {left}: please remove it by hand."),
                       step=before, left=and_joined(left))
    return Stopped(gettext_noop("Stopped before {step}; the copies it had made were removed: {removed}."),
                   step=before, removed=", ".join(f"{d.pool}/{d.new_volume}" for d in made))


def _report_now(report: Report, done: Callable[[], int], total: int, phase: str) -> None:
    report(done(), total, phase)


def _copy(runner: Runner[Any], disk: DiskCopy, reported: Callable[[], None]) -> NewSource:
    """createXMLFrom blocks until the copy is done: run it in a helper thread and poll meanwhile."""

    def copy(conn: libvirt.virConnect) -> NewSource:
        pool = conn.storagePoolLookupByName(disk.pool)
        source = pool.storageVolLookupByName(disk.source_volume)
        xml = StorageVolume.new(name=disk.new_volume, capacity=disk.capacity, format=disk.format).to_xml()
        return _new_source(pool.createXMLFrom(xml, source, 0), disk.pool)

    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = runner(copy, COPY_TIMEOUT)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"clone-{disk.new_volume}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        if worker.is_alive():
            _poll(runner, disk)
            reported()
    if "error" in outcome:
        raise outcome["error"]
    disk.done = True
    result: NewSource = outcome["value"]
    return result


def _poll(runner: Runner[Any], disk: DiskCopy) -> None:
    def allocation(conn: libvirt.virConnect) -> int:
        pool = conn.storagePoolLookupByName(disk.pool)
        return int(pool.storageVolLookupByName(disk.new_volume).info()[2])

    try:
        disk.copied_bytes = runner(allocation, CALL_TIMEOUT)
    except (VirtError, libvirt.libvirtError):
        return  # the new volume shows up in its pool only part of the time while it is built


def _remove(runner: Runner[Any], made: list[DiskCopy]) -> list[Text]:
    left: list[Text] = []
    for disk in made:
        try:
            runner(_deleter(disk), CALL_TIMEOUT)
        except (VirtError, libvirt.libvirtError) as exc:
            left.append(Text(gettext_noop("volume {pool}/{volume} ({error})"), pool=disk.pool, volume=disk.new_volume,
                             error=exc))
    return left


def _deleter(disk: DiskCopy) -> Callable[[libvirt.virConnect], None]:
    def delete(conn: libvirt.virConnect) -> None:
        conn.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.new_volume).delete(0)

    return delete


# ---- after a copy whose worker died ------------------------------------------------------


@dataclass
class Leftovers:
    removed: list[str] = field(default_factory=list)  # what was removed, in words
    building: list[str] = field(default_factory=list)  # copies libvirt still writes: remove them later
    kept: str = ""  # why nothing was removed (the clone is complete and running)


def remove_leftovers(conn: libvirt.virConnect, new_name: str, disks: list[DiskCopy]) -> Leftovers:
    """Remove what a clone whose worker died left: its definition (only if it uses the job's copies and
    is shut off) and each copy of a disk, complete or partial."""
    found = Leftovers()
    ours: set[str] = set()
    for disk in disks:
        ours.add(f"{disk.pool}/{disk.new_volume}")
        try:
            ours.add(str(conn.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.new_volume).path()))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
                raise
    try:
        dom: libvirt.virDomain | None = conn.lookupByName(new_name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        dom = None
    if dom is not None:
        defined = Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        uses = any(d.source_path in ours or f"{d.source_pool}/{d.source_volume}" in ours for d in defined.disks)
        if uses:
            if dom.isActive():
                found.kept = Text(gettext_noop("{name} is running: it and its disks were left as they are."),
                                  name=new_name)
                return found
            dom.undefine()
            found.removed.append(Text(gettext_noop("the definition of {name}"), name=new_name))
    for disk in disks:
        outcome = remove_partial_volume(conn, disk.pool, disk.new_volume)
        if outcome == "removed":
            found.removed.append(f"{disk.pool}/{disk.new_volume}")
        elif outcome == "building":
            found.building.append(f"{disk.pool}/{disk.new_volume}")
    return found
