"""Volumes of a pool: list (with the VMs using each), create, clone, grow, wipe, delete.

A pool's page costs a handful of calls for the pool, one listAllVolumes, one XMLDesc per
volume and one getAllDomainStats for the VMs using them. Clones and wipes can take minutes:
the callers run them in the background and poll clone_progress().
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from virt.errors import InvalidState, Text, and_joined, gettext_noop
from virt.storage import PoolSummary, lookup, pool_summary
from virt.storage_rules import Problem, StorageInputError, check_name
from virt.volusage import Usage, disk_usage
from virt.xml.codecs import iec
from virt.xml.storage import StorageVolume

VOLUME_FORMATS = ("qcow2", "raw")


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    key: str
    path: str
    type: str
    format: str
    capacity: int
    allocation: int
    physical: int | None  # bytes a download delivers (file size), when libvirt says
    backing_path: str
    used_by: tuple[str, ...] = ()  # VM names
    backing_for: tuple[str, ...] = ()  # volumes of this pool built on top of this one

    @property
    def in_use(self) -> bool:
        return bool(self.used_by or self.backing_for)

    def use_words(self) -> Text:
        parts: list[Text] = []
        if len(self.used_by) == 1:
            parts.append(Text(gettext_noop("VM {names}"), names=self.used_by[0]))
        elif self.used_by:
            parts.append(Text(gettext_noop("VMs {names}"), names=", ".join(self.used_by)))
        if len(self.backing_for) == 1:
            parts.append(Text(gettext_noop("the volume {names} (as backing file)"), names=self.backing_for[0]))
        elif self.backing_for:
            parts.append(Text(gettext_noop("the volumes {names} (as backing file)"), names=", ".join(self.backing_for)))
        return and_joined(parts) if parts else Text("")


@dataclass(frozen=True)
class PoolDetail:
    pool: PoolSummary
    volumes: tuple[VolumeInfo, ...]
    users: tuple[str, ...] = ()  # every VM using a volume of this pool (found even while it is stopped)

    def volume(self, name: str) -> VolumeInfo | None:
        return next((vol for vol in self.volumes if vol.name == name), None)


def _describe(xml: str) -> StorageVolume:
    return StorageVolume.from_xml(xml)


def _infos(pool_name: str, xmls: list[str], usage: Usage) -> tuple[VolumeInfo, ...]:
    described = [_describe(xml) for xml in xmls]
    backing: dict[str, list[str]] = {}
    for vol in described:
        if vol.backing_path:
            backing.setdefault(vol.backing_path, []).append(vol.name or "")
    infos = []
    for vol in described:
        name, path = vol.name or "", vol.target_path or ""
        infos.append(VolumeInfo(
            name=name, key=vol.key or "", path=path, type=vol.type or "", format=vol.format or "",
            capacity=vol.capacity or 0, allocation=vol.allocation or 0, physical=vol.physical,
            backing_path=vol.backing_path or "", used_by=tuple(usage.users(pool_name, name, path)),
            backing_for=tuple(sorted(backing.get(path, []))) if path else (),
        ))
    return tuple(sorted(infos, key=lambda v: v.name))


def _volume_xmls(pool: libvirt.virStoragePool) -> list[str]:
    xmls = []
    for vol in pool.listAllVolumes(0):
        try:
            xmls.append(str(vol.XMLDesc(0)))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise  # else: deleted meanwhile
    return xmls


# Targets that hold more than the pool's own volumes: a path prefix says nothing there.
_SHARED_TARGETS = ("/dev", "/dev/disk/by-path", "/dev/disk/by-id", "/dev/mapper")


def _pool_users(summary: PoolSummary, volumes: tuple[VolumeInfo, ...], usage: Usage) -> tuple[str, ...]:
    users = {vm for vol in volumes for vm in vol.used_by}
    users |= {vm for (pool, _vol), vms in usage.by_volume.items() if pool == summary.name for vm in vms}
    target = summary.target_path.rstrip("/")
    if target and target not in _SHARED_TARGETS:
        users |= {vm for path, vms in usage.by_path.items() if path.startswith(target + "/") for vm in vms}
    return tuple(sorted(users))


def pool_detail(conn: libvirt.virConnect, name: str, *, thorough: bool = False) -> PoolDetail:
    summary = pool_summary(conn, name)
    usage = disk_usage(conn, thorough=thorough)
    volumes = _infos(name, _volume_xmls(lookup(conn, name)), usage) if summary.active else ()
    return PoolDetail(summary, volumes, _pool_users(summary, volumes, usage))


def volume_info(conn: libvirt.virConnect, pool: str, name: str, *, thorough: bool = True) -> VolumeInfo:
    """One volume with everything that uses it (thorough by default: for refusals)."""
    found = pool_detail(conn, pool, thorough=thorough).volume(name)
    if found is None:
        lookup(conn, pool).storageVolLookupByName(name)  # raises libvirt's own "not found"
        raise InvalidState(gettext_noop("Volume {name} vanished while it was being read."), name=name)
    return found


# --- changes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewVolumeSpec:
    name: str
    capacity: int  # bytes; for an overlay, 0 means "as large as its backing volume"
    format: str = "qcow2"
    preallocate: bool = False
    backing: str = ""  # name of a volume of the same pool the new qcow2 is built on

    def problems(self) -> list[Problem]:
        found = []
        try:
            check_name(self.name, "volume name")
        except ValueError as exc:
            found.append(Problem.of("name", exc))
        if self.format not in VOLUME_FORMATS:
            found.append(Problem("format", Text(gettext_noop("Format: qcow2 or raw."))))
        if self.backing and self.format != "qcow2":
            found.append(Problem("backing", Text(gettext_noop("Only a qcow2 volume can have a backing volume."))))
        if self.capacity < 0 or (self.capacity == 0 and not self.backing):
            found.append(Problem("capacity", Text(gettext_noop("Give the size of the new volume."))))
        return found


def _is_sparse(pool_type: str, fmt: str, preallocate: bool) -> bool:
    return pool_type in ("dir", "fs", "netfs", "rbd") and not preallocate


def space_problem(pool: PoolSummary, capacity: int, fmt: str, preallocate: bool) -> str:
    """A size the pool cannot hold: beyond its free space when allocated up front, beyond its
    whole capacity when thin (a typo either way). Empty when it fits."""
    if _is_sparse(pool.type, fmt, preallocate):
        if pool.capacity and capacity > pool.capacity:
            return Text(gettext_noop("Pool {pool} holds only {size} in all."), pool=pool.name, size=iec(pool.capacity))
    elif capacity > pool.available:
        return Text(gettext_noop("Pool {pool} has only {size} free."), pool=pool.name, size=iec(pool.available))
    return ""


def create_volume(conn: libvirt.virConnect, pool_name: str, spec: NewVolumeSpec) -> str:
    problems = spec.problems()
    if problems:
        raise StorageInputError(problems)
    pool = lookup(conn, pool_name)
    summary = pool_summary(conn, pool_name)
    if not summary.active:
        raise InvalidState(gettext_noop("Pool {pool} is not active: start it first."), pool=pool_name)
    fmt = spec.format if summary.file_based else "raw"
    vol = StorageVolume.new(name=spec.name, format=fmt)
    capacity = spec.capacity
    if spec.backing:
        base = StorageVolume.from_xml(pool.storageVolLookupByName(spec.backing).XMLDesc(0))
        capacity = capacity or base.capacity or 0
        vol.backing_path, vol.backing_format = base.target_path, base.format or "raw"
    vol.capacity = capacity
    problem = space_problem(summary, capacity, fmt, spec.preallocate)
    if problem:
        raise StorageInputError([Problem("capacity", problem)])
    flags = 0
    if fmt == "qcow2":
        vol.allocation = 0
        if spec.preallocate:
            flags |= libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA
    else:
        vol.allocation = capacity if spec.preallocate else 0
    pool.createXML(vol.to_xml(), flags)
    return spec.name


def clone_volume(conn: libvirt.virConnect, pool_name: str, source: str, new_name: str, fmt: str = "") -> None:
    """Copy `source` into a new volume of the same pool (blocking: run it in the background)."""
    try:
        check_name(new_name, "volume name")
    except ValueError as exc:
        raise StorageInputError([Problem.of("name", exc)]) from None
    if fmt and fmt not in VOLUME_FORMATS:
        raise StorageInputError([Problem("format", Text(gettext_noop("Format: qcow2 or raw.")))])
    pool = lookup(conn, pool_name)
    src = pool.storageVolLookupByName(source)
    desc = StorageVolume.from_xml(src.XMLDesc(0))
    new = StorageVolume.new(name=new_name, capacity=desc.capacity)
    new.format = (fmt or desc.format or "raw") if pool_summary(conn, pool_name).file_based else "raw"
    pool.createXMLFrom(new.to_xml(), src, 0)


def allocation_of(conn: libvirt.virConnect, pool_name: str, name: str) -> tuple[int, int] | None:
    """(allocation, capacity) of a volume, None while it does not exist yet."""
    try:
        info = lookup(conn, pool_name).storageVolLookupByName(name).info()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise
    return int(info[2]), int(info[1])


def remove_partial(conn: libvirt.virConnect, pool_name: str, name: str) -> str:
    """Remove what a copy whose caller went away left: "removed", "absent", or "building" while libvirtd
    still writes it (it goes on copying after its client is gone, and refuses deletion until it ends)."""
    try:
        vol = lookup(conn, pool_name).storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return "absent"
        raise
    try:
        vol.delete(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID and "being allocated" in str(exc):
            return "building"
        raise
    return "removed"


def _running(conn: libvirt.virConnect, names: tuple[str, ...]) -> list[str]:
    running = []
    for name in names:
        try:
            if conn.lookupByName(name).isActive():
                running.append(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return running


def resize_volume(conn: libvirt.virConnect, pool_name: str, name: str, capacity: int) -> int:
    """Grow a volume to `capacity` bytes (shrinking loses data: refused). Returns the old size.

    Refused while a running VM uses it: qemu would not see the new size, and its image format
    layer could be written behind its back."""
    vol = lookup(conn, pool_name).storageVolLookupByName(name)
    current = int(vol.info()[1])
    if capacity <= current:
        raise StorageInputError([Problem("capacity", Text(gettext_noop("The volume already has {current} bytes: "
                                                                    "give a larger size (volumes only grow)."),
                                                                  current=current))])
    running = _running(conn, volume_info(conn, pool_name, name).used_by)
    if running:
        if len(running) > 1:
            raise InvalidState(gettext_noop("Volume {name} is in use by the running VMs {vms}: shut them down first."),
                               name=name, vms=", ".join(running))
        raise InvalidState(gettext_noop("Volume {name} is in use by the running VM {vms}: shut it down first."),
                           name=name, vms=running[0])
    vol.resize(capacity, 0)
    return current


def delete_volume(conn: libvirt.virConnect, pool_name: str, name: str) -> None:
    """Delete, unless a VM or another volume uses it: then InvalidState names them."""
    info = volume_info(conn, pool_name, name)
    if info.in_use:
        raise InvalidState(gettext_noop("Volume {name} is used by {users}: it was not deleted."), name=name,
                           users=info.use_words())
    lookup(conn, pool_name).storageVolLookupByName(name).delete(0)


def wipe_volume(conn: libvirt.virConnect, pool_name: str, name: str) -> None:
    """Overwrite with zeros (blocking: run it in the background). Refused while in use."""
    info = volume_info(conn, pool_name, name)
    if info.used_by:
        raise InvalidState(gettext_noop("Volume {name} is used by {users}: it was not wiped."), name=name,
                           users=info.use_words())
    lookup(conn, pool_name).storageVolLookupByName(name).wipe(0)


def check_new_name(detail: PoolDetail, name: str) -> None:
    if detail.volume(name) is not None:
        raise StorageInputError([Problem("name", Text(gettext_noop("Pool {pool} already has a volume named {name}."),
                                                      pool=detail.pool.name, name=name))])

