"""<domain> XML: guests and their devices.

Only the settings webkvm edits are modelled; everything else in the document is
carried along untouched (see base.XMLObject).
"""

from __future__ import annotations

import string
from collections.abc import Iterable

from virt.errors import BadValue, gettext_noop
from virt.xml.base import XMLObject
from virt.xml.codecs import ON_OFF, YES_NO
from virt.xml.fields import Attr, Child, Children, Flag, Size, Text


class Disk(XMLObject):
    tag = "disk"
    type = Attr("./@type")  # file, block, volume, network
    device = Attr("./@device")  # disk, cdrom, floppy, lun
    driver_name = Attr("./driver/@name")
    driver_type = Attr("./driver/@type")  # raw, qcow2
    driver_cache = Attr("./driver/@cache")
    source_file = Attr("./source/@file")
    source_dev = Attr("./source/@dev")
    source_pool = Attr("./source/@pool")
    source_volume = Attr("./source/@volume")
    target_dev = Attr("./target/@dev")
    target_bus = Attr("./target/@bus")
    readonly = Flag("./readonly")
    boot_order = Attr("./boot/@order", int)

    @property
    def source_path(self) -> str | None:
        """Whatever the disk points at, for display."""
        if self.source_pool and self.source_volume:
            return f"{self.source_pool}/{self.source_volume}"
        return self.source_file or self.source_dev

    def clear_source(self) -> None:
        """Drop <source> and the backing chain a running VM reports for it (an empty drive, or a new medium next)."""
        for node in [*self.element.findall("source"), *self.element.findall("backingStore")]:
            self.element.remove(node)


class Interface(XMLObject):
    tag = "interface"
    type = Attr("./@type")  # network, bridge, direct
    mac = Attr("./mac/@address")
    source_network = Attr("./source/@network")
    source_bridge = Attr("./source/@bridge")
    target_dev = Attr("./target/@dev")
    model = Attr("./model/@type")  # virtio, e1000, rtl8139
    link_state = Attr("./link/@state")  # up, down
    boot_order = Attr("./boot/@order", int)

    def set_source(self, kind: str, name: str) -> None:
        """Attach to a virtual network or a host bridge. A fresh <source> drops what the old one
        carried (portgroup, and the port id and bridge a running VM reports)."""
        if kind not in ("network", "bridge"):
            raise ValueError(f"unsupported interface source {kind!r}")
        for node in self.element.findall("source"):
            self.element.remove(node)
        self.type = kind
        if kind == "network":
            self.source_network = name
        else:
            self.source_bridge = name


class GraphicsListen(XMLObject):
    tag = "listen"
    type = Attr("./@type")
    address = Attr("./@address")


class Graphics(XMLObject):
    tag = "graphics"
    type = Attr("./@type")  # vnc, spice
    port = Attr("./@port", int)  # -1 with autoport
    autoport = Attr("./@autoport", YES_NO)
    _listen_attr = Attr("./@listen")
    _listen_address = Child(GraphicsListen, "./listen[@type='address']")
    passwd = Attr("./@passwd")
    keymap = Attr("./@keymap")

    @property
    def listen(self) -> str | None:
        return self._listen_address.address or self._listen_attr

    @listen.setter
    def listen(self, address: str | None) -> None:
        # libvirt rejects a listen attribute that disagrees with the <listen> element,
        # so both spellings are always written together.
        self._listen_attr = address
        if address is None:
            self._listen_address = None
        else:
            self._listen_address.address = address


class CharDevice(XMLObject):
    """Fields shared by <serial> and <console>."""

    type = Attr("./@type")  # pty, file, unix, tcp
    source_path = Attr("./source/@path")
    target_type = Attr("./target/@type")  # isa-serial / serial, virtio
    target_port = Attr("./target/@port", int)


class Serial(CharDevice):
    tag = "serial"


class Console(CharDevice):
    tag = "console"


GUEST_AGENT = "org.qemu.guest_agent.0"  # the virtio-serial port name qemu-guest-agent opens in the guest


class Channel(XMLObject):
    """A host-guest channel: the QEMU guest agent's is `Channel.guest_agent()` (libvirt picks its socket path)."""

    tag = "channel"
    type = Attr("./@type")  # unix, pty, spicevmc, qemu-vdagent
    source_path = Attr("./source/@path")
    target_type = Attr("./target/@type")  # virtio, guestfwd
    target_name = Attr("./target/@name")
    target_state = Attr("./target/@state")  # connected, disconnected: only in a running VM's live XML

    @classmethod
    def guest_agent(cls) -> Channel:
        return cls.new(type="unix", target_type="virtio", target_name=GUEST_AGENT)


