"""Boot order, boot menu and autostart of one VM.

libvirt knows two ways to order boot devices and refuses a definition that mixes them:
<os><boot dev='hd'/>... names device types (the first disk, the first CD-ROM, ...), while
<boot order='N'/> inside a <disk> or <interface> names exact devices. The panel writes the
per-device form (it can tell two disks apart) and reads both. Changes go to the persistent
definition (read with SECURE so the VNC password survives); a running VM uses them at its next boot.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import libvirt

from virt.errors import InvalidInput, InvalidState, Term, Text, gettext_noop
from virt.xml.domain import Disk, Domain, Interface

SECURE_CONFIG = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
BOOT_TYPES = ("hd", "cdrom", "network", "fd")
# Which <os><boot dev=...> type each kind of device answers to.
_TYPE_OF_DISK = {"disk": "hd", "lun": "hd", "cdrom": "cdrom", "floppy": "fd"}
_KIND_WORDS = {"disk": Term(gettext_noop("disk")), "lun": Term(gettext_noop("lun")),
               "cdrom": Term(gettext_noop("cdrom")), "floppy": Term(gettext_noop("floppy"))}
_KEY = re.compile(r"^(disk-[a-z0-9]{1,16}|nic-[0-9a-f]{12})$")


@dataclass(frozen=True)
class Bootable:
    """A device the VM can boot from, named by a key that is safe in a form field name."""

    key: str  # disk-vda, nic-525400a1b2c3
    kind: str  # disk, cdrom, floppy, network
    label: str
    order: int | None  # its place in the current boot order, None: not booted from


@dataclass(frozen=True)
class BootSettings:
    devices: tuple[Bootable, ...]
    by_type: tuple[str, ...]  # <os><boot dev> types when the definition uses them
    bootmenu: bool
    autostart: bool
    persistent: bool
    running: bool
    pending: bool  # the running VM booted with another order or menu setting


def disk_key(disk: Disk) -> str | None:
    target = disk.target_dev or ""
    key = f"disk-{target}"
    return key if _KEY.match(key) else None


def nic_key(nic: Interface) -> str | None:
    key = "nic-" + (nic.mac or "").lower().replace(":", "")
    return key if _KEY.match(key) else None


def _devices(dom: Domain) -> list[tuple[str, str, str, Disk | Interface]]:
    """(key, kind, label, device) of every bootable disk and NIC, in definition order."""
    found: list[tuple[str, str, str, Disk | Interface]] = []
    for disk in dom.disks:
        key = disk_key(disk)
        if key and (disk.device or "disk") in _TYPE_OF_DISK:
            kind = disk.device or "disk"
            label = (Text(gettext_noop("{target} ({kind}, {source})"), target=disk.target_dev, source=disk.source_path,
                          kind=_KIND_WORDS.get(kind, kind)) if disk.source_path
                     else Text(gettext_noop("{target} ({kind}, empty)"), target=disk.target_dev,
                               kind=_KIND_WORDS.get(kind, kind)))
            found.append((key, kind, label, disk))
    for nic in dom.interfaces:
        key = nic_key(nic)
        if key:
            source = nic.source_network or nic.source_bridge or nic.type or ""
            found.append((key, "network", Text(gettext_noop("NIC {mac} ({source})"), mac=nic.mac, source=source), nic))
    return found


def _type_of(kind: str) -> str:
    return "network" if kind == "network" else _TYPE_OF_DISK.get(kind, "hd")


def current_order(dom: Domain) -> dict[str, int]:
    """Each bootable device's place in the order: per-device orders, else derived from <os><boot>."""
    devices = _devices(dom)
    explicit = {key: dev.boot_order for key, _kind, _label, dev in devices if dev.boot_order}
    if explicit:
        return {key: place for place, key in enumerate(sorted(explicit, key=lambda k: explicit[k]), start=1)}
    order: dict[str, int] = {}
    for boot_type in dom.os.boot_devices or (["hd"] if devices else []):
        # The BIOS tries the first device of each type (several for disks on some firmwares).
        first = next((key for key, kind, _label, _dev in devices if _type_of(kind) == boot_type and key not in order),
                     None)
        if first:
            order[first] = len(order) + 1
    return order


