"""Deleting a VM: which volumes it uses, undefining it with everything libvirt keeps for it,
and removing the volumes the user chose (only ones that belong to this VM)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import libvirt

from virt.errors import InvalidInput, InvalidState, translate
from virt.xml.domain import Disk, Domain

# Managed save images, snapshot/checkpoint metadata and UEFI variables all block a plain
# undefine on the qemu driver; drivers that know fewer flags (the test driver) get fewer.
_ALL_UNDEFINE = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
UNDEFINE_FLAG_SETS = (
    _ALL_UNDEFINE,
    _ALL_UNDEFINE & ~libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
)
_FLAG_REFUSED = {libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED}
_NO_SUCH_VOLUME = {libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL}


def undefine(dom: libvirt.virDomain) -> None:
    """Undefine with the most thorough flags the driver accepts."""
    for flags in UNDEFINE_FLAG_SETS:
        try:
            dom.undefineFlags(flags)
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                break  # no undefineFlags at all
            if exc.get_error_code() not in _FLAG_REFUSED or "flag" not in str(exc).lower():
                raise
    dom.undefine()


@dataclass(frozen=True)
class VMVolume:
    """One disk of a VM and, when it is a libvirt volume, which one."""

    target: str  # vda, sda
    device: str  # disk, cdrom
    source: str  # what the XML points at, for display
    pool: str = ""
    name: str = ""
    key: str = ""  # empty: not a volume of any pool (a bare file or device)

    @property
    def deletable(self) -> bool:
        # CD-ROM images are usually shared installers: never offered for deletion.
        return bool(self.key) and self.device == "disk"

    @property
    def label(self) -> str:
        return f"{self.pool}/{self.name}" if self.key else self.source


def _lookup_volume(conn: libvirt.virConnect, disk: Disk) -> libvirt.virStorageVol | None:
    try:
        if disk.type == "volume" and disk.source_pool and disk.source_volume:
            return conn.storagePoolLookupByName(disk.source_pool).storageVolLookupByName(disk.source_volume)
        path = disk.source_file or disk.source_dev
        if disk.type in ("file", "block") and path:
            return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in _NO_SUCH_VOLUME:
            raise
    return None


def _definitions(dom: libvirt.virDomain) -> list[Domain]:
    """The live XML and, for a running VM, the persistent one too (they can differ in disks)."""
    docs = [Domain.from_xml(dom.XMLDesc(0))]
    if dom.isActive() and dom.isPersistent():
        docs.append(Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
    return docs


def vm_volumes(dom: libvirt.virDomain) -> list[VMVolume]:
    conn = dom.connect()
    found: dict[str, VMVolume] = {}
    for doc in _definitions(dom):
        for disk in doc.disks:
            source = disk.source_path
            if not source:
                continue  # an empty CD-ROM drive
            vol = _lookup_volume(conn, disk)
            item = VMVolume(target=disk.target_dev or "", device=disk.device or "disk", source=source)
            if vol is not None:
                item = VMVolume(item.target, item.device, source, pool=vol.storagePoolLookupByVolume().name(),
                                name=vol.name(), key=vol.key())
            found.setdefault(item.key or source, item)
    return list(found.values())


@dataclass
class DeleteReport:
    name: str
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (volume, why)
    forced_off: bool = False


def delete_vm(dom: libvirt.virDomain, volume_keys: Iterable[str] = (), *, force_off: bool = False) -> DeleteReport:
    """Undefine the VM, then delete the chosen volumes (keys from vm_volumes()).

    A running VM is refused unless force_off. Volumes go after the definition, so a
    failure leaves at worst an unused volume, never a VM pointing at a deleted disk.
    """
    name = dom.name()
    wanted = set(volume_keys)
    volumes = [vol for vol in vm_volumes(dom) if vol.deletable and vol.key in wanted]
    if wanted - {vol.key for vol in volumes}:
        raise InvalidInput("Some of the chosen volumes are not disks of this VM; nothing was deleted.")
    report = DeleteReport(name)
    persistent = bool(dom.isPersistent())
    if dom.isActive():
        if not force_off:
            raise InvalidState(f"{name} is running: shut it down first, or choose \"force off and delete\".")
        dom.destroy()  # a transient VM is gone after this
        report.forced_off = True
    if persistent:
        undefine(dom)
    conn = dom.connect()
    for vol in volumes:
        try:
            conn.storageVolLookupByKey(vol.key).delete(0)
            report.deleted.append(vol.label)
        except libvirt.libvirtError as exc:
            report.failed.append((vol.label, str(translate(exc))))
    return report