class BootDevice(XMLObject):
    tag = "boot"
    dev = Attr("./@dev")  # hd, cdrom, network, fd


class OS(XMLObject):
    tag = "os"
    firmware = Attr("./@firmware")  # efi, bios: let libvirt pick the loader
    type = Text("./type")  # hvm
    arch = Attr("./type/@arch")
    machine = Attr("./type/@machine")
    loader = Text("./loader")
    loader_readonly = Attr("./loader/@readonly", YES_NO)
    loader_type = Attr("./loader/@type")  # rom, pflash
    nvram = Text("./nvram")
    boots = Children(BootDevice, "./boot")
    bootmenu = Attr("./bootmenu/@enable", YES_NO)

    @property
    def boot_devices(self) -> list[str]:
        return [boot.dev for boot in self.boots if boot.dev]

    @boot_devices.setter
    def boot_devices(self, devices: list[str]) -> None:
        self.boots = [BootDevice.new(dev=dev) for dev in devices]


class Features(XMLObject):
    tag = "features"
    acpi = Flag("./acpi")
    apic = Flag("./apic")
    pae = Flag("./pae")


class Domain(XMLObject):
    tag = "domain"
    type = Attr("./@type")  # kvm, qemu
    id = Attr("./@id", int)  # only while running
    name = Text("./name")
    uuid = Text("./uuid")
    title = Text("./title")
    description = Text("./description")
    memory = Size("./memory", unit="KiB")
    current_memory = Size("./currentMemory", unit="KiB")
    vcpus = Text("./vcpu", int)
    current_vcpus = Attr("./vcpu/@current", int)
    os = Child(OS, "./os")
    features = Child(Features, "./features")
    cpu_mode = Attr("./cpu/@mode")  # host-passthrough, host-model, custom
    cpu_migratable = Attr("./cpu/@migratable", ON_OFF)  # only valid with host-passthrough
    on_poweroff = Text("./on_poweroff")
    on_reboot = Text("./on_reboot")
    on_crash = Text("./on_crash")
    emulator = Text("./devices/emulator")
    disks = Children(Disk, "./devices/disk")
    interfaces = Children(Interface, "./devices/interface")
    graphics = Children(Graphics, "./devices/graphics")
    serials = Children(Serial, "./devices/serial")
    consoles = Children(Console, "./devices/console")
    channels = Children(Channel, "./devices/channel")

    @property
    def guest_agent(self) -> Channel | None:
        """The QEMU guest agent's channel, if the VM has one."""
        return next((c for c in self.channels if c.target_type == "virtio" and c.target_name == GUEST_AGENT), None)

    def free_target_dev(self, prefix: str = "vd", taken: Iterable[str | None] = ()) -> str:
        """First unused disk target name with this prefix: vda, vdb, ... vdz, vdaa, ...

        `taken` adds names used elsewhere (a running VM's live disks next to its saved ones)."""
        used = {disk.target_dev for disk in self.disks} | set(taken)
        letters = string.ascii_lowercase
        for index in range(len(letters) * (len(letters) + 1)):
            suffix = letters[index] if index < 26 else letters[index // 26 - 1] + letters[index % 26]
            if prefix + suffix not in used:
                return prefix + suffix
        raise BadValue(gettext_noop("no free {prefix}* disk target left"), prefix=prefix)


class SnapshotDisk(XMLObject):
    tag = "disk"
    name = Attr("./@name")  # the disk's target, e.g. vda
    snapshot = Attr("./@snapshot")  # internal, external, no


class DomainSnapshot(XMLObject):
    """<domainsnapshot>: what libvirt reports of one snapshot, and the few fields a new one names."""

    tag = "domainsnapshot"
    name = Text("./name")
    description = Text("./description")
    state = Text("./state")  # the VM's state when it was taken: running, shutoff, ...
    parent = Text("./parent/name")
    creation_time = Text("./creationTime", int)  # seconds since the epoch
    memory = Attr("./memory/@snapshot")  # internal, external, no
    disks = Children(SnapshotDisk, "./disks/disk")
