"""Deleting a VM: which volumes it uses, undefining it with everything libvirt keeps for it,
and removing the volumes the user chose (only ones that belong to this VM and to no other:
a disk or ISO another VM also uses is kept whatever is asked)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import libvirt

from virt import image_meta
from virt.errors import InvalidInput, InvalidState, Said, Text, gettext_noop, joined, translate
from virt.sharing import other_users, vm_words
from virt.volusage import disk_usage
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
    shared_with: tuple[str, ...] = ()  # other VMs using the same volume or file

    @property
    def deletable(self) -> bool:
        # CD-ROM images are usually shared installers: never offered for deletion.
        return bool(self.key) and self.device == "disk" and not self.shared_with

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
    """The VM's disks, each with the other VMs using it (one disk_usage() for them all)."""
    conn = dom.connect()
    usage = disk_usage(conn)
    me = str(dom.name())
    found: dict[str, VMVolume] = {}
    for doc in _definitions(dom):
        for disk in doc.disks:
            source = disk.source_path
            if not source:
                continue  # an empty CD-ROM drive
            vol = _lookup_volume(conn, disk)
            pool, name, key, paths = "", "", "", [disk.source_file or disk.source_dev]
            if vol is not None:
                pool, name, key = str(vol.storagePoolLookupByVolume().name()), str(vol.name()), str(vol.key())
                paths.append(str(vol.path()))  # other VMs may name it by path, this one by pool/volume
            found.setdefault(key or source, VMVolume(
                target=disk.target_dev or "", device=disk.device or "disk", source=source, pool=pool, name=name,
                key=key, shared_with=other_users(usage, pool, name, paths, me)))
    return list(found.values())


@dataclass(frozen=True)
class DeletePlan:
    """What the confirmation page shows: the VM, its state and its volumes."""

    name: str
    running: bool
    volumes: tuple[VMVolume, ...]
    seed: str = ""  # the key of the cloud-init seed of a VM made from an image: it goes with the VM

    @property
    def deletable(self) -> list[VMVolume]:
        return [vol for vol in self.volumes if vol.deletable]

    @property
    def kept(self) -> list[VMVolume]:
        return [vol for vol in self.volumes if not vol.deletable and vol.key != self.seed]

    @property
    def seed_volume(self) -> VMVolume | None:
        return next((vol for vol in self.volumes if self.seed and vol.key == self.seed), None)


def delete_plan(dom: libvirt.virDomain) -> DeletePlan:
    volumes = tuple(vm_volumes(dom))
    return DeletePlan(str(dom.name()), bool(dom.isActive()), volumes, _seed(dom, volumes))


class VolumeChoiceError(InvalidInput):
    """Chosen volumes that may not go with the VM; nothing was changed. Carries the plan it was
    checked against, so the page can be shown again without asking the host twice."""

    def __init__(self, message: Said | str, plan: DeletePlan, plain: str = "") -> None:
        said = Text.of(message)
        super().__init__(said.template, **said.params)
        self.plan = plan
        self.plain = plain or said  # the same without other VMs' names, for users who may not see them


def _check_choice(plan: DeletePlan, wanted: set[str]) -> list[VMVolume]:
    shared = [vol for vol in plan.volumes if vol.key in wanted and vol.shared_with]
    if shared:
        users = joined([Text(gettext_noop("{volume} is also used by {users}"), volume=vol.label,
                             users=vm_words(vol.shared_with)) for vol in shared])
        raise VolumeChoiceError(Text(gettext_noop("{users}, and a volume another VM uses is never deleted: nothing was "
                                                  "deleted (untick it and delete again)."), users=users), plan,
                                plain=Text(gettext_noop("A chosen volume is also used by another VM, and a volume "
                                                        "another VM uses is never deleted: nothing was deleted (untick "
                                                        "it and delete again).")))
    volumes = [vol for vol in plan.deletable if vol.key in wanted]
    if wanted - {vol.key for vol in volumes}:
        raise VolumeChoiceError(Text(gettext_noop("Some of the chosen volumes are not disks of this VM; nothing was "
                                                  "deleted.")), plan)
    return volumes


@dataclass
class DeleteReport:
    name: str
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (volume, why)
    forced_off: bool = False


def delete_vm(dom: libvirt.virDomain, volume_keys: Iterable[str] = (), *, force_off: bool = False) -> DeleteReport:
    """Undefine the VM, then delete the chosen volumes (keys from vm_volumes()).

    A chosen volume another VM uses, or one that is not this VM's, raises VolumeChoiceError
    before anything changes. A running VM is refused unless force_off. Volumes go after the
    definition, so a failure leaves at worst an unused volume, never a VM pointing at a deleted disk.
    """
    plan = delete_plan(dom)
    name = plan.name
    volumes = _check_choice(plan, set(volume_keys))
    if plan.seed_volume is not None and plan.seed_volume not in volumes:
        volumes.append(plan.seed_volume)
    report = DeleteReport(name)
    persistent = bool(dom.isPersistent())
    if dom.isActive():
        if not force_off:
            raise InvalidState(gettext_noop("{name} is running: shut it down first, or choose \"force off and "
                                            "delete\"."),
                               name=name)
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
            report.failed.append((vol.label, Text.of(translate(exc))))
    return report


def _seed(dom: libvirt.virDomain, volumes: tuple[VMVolume, ...]) -> str:
    """The key of the cloud-init seed of a VM made from an image (its metadata names it, virt/image_meta.py): it
    goes with the VM whatever volumes were chosen, unless another VM uses it too."""
    meta = image_meta.of_domain(dom)
    if meta is None or not meta.seed_volume:
        return ""
    return next((vol.key for vol in volumes if vol.device == "cdrom" and vol.pool == meta.seed_pool
                 and vol.name == meta.seed_volume and vol.key and not vol.shared_with), "")
