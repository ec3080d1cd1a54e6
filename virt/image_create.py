"""Creating a VM from a cloud image: the image's copy as its disk, the cloud-init seed as a read-only CD-ROM.

Phases (told to `step` before each begins):
- "copying image": a full copy (the image volume cloned into the disk's pool with createXMLFrom, then grown to
  the disk size: the guest's cloud-init grows its partition to fill it) or a linked clone (a new qcow2 volume of
  the disk size whose backing file is the image: instant, only in the image's own pool, when its library allows);
- "uploading seed": the NoCloud ISO (built by virt/cloudinit.py in the request) written as the volume
  `<vm>-seed.iso` of the disk's pool through a libvirt stream, so remote hosts work over every transport;
- "defining": virt/create.py's own domain builder, with the seed CD-ROM and the panel's metadata (the image, the
  login, the seed volume: virt/image_meta.py);
- "starting".
On any failure everything made so far (domain, seed, disk) is removed again, and the error says so in words.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

from virt import cloudinit
from virt.capabilities import ARCH, BIOS, CPU_DEFAULT
from virt.create import DEFINING, NIC, STARTING, NewVM, PoolVolume, build_domain_xml, disk_source
from virt.delete import undefine
from virt.devices import FieldProblem
from virt.errors import (
    InvalidInput,
    InvalidState,
    Text,
    VirtError,
    and_joined,
    gettext_noop,
    joined,
    reworded,
    said_as,
    translate,
)
from virt.image_meta import ImageMeta
from virt.xml.codecs import iec
from virt.xml.storage import StorageVolume

log = logging.getLogger(__name__)

COPYING, UPLOADING_SEED = Text(gettext_noop("copying image")), Text(gettext_noop("uploading seed"))
PHASES = (COPYING, UPLOADING_SEED, DEFINING, STARTING)
SEED_SUFFIX = "-seed.iso"
SEED_TIMEOUT = 120.0  # seconds to upload a seed of about 60 KiB: only a dead host takes that long
IMAGE_FORMATS = ("qcow2", "raw")


def seed_volume_name(vm_name: str) -> str:
    return f"{vm_name}{SEED_SUFFIX}"


def disk_volume_name(taken: set[str], vm_name: str) -> str:
    """vm.qcow2, or vm-2.qcow2, ...: never a volume somebody has (a disk from an image is always qcow2 or raw, the
    image's format; the name says qcow2 for both as virt.create.volume_name does for a new qcow2 disk)."""
    candidate, number = f"{vm_name}.qcow2", 1
    while candidate in taken:
        number += 1
        candidate = f"{vm_name}-{number}.qcow2"
    return candidate


@dataclass(frozen=True)
class ImageVM:
    """A VM to make from a cloud image. The request chooses `uuid`, `disk_volume` and the first NIC's MAC up
    front: the seed names them (instance id, network-config) and a job records them."""

    name: str
    vcpus: int
    memory_mib: int
    image: PoolVolume
    image_format: str  # qcow2 or raw: read through libvirt when the image was imported
    disk_pool: str
    disk_bytes: int  # the new disk's size: never less than the image's virtual size
    disk_volume: str  # the new disk's volume name (disk_volume_name)
    uuid: str
    linked: bool = False  # a qcow2 overlay on the image instead of a full copy
    nics: tuple[NIC, ...] = ()
    firmware: str = BIOS
    domain_type: str = "kvm"
    machine: str = ""
    cpu_mode: str = CPU_DEFAULT
    arch: str = ARCH
    user: str = ""  # the login cloud-init makes (metadata: the VM page's `ssh USER@IP`)
    image_name: str = ""  # for the metadata

    @property
    def seed_volume(self) -> str:
        return seed_volume_name(self.name)

    def as_new_vm(self) -> NewVM:
        return NewVM(name=self.name, vcpus=self.vcpus, memory_mib=self.memory_mib,
                     disk=PoolVolume(self.disk_pool, self.disk_volume), firmware=self.firmware, machine=self.machine,
                     cpu_mode=self.cpu_mode, nics=self.nics, domain_type=self.domain_type, arch=self.arch,
                     uuid=self.uuid, disk_bus="virtio")

    def problems(self) -> list[str]:
        found = self.as_new_vm().problems()
        if not self.uuid:
            found.append(Text(gettext_noop("uuid: chosen by the caller")))
        if self.image_format not in IMAGE_FORMATS:
            found.append(Text(gettext_noop("image format: {first} or {second}"), first=IMAGE_FORMATS[0],
                              second=IMAGE_FORMATS[1]))
        if self.disk_bytes < 1:
            found.append(Text(gettext_noop("disk size: more than zero")))
        if self.linked and self.disk_pool != self.image.pool:
            found.append(Text(gettext_noop("a linked clone lives in the image's own pool")))
        if not self.disk_volume or "/" in self.disk_volume or self.disk_volume == self.seed_volume:
            found.append(Text(gettext_noop("disk volume: a name of its own")))
        return found

    def meta(self) -> ImageMeta:
        return ImageMeta(self.image_name or self.image.volume, self.user, self.disk_pool, self.seed_volume)


def spec_params(spec: ImageVM) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_params(params: dict[str, Any]) -> ImageVM:
    values = dict(params)
    image, nics = values.pop("image"), values.pop("nics")
    return ImageVM(**values, image=PoolVolume(**image), nics=tuple(NIC(**nic) for nic in nics))


# --- on the host -------------------------------------------------------------------------------------------

def _no_domain(lookup: Callable[[], libvirt.virDomain], taken: Text) -> None:
    try:
        lookup()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        return
    raise said_as(InvalidInput, taken)


def image_size(conn: libvirt.virConnect, image: PoolVolume) -> tuple[int, int, str]:
    """(virtual size, allocation, format) of the image volume, as libvirt reads it (qemu-img's header)."""
    vol = conn.storagePoolLookupByName(image.pool).storageVolLookupByName(image.volume)
    desc = StorageVolume.from_xml(vol.XMLDesc(0))
    return int(desc.capacity or 0), int(desc.allocation or 0), desc.format or "raw"


def _copy(conn: libvirt.virConnect, spec: ImageVM, virtual: int, allocation: int) -> libvirt.virStorageVol:
    pool = conn.storagePoolLookupByName(spec.disk_pool)
    if not pool.isActive():
        raise InvalidState(gettext_noop("Storage pool {pool} is not active."), pool=spec.disk_pool)
    if spec.disk_volume in set(pool.listVolumes()):
        raise InvalidInput(gettext_noop("Storage pool {pool} already has a volume named {name}."), pool=spec.disk_pool,
                           name=spec.disk_volume)
    image_pool = conn.storagePoolLookupByName(spec.image.pool)
    image = image_pool.storageVolLookupByName(spec.image.volume)
    if spec.linked:
        xml = StorageVolume.new(name=spec.disk_volume, capacity=spec.disk_bytes, format="qcow2",
                                backing_path=str(image.path()), backing_format=spec.image_format).to_xml()
        return pool.createXML(xml, 0)
    available = int(pool.info()[3])
    if allocation > available:
        raise InvalidInput(gettext_noop("Storage pool {pool} has only {free} free; the image's copy needs {now} now "
                                        "(and "
                                        "up to {most} as the guest writes)."), pool=spec.disk_pool,
                           free=iec(available), now=iec(allocation), most=iec(spec.disk_bytes))
    xml = StorageVolume.new(name=spec.disk_volume, capacity=virtual, format=spec.image_format).to_xml()
    return pool.createXMLFrom(xml, image, 0)


def _undo(conn: libvirt.virConnect, spec: ImageVM, dom: libvirt.virDomain | None, seed_made: bool,
          disk: libvirt.virStorageVol | None) -> Text:
    """Remove what a failed creation made, newest first; returns it in words ("Removed ...; could not remove ...")."""
    removed: list[Text] = []
    left: list[Text] = []
    if dom is not None:
        try:
            if dom.isActive():
                dom.destroy()
            undefine(dom)
            removed.append(Text(gettext_noop("the definition of {name}"), name=spec.name))
        except libvirt.libvirtError as exc:
            log.warning("rollback: could not undefine %s: %s", spec.name, exc)
            left.append(Text(gettext_noop("the definition of {name} ({error})"), name=spec.name, error=translate(exc)))
    if seed_made:
        try:
            cloudinit.remove_seed(conn, spec.disk_pool, spec.seed_volume)
            removed.append(Text(gettext_noop("the seed {pool}/{volume}"), pool=spec.disk_pool, volume=spec.seed_volume))
        except VirtError as exc:
            left.append(Text(gettext_noop("the seed {pool}/{volume} ({error})"), pool=spec.disk_pool,
                             volume=spec.seed_volume, error=exc))
    if disk is not None:
        try:
            disk.delete(0)
            removed.append(Text(gettext_noop("the disk {pool}/{volume}"), pool=spec.disk_pool, volume=spec.disk_volume))
        except libvirt.libvirtError as exc:
            log.warning("rollback: could not delete %s: %s", spec.disk_volume, exc)
            left.append(Text(gettext_noop("the disk {pool}/{volume} ({error})"), pool=spec.disk_pool,
                             volume=spec.disk_volume, error=translate(exc)))
    words = (Text(gettext_noop("Removed what it had made: {what}."), what=joined(removed, ", ")) if removed
             else Text(gettext_noop("Nothing was left behind.")))
    if left:
        return Text(gettext_noop("{done} Could not remove {what}: please remove it by hand."), done=words,
                    what=and_joined(left))
    return words


def create_from_image(conn: libvirt.virConnect, spec: ImageVM, seed: bytes,
                      step: Callable[[str], None] | None = None, *, start: bool = True,
                      seed_timeout: float = SEED_TIMEOUT) -> str:
    """Copy the image, upload the seed, define the VM (and start it); returns the new VM's UUID.

    Raises VirtError with the reason and what was removed again on any failure; a disk smaller than the image
    is a FieldProblem on `disk_size` (nothing made)."""
    problems = spec.problems()
    if problems:
        raise InvalidInput("{problems}", problems=joined(problems))
    tell = step or (lambda _phase: None)
    try:
        _no_domain(lambda: conn.lookupByName(spec.name),
                   Text(gettext_noop("A VM named {name} already exists on this host."), name=spec.name))
        _no_domain(lambda: conn.lookupByUUIDString(spec.uuid),
                   Text(gettext_noop("A VM with the UUID {uuid} already exists."), uuid=spec.uuid))
        virtual, allocation, _fmt = image_size(conn, spec.image)
    except libvirt.libvirtError as exc:
        raise translate(exc) from None
    if spec.disk_bytes < virtual:
        raise FieldProblem("disk_size", gettext_noop("The disk must hold the image: at least {least} (its virtual "
                                                     "size); {asked} was asked."), least=iec(virtual),
                           asked=iec(spec.disk_bytes))
    dom: libvirt.virDomain | None = None
    disk: libvirt.virStorageVol | None = None
    seed_made = False
    try:
        tell(COPYING)
        disk = _copy(conn, spec, virtual, allocation)
        if not spec.linked and spec.disk_bytes > virtual:
            disk.resize(spec.disk_bytes, 0)
        tell(UPLOADING_SEED)
        cloudinit.upload_seed(conn, spec.disk_pool, spec.seed_volume, seed, timeout=seed_timeout)
        seed_made = True
        tell(DEFINING)
        boot = disk_source(conn, PoolVolume(spec.disk_pool, spec.disk_volume))
        cdrom = disk_source(conn, PoolVolume(spec.disk_pool, spec.seed_volume))
        xml = build_domain_xml(spec.as_new_vm(), boot, seed=cdrom, meta=spec.meta())
        dom = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        if start:
            tell(STARTING)
            dom.create()
        return str(dom.UUIDString())
    except libvirt.libvirtError as exc:
        raise _said(translate(exc), _undo(conn, spec, dom, seed_made, disk)) from None
    except VirtError as exc:
        raise _said(exc, _undo(conn, spec, dom, seed_made, disk)) from None
    except BaseException:
        _undo(conn, spec, dom, seed_made, disk)
        raise


def _said(error: VirtError, undone: Text) -> VirtError:
    """The error with what was removed again; kinds whose constructor takes more than words (a FieldProblem, a
    StorageInputError: a taken seed name) become InvalidInput with the same words."""
    if str(error).endswith("."):
        template, params = gettext_noop("{error} {undone}"), {"error": Text.of(error), "undone": undone}
    else:
        template, params = gettext_noop("{error}. {undone}"), {"error": Text.of(error), "undone": undone}
    if type(error).__init__ is VirtError.__init__:  # the plain kinds: NotFound, InvalidState, Unreachable...
        return reworded(error, template, **params)
    again = InvalidInput(template, **params)
    again.from_host = error.from_host
    return again
