"""Snapshots of one VM: list, create, revert, delete.

The panel makes internal snapshots: they live inside the VM's qcow2 disks, and libvirt can
revert and delete them (external ones it can only partly manage in the versions we meet). A
running VM is snapshotted with its memory, so reverting resumes it where it was; a shut-off VM
with its disks. Disk formats are checked before libvirt is asked, so that a raw disk gets a
sentence saying what to do instead of libvirt's "unsupported configuration".

Writing a running VM's memory can take minutes: the panel runs that as a durable job, which asks
`memory_progress` how far libvirt is and, when its worker died, `after_interruption` what became of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import libvirt

from virt import names
from virt.errors import InvalidInput, Term, Text, Unsupported, gettext_noop, joined
from virt.xml.domain import Domain, DomainSnapshot

MAX_DESCRIPTION = 1000
SNAPSHOTTABLE_FORMAT = "qcow2"


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    created: int  # seconds since the epoch
    state: str  # the VM's state when it was taken
    description: str
    current: bool
    parent: str
    with_memory: bool

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created, tz=UTC)


def _info(snap: libvirt.virDomainSnapshot) -> SnapshotInfo:
    desc = DomainSnapshot.from_xml(snap.getXMLDesc(0))
    return SnapshotInfo(
        name=str(snap.getName()), created=desc.creation_time or 0, state=desc.state or "",
        description=desc.description or "", current=bool(snap.isCurrent(0)), parent=desc.parent or "",
        with_memory=desc.memory not in (None, "no"),
    )


def list_snapshots(dom: libvirt.virDomain) -> list[SnapshotInfo]:
    """Newest first."""
    return sorted((_info(s) for s in dom.listAllSnapshots(0)), key=lambda s: (s.created, s.name), reverse=True)


def blockers(dom: Domain, running: bool) -> list[str]:
    """Why libvirt would refuse an internal snapshot of this VM, in words; empty when it can be taken."""
    found: list[str] = []
    writable = [d for d in dom.disks if (d.device or "disk") in ("disk", "lun") and not d.readonly and d.source_path]
    for disk in writable:
        fmt = disk.driver_type or Term(gettext_noop("unknown"))
        if fmt != SNAPSHOTTABLE_FORMAT:
            found.append(Text(gettext_noop("disk {disk} ({path}) is {format}: snapshots are stored inside qcow2 disks "
                                           "only. Convert it to qcow2 (qemu-img convert) with the VM shut off, or use "
                                           "a backup of the volume instead."), disk=disk.target_dev,
                              path=disk.source_path, format=fmt))
    if running and not writable:
        found.append(Text(gettext_noop("a running VM's snapshot keeps its memory inside a qcow2 disk, and this VM has "
                                       "none.")))
    return found


def snapshot_xml(name: str, description: str) -> str:
    """The request: just a name and a description; libvirt fills in the rest from the VM."""
    return DomainSnapshot.new(name=name, description=description or None).to_xml()


def validate(name: str, description: str) -> tuple[str, str]:
    name, description = name.strip(), description.strip()
    names.check_name(name, "Snapshot")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(gettext_noop("The description is limited to {limit} characters."), limit=MAX_DESCRIPTION)
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in description):
        raise InvalidInput(gettext_noop("The description contains control characters."))
    return name, description


def _exists(dom: libvirt.virDomain, name: str) -> bool:
    return name in {str(s.getName()) for s in dom.listAllSnapshots(0)}


def create(dom: libvirt.virDomain, name: str, description: str = "") -> SnapshotInfo:
    name, description = validate(name, description)
    running = bool(dom.isActive())
    problems = blockers(Domain.from_xml(dom.XMLDesc(0)), running)
    if problems:
        raise Unsupported(gettext_noop("{name} cannot be snapshotted: {problems}"), name=dom.name(),
                          problems=joined(problems, " "))
    if _exists(dom, name):
        raise InvalidInput(gettext_noop("{vm} already has a snapshot named {name}."), vm=dom.name(), name=name)
    snap = dom.snapshotCreateXML(snapshot_xml(name, description), libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
    return _info(snap)


def memory_progress(dom: libvirt.virDomain) -> tuple[int, int] | None:
    """(bytes of memory written, bytes in all) of the domain's running job, from libvirt's job statistics;
    None when libvirt does not tell (no job, no memory figures, or a driver without job statistics)."""
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_INVALID):
            return None
        raise
    total, processed = stats.get("memory_total"), stats.get("memory_processed")
    if not total or processed is None:
        return None
    return min(int(processed), int(total)), int(total)


def has_active_job(dom: libvirt.virDomain) -> bool:
    """Whether libvirt still runs a job on the domain (e.g. writing a snapshot whose caller went away)."""
    try:
        kind = int(dom.jobInfo()[0])
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            return False  # a driver without jobs: nothing can still be running
        raise
    return bool(kind != libvirt.VIR_DOMAIN_JOB_NONE)


EXISTS, BUSY, ABSENT = "exists", "busy", "absent"


def after_interruption(dom: libvirt.virDomain, name: str) -> str:
    """What became of a snapshot whose caller went away: EXISTS (it was taken), BUSY (libvirt still works
    on the domain: ask again later) or ABSENT (it was not taken)."""
    if _exists(dom, name):
        return EXISTS
    if has_active_job(dom):
        return BUSY
    return EXISTS if _exists(dom, name) else ABSENT  # its job may have ended between the two questions


class NoSuchSnapshot(InvalidInput):
    """A snapshot name the VM does not have: a page says so after the action (its list may be stale); the API
    answers 404 (api/errors.py)."""


def _lookup(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot:
    if not _exists(dom, name):  # a name from a form: never handed to libvirt unchecked
        raise NoSuchSnapshot(gettext_noop("{vm} has no snapshot named {name}."), vm=dom.name(), name=repr(name))
    return dom.snapshotLookupByName(name, 0)


def revert(dom: libvirt.virDomain, name: str) -> SnapshotInfo:
    """Back to the snapshot: its disks, its definition and (if it has one) its running memory."""
    snap = _lookup(dom, name)
    dom.revertToSnapshot(snap, 0)
    return _info(snap)


def delete(dom: libvirt.virDomain, name: str) -> str:
    """Remove one snapshot (its children are kept and re-parented by libvirt); returns its name."""
    _lookup(dom, name).delete(0)
    return name
