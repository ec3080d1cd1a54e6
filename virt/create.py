"""Creating a VM from a typed spec: boot volume, definition, optional start; undone on failure.

The domain XML is built only through the typed objects of virt.xml, so every value from a
form lands in an attribute or text node (escaped by lxml), never in markup.

A new volume allocated up front (allocation = capacity) can take minutes to write: the panel runs
that creation as a durable job, with the spec stored as JSON (spec_params) and the VM's UUID and
volume name chosen before it starts, so that `tidy_unfinished` finds what a job whose worker died
left behind.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import libvirt

from virt import image_meta, names
from virt.capabilities import ARCH, BIOS, CPU_DEFAULT, UEFI
from virt.delete import undefine
from virt.errors import (
    InvalidInput,
    InvalidState,
    Term,
    Text,
    VirtError,
    and_joined,
    gettext_noop,
    joined,
    reworded,
    said_as,
    translate,
)
from virt.sharing import volume_users
from virt.volumes import VOLUME_FORMATS, remove_partial
from virt.xml.codecs import iec
from virt.xml.domain import Channel, Console, Disk, Domain, Graphics, Interface, Serial
from virt.xml.storage import StorageVolume

log = logging.getLogger(__name__)

# Letters, digits, dot, dash, underscore: safe in URLs, file names and libvirt alike.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._-]*$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_VOLUME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,250}$")
MIB = 1 << 20
MIN_MEMORY_MIB = 16
MAX_MEMORY_MIB = 16 << 20  # 16 TiB: anything above is a typo, whatever the host has
MAX_VCPUS = 4096
DISK_FORMATS = VOLUME_FORMATS  # a VM's new disk is a volume: the same formats
DISK_BUSES = ("virtio", "sata")  # virtio where the guest has the driver, else SATA (every installer knows AHCI)
NIC_MODELS = ("virtio", "e1000e", "e1000", "rtl8139")
CPU_MODES = ("host-passthrough", "host-model", "maximum", CPU_DEFAULT)
VNC_LISTEN = "127.0.0.1"  # consoles reach it through the panel's proxy, never directly
# Image formats qemu can boot from; anything else a pool reports (e.g. "iso") is read as raw.
_QEMU_FORMATS = {"raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc", "vhdx"}


# What create_vm is doing, for a caller that shows it (step=).
ALLOCATING, MAKING_DISK, DEFINING, STARTING = (Text(gettext_noop("allocating disk")), Text(gettext_noop("making disk")),
                                               Text(gettext_noop("defining")), Text(gettext_noop("starting")))


@dataclass(frozen=True)
class NewVolume:
    pool: str
    size_mib: int
    format: str = "qcow2"
    allocate: bool = False  # write the whole disk now (allocation = capacity) rather than as the guest writes
    name: str = ""  # empty: chosen from the VM's name (volume_name)


@dataclass(frozen=True)
class PoolVolume:
    """An existing volume, by pool and name."""

    pool: str
    volume: str


@dataclass(frozen=True)
class NIC:
    network: str = ""  # a libvirt virtual network, or
    bridge: str = ""  # a host bridge
    model: str = "virtio"
    mac: str = ""  # empty: libvirt chooses one (a VM made from an image names it: its seed's network-config matches it)


@dataclass(frozen=True)
class NewVM:
    name: str
    vcpus: int
    memory_mib: int
    disk: NewVolume | PoolVolume | None  # None: no disk (a live or network-booted system)
    firmware: str = BIOS
    machine: str = ""  # empty: the hypervisor's default machine type
    cpu_mode: str = CPU_DEFAULT
    iso: PoolVolume | None = None
    nics: tuple[NIC, ...] = ()
    domain_type: str = "kvm"
    arch: str = ARCH
    uuid: str = ""  # empty: libvirt chooses one
    disk_bus: str = "virtio"

    def problems(self) -> list[str]:
        """Checks that hold on any host (the form checks the host's own limits first)."""
        found: list[str] = []
        if not names.NAME_RE.match(self.name):
            found.append(Text(gettext_noop("name: {rule}"), rule=Term(names.RULE)))
        if not 1 <= self.vcpus <= MAX_VCPUS:
            found.append(Text(gettext_noop("vCPUs: between 1 and {most}"), most=MAX_VCPUS))
        if not MIN_MEMORY_MIB <= self.memory_mib <= MAX_MEMORY_MIB:
            found.append(Text(gettext_noop("memory: between {least} MiB and {most} MiB"), least=MIN_MEMORY_MIB,
                              most=MAX_MEMORY_MIB))
        if self.firmware not in (BIOS, UEFI):
            found.append(Text(gettext_noop("firmware: bios or efi")))
        if self.cpu_mode not in CPU_MODES:
            found.append(Text(gettext_noop("CPU mode: unknown")))
        if not _TOKEN_RE.match(self.machine) or not _TOKEN_RE.match(self.domain_type):
            found.append(Text(gettext_noop("machine or domain type: unexpected characters")))
        if self.disk_bus not in DISK_BUSES:
            found.append(Text(gettext_noop("disk bus: one of {buses}"), buses=", ".join(DISK_BUSES)))
        if isinstance(self.disk, NewVolume):
            if self.disk.format not in DISK_FORMATS:
                found.append(Text(gettext_noop("disk format: qcow2 or raw")))
            if self.disk.size_mib < 1:
                found.append(Text(gettext_noop("disk size: at least 1 MiB")))
            if self.disk.name and not _VOLUME_RE.match(self.disk.name):
                found.append(Text(gettext_noop("volume name: letters, digits, '.', '-' and '_'")))
        if self.uuid and not _is_uuid(self.uuid):
            found.append(Text(gettext_noop("uuid: not a UUID")))
        for nic in self.nics:
            if bool(nic.network) == bool(nic.bridge) or nic.model not in NIC_MODELS:
                found.append(Text(gettext_noop("network interface: one network or one bridge, and a known model")))
            if nic.mac and not _MAC_RE.match(nic.mac):
                found.append(Text(gettext_noop("network interface: a MAC such as 52:54:00:12:34:56")))
        return found


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def spec_params(spec: NewVM) -> dict[str, Any]:
    """The spec as JSON-able values (a job's params); spec_from_params turns them back."""
    kind = "new" if isinstance(spec.disk, NewVolume) else "existing" if spec.disk else "none"
    return {**asdict(spec), "disk_kind": kind}


def spec_from_params(params: dict[str, Any]) -> NewVM:
    values = dict(params)
    kind, disk, iso, nics = values.pop("disk_kind"), values.pop("disk"), values.pop("iso"), values.pop("nics")
    return NewVM(**values, disk=NewVolume(**disk) if kind == "new" else PoolVolume(**disk) if disk else None,
                 iso=PoolVolume(**iso) if iso else None, nics=tuple(NIC(**nic) for nic in nics))


@dataclass(frozen=True)
class DiskSource:
    """Where a disk's data lives, in the shape a <disk> element needs."""

    kind: str  # file, block, volume
    path: str = ""
    pool: str = ""
    volume: str = ""
    format: str = "raw"


def _source_of(vol: libvirt.virStorageVol, pool_name: str) -> DiskSource:
    desc = StorageVolume.from_xml(vol.XMLDesc(0))
    fmt = desc.format if desc.format in _QEMU_FORMATS else "raw"
    if desc.type in (None, "file") and desc.target_path:
        return DiskSource("file", path=desc.target_path, format=fmt)
    if desc.type == "block" and desc.target_path:
        return DiskSource("block", path=desc.target_path, format=fmt)
    return DiskSource("volume", pool=pool_name, volume=vol.name(), format=fmt)


def disk_source(conn: libvirt.virConnect, ref: PoolVolume) -> DiskSource:
    vol = conn.storagePoolLookupByName(ref.pool).storageVolLookupByName(ref.volume)
    return _source_of(vol, ref.pool)


def _disk(source: DiskSource, *, device: str, target: str, bus: str) -> Disk:
    disk = Disk.new(type=source.kind, device=device, driver_name="qemu",
                    driver_type="raw" if device == "cdrom" else source.format)
    if source.kind == "file":
        disk.source_file = source.path
    elif source.kind == "block":
        disk.source_dev = source.path
    else:
        disk.source_pool, disk.source_volume = source.pool, source.volume
    disk.target_dev, disk.target_bus = target, bus
    disk.readonly = device == "cdrom"
    return disk


def cdrom_bus(machine: str) -> str:
    """q35 has no IDE controller; the i440fx machines ("pc", the default) have one built in."""
    return "sata" if "q35" in machine else "ide"


def _targets(spec: NewVM, has_iso: bool) -> tuple[str, str]:
    """Device names of the boot disk and the CD-ROM: vda/sda on their own buses, sda/sdb when both are SATA."""
    cdrom = "sda" if cdrom_bus(spec.machine) == "sata" else "hdc"
    if spec.disk_bus == "virtio":
        return "vda", cdrom
    return "sda", ("sdb" if has_iso and cdrom == "sda" else cdrom)


def build_domain_xml(spec: NewVM, boot: DiskSource | None, iso: DiskSource | None = None, *,
                     seed: DiskSource | None = None, meta: image_meta.ImageMeta | None = None) -> str:
    """The definition of a new VM, with a channel for the QEMU guest agent. A VM made from a cloud image
    (virt/image_create.py) also gets its cloud-init seed as a read-only CD-ROM that is never booted from, and
    the panel's metadata (virt/image_meta.py)."""
    dom = Domain.new(type=spec.domain_type, name=spec.name)
    if spec.uuid:
        dom.uuid = spec.uuid
    dom.memory = dom.current_memory = spec.memory_mib * 1024  # KiB
    dom.vcpus = spec.vcpus
    dom.os.type, dom.os.arch = "hvm", spec.arch
    if spec.machine:
        dom.os.machine = spec.machine
    if spec.firmware == UEFI:
        dom.os.firmware = UEFI  # libvirt picks the loader and makes the NVRAM file
    # An installer ISO first; without one, an empty disk falls through to the network (PXE).
    devices = (["cdrom"] if iso else []) + (["hd"] if boot else []) + ([] if iso or not spec.nics else ["network"])
    dom.os.boot_devices = devices or ["hd"]
    dom.features.acpi = dom.features.apic = True
    if spec.cpu_mode != CPU_DEFAULT:
        dom.cpu_mode = spec.cpu_mode
    dom.on_poweroff, dom.on_reboot, dom.on_crash = "destroy", "restart", "destroy"
    disk_target, cdrom_target = _targets(spec, iso is not None)
    if boot is not None:
        dom.disks.add(_disk(boot, device="disk", target=disk_target, bus=spec.disk_bus))
    if iso is not None:
        dom.disks.add(_disk(iso, device="cdrom", target=cdrom_target, bus=cdrom_bus(spec.machine)))
    if seed is not None:
        target = cdrom_target if iso is None else dom.free_target_dev(cdrom_target[:2])
        dom.disks.add(_disk(seed, device="cdrom", target=target, bus=cdrom_bus(spec.machine)))
    for nic in spec.nics:
        if nic.network:
            interface = Interface.new(type="network", source_network=nic.network, model=nic.model)
        else:
            interface = Interface.new(type="bridge", source_bridge=nic.bridge, model=nic.model)
        if nic.mac:
            interface.mac = nic.mac
        dom.interfaces.add(interface)
    if meta is not None:
        image_meta.add_to(dom.element, meta)
    dom.graphics.add(Graphics.new(type="vnc", autoport=True, listen=VNC_LISTEN))
    dom.serials.add(Serial.new(type="pty", target_port=0))
    dom.consoles.add(Console.new(type="pty", target_type="serial", target_port=0))
    # The QEMU guest agent's port: a guest running qemu-guest-agent tells libvirt its addresses (virt/domains.py).
    dom.channels.add(Channel.guest_agent())
    return dom.to_xml()


def volume_name(taken: set[str], vm_name: str, fmt: str) -> str:
    """vm.qcow2, or vm-2.qcow2, ...: never reuse (and so overwrite) somebody's volume."""
    ext = "qcow2" if fmt == "qcow2" else "img"
    candidate, number = f"{vm_name}.{ext}", 1
    while candidate in taken:
        number += 1
        candidate = f"{vm_name}-{number}.{ext}"
    return candidate


def _create_volume(conn: libvirt.virConnect, vm_name: str, spec: NewVolume) -> libvirt.virStorageVol:
    pool = conn.storagePoolLookupByName(spec.pool)
    if not pool.isActive():
        raise InvalidState(gettext_noop("Storage pool {pool} is not active."), pool=spec.pool)
    available = int(pool.info()[3])
    if spec.size_mib * MIB > available:
        raise InvalidInput(gettext_noop("Storage pool {pool} has only {size} free."), pool=spec.pool,
                           size=iec(available))
    taken = set(pool.listVolumes())
    if spec.name and spec.name in taken:
        raise InvalidInput(gettext_noop("Storage pool {pool} already has a volume named {name}."), pool=spec.pool,
                           name=spec.name)
    name = spec.name or volume_name(taken, vm_name, spec.format)
    capacity = spec.size_mib * MIB
    xml = StorageVolume.new(name=name, capacity=capacity, allocation=capacity if spec.allocate else 0,
                            format=spec.format).to_xml()
    return pool.createXML(xml, 0)


def _undo(dom: libvirt.virDomain | None, volume: libvirt.virStorageVol | None) -> list[Text]:
    """Remove what a failed create made; returns what could not be removed, in words."""
    left: list[Text] = []
    if dom is not None:
        try:
            if dom.isActive():
                dom.destroy()
            undefine(dom)
        except libvirt.libvirtError as exc:
            log.warning("rollback: could not undefine %s: %s", dom.name(), exc)
            left.append(Text(gettext_noop("the definition of {name} ({error})"), name=dom.name(), error=translate(exc)))
    if volume is not None:
        try:
            volume.delete(0)
        except libvirt.libvirtError as exc:
            log.warning("rollback: could not delete volume %s: %s", volume.name(), exc)
            left.append(Text(gettext_noop("the volume {name} ({error})"), name=volume.name(), error=translate(exc)))
    return left


def _no_domain(lookup: Callable[[], libvirt.virDomain], taken: Text) -> None:
    try:
        lookup()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        return
    raise said_as(InvalidInput, taken)


def create_vm(conn: libvirt.virConnect, spec: NewVM, *, start: bool = False,
              step: Callable[[str], None] | None = None) -> libvirt.virDomain:
    """Make the boot volume (if new), define the VM, start it if asked; step(phase) is told each step
    (ALLOCATING or MAKING_DISK, DEFINING, STARTING) before it begins.

    On any failure everything made so far is removed again and a VirtError explains it.
    """
    problems = spec.problems()
    if problems:
        raise InvalidInput("{problems}", problems=joined(problems))
    _no_domain(lambda: conn.lookupByName(spec.name),
               Text(gettext_noop("A VM named {name} already exists on this host."), name=spec.name))
    if spec.uuid:
        _no_domain(lambda: conn.lookupByUUIDString(spec.uuid),
                   Text(gettext_noop("A VM with the UUID {uuid} already exists."), uuid=spec.uuid))
    tell = step or (lambda _phase: None)
    volume: libvirt.virStorageVol | None = None
    dom: libvirt.virDomain | None = None
    try:
        boot: DiskSource | None = None
        if isinstance(spec.disk, NewVolume):
            tell(ALLOCATING if spec.disk.allocate else MAKING_DISK)
            volume = _create_volume(conn, spec.name, spec.disk)
            boot = _source_of(volume, spec.disk.pool)
        elif spec.disk is not None:
            boot = disk_source(conn, spec.disk)
        iso = disk_source(conn, spec.iso) if spec.iso else None
        tell(DEFINING)
        dom = conn.defineXMLFlags(build_domain_xml(spec, boot, iso), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        if start:
            tell(STARTING)
            dom.create()
        return dom
    except libvirt.libvirtError as exc:
        error = translate(exc)
        raise with_leftovers(error, _undo(dom, volume)) from None
    except BaseException as exc:
        left = _undo(dom, volume)
        if left and isinstance(exc, VirtError):
            raise with_leftovers(exc, left) from None
        raise


def with_leftovers(error: VirtError, left: list[Text]) -> VirtError:
    """`error`, saying what a failed creation could not remove (nothing more when `left` is empty)."""
    if not left:
        return error
    if str(error).endswith("."):
        return reworded(error, gettext_noop("{error} Could not remove {what}: please remove it by hand."), error=error,
                        what=and_joined(left))
    return reworded(error, gettext_noop("{error}. Could not remove {what}: please remove it by hand."), error=error,
                    what=and_joined(left))


@dataclass
class Unfinished:
    """What a creation whose caller went away left, and what was done about it."""

    defined: bool = False  # the VM exists (it is kept: it may be in use already)
    building: bool = False  # libvirt still writes the volume: ask again once it has finished
    words: list[str] = field(default_factory=list)


def tidy_unfinished(conn: libvirt.virConnect, spec: NewVM, *, volume_made: bool) -> Unfinished:
    """After a creation (spec with its UUID and, for a new disk, its volume name chosen up front) whose
    caller went away: a VM that was defined is kept and said; otherwise the new volume is removed if
    the creation had begun making it (`volume_made`) and no VM uses it."""
    found = Unfinished()
    try:
        dom = conn.lookupByUUIDString(spec.uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
    else:
        found.defined = True
        if dom.isActive():
            found.words.append(Text(gettext_noop("{name} was defined (uuid {uuid}) and runs; it is kept."),
                                    name=dom.name(), uuid=spec.uuid))
        else:
            found.words.append(Text(gettext_noop("{name} was defined (uuid {uuid}); it is kept."), name=dom.name(),
                                    uuid=spec.uuid))
        return found
    disk = spec.disk
    if not isinstance(disk, NewVolume) or not disk.name or not volume_made:
        found.words.append(Text(gettext_noop("It made nothing.")))
        return found
    try:
        users = volume_users(conn, disk.pool, disk.name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            raise
        found.words.append(Text(gettext_noop("It made nothing.")))
        return found
    if users:
        found.words.append(Text(gettext_noop("The volume {pool}/{volume} is kept: {users} uses it."), pool=disk.pool,
                                volume=disk.name, users=", ".join(users)))
        return found
    outcome = remove_partial(conn, disk.pool, disk.name)
    if outcome == "building":
        found.building = True
    elif outcome == "removed":
        found.words.append(Text(gettext_noop("Removed the half-made volume {pool}/{volume}."), pool=disk.pool,
                                volume=disk.name))
    else:
        found.words.append(Text(gettext_noop("It made nothing.")))
    return found