def read_settings(dom: libvirt.virDomain) -> BootSettings:
    config = Domain.from_xml(dom.XMLDesc(SECURE_CONFIG))
    order = current_order(config)
    devices = tuple(Bootable(key, kind, label, order.get(key)) for key, kind, label, _dev in _devices(config))
    running = bool(dom.isActive())
    pending = False
    if running:
        live = Domain.from_xml(dom.XMLDesc(0))
        pending = current_order(live) != order or bool(live.os.bootmenu) != bool(config.os.bootmenu)
    return BootSettings(
        devices=tuple(sorted(devices, key=lambda d: (d.order is None, d.order or 0))),
        by_type=tuple(config.os.boot_devices), bootmenu=bool(config.os.bootmenu),
        autostart=bool(dom.autostart()), persistent=bool(dom.isPersistent()), running=running, pending=pending,
    )


def set_device_order(dom: Domain, keys: Sequence[str]) -> None:
    """Boot from these devices in this order, and from no other disk or NIC.

    Devices the panel does not model (host devices, redirected USB) keep their <boot order>;
    ours are numbered around them, since libvirt refuses two devices with one number.
    """
    devices = {key: dev for key, _kind, _label, dev in _devices(dom)}
    unknown = [key for key in keys if key not in devices]
    if unknown or len(set(keys)) != len(keys):
        raise InvalidInput(gettext_noop("The boot order names a device the VM does not have, or one device twice."))
    ours = [dev.element for dev in devices.values()]
    taken = {int(order) for boot in dom.element.iterfind("./devices/*/boot")
             if not any(boot.getparent() is el for el in ours) and (order := boot.get("order", "")).isdigit()}
    for dev in devices.values():
        dev.boot_order = None
    number = 0
    for key in keys:
        number += 1
        while number in taken:
            number += 1
        devices[key].boot_order = number
    dom.os.boot_devices = []  # libvirt refuses <os><boot> next to per-device orders


def set_type_order(dom: Domain, types: Sequence[str]) -> None:
    """The older form: <os><boot dev=.../> by device type; per-device orders are removed."""
    if not types or any(t not in BOOT_TYPES for t in types) or len(set(types)) != len(types):
        raise InvalidInput(gettext_noop("Boot device types are {types}, each at most once."),
                           types=", ".join(BOOT_TYPES))
    for _key, _kind, _label, dev in _devices(dom):
        dev.boot_order = None
    dom.os.boot_devices = list(types)


def set_bootmenu(dom: Domain, enabled: bool) -> None:
    """enable='yes' or 'no'; an absent element stays absent when the menu stays off (same meaning)."""
    if enabled or dom.os.bootmenu is not None:
        dom.os.bootmenu = enabled


@dataclass(frozen=True)
class BootReport:
    changed_definition: bool
    autostart_changed: bool
    running: bool


def update(dom: libvirt.virDomain, order: Sequence[str], bootmenu: bool, autostart: bool) -> BootReport:
    """Write boot order and menu into the persistent definition; set autostart (takes effect at once)."""
    if not order:
        raise InvalidInput(gettext_noop("Choose at least one device to boot from."))
    if not dom.isPersistent():
        raise InvalidState(gettext_noop("{name} is transient: it has no saved definition to change."), name=dom.name())
    config = Domain.from_xml(dom.XMLDesc(SECURE_CONFIG))
    before = config.to_xml()
    set_device_order(config, order)
    set_bootmenu(config, bootmenu)
    changed = config.to_xml() != before
    if changed:
        dom.connect().defineXMLFlags(config.to_xml(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    autostart_changed = bool(dom.autostart()) != autostart
    if autostart_changed:
        dom.setAutostart(1 if autostart else 0)
    return BootReport(changed, autostart_changed, bool(dom.isActive()))
