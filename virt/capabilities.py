"""What a host offers a new VM: the whitelist every choice of the create form comes from.

Read in a fixed number of libvirt calls (a few per storage pool), so the form opens fast
even on a remote host. Facts a driver cannot give (the test driver has no domain
capabilities, many hosts list no interfaces) fall back to safe defaults, never errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

import libvirt
from lxml import etree

from virt.xml.parser import parse_xml

ARCH = "x86_64"
BIOS, UEFI = "bios", "efi"
CPU_DEFAULT = "default"  # no <cpu> element: the hypervisor's own default model
FALLBACK_CPU_MODES = ("host-passthrough", "host-model", CPU_DEFAULT)
FALLBACK_MAX_VCPUS = 255
DOMAIN_TYPE_PREFERENCE = ("kvm", "qemu")
ISO_SUFFIX = ".iso"
COMMON_MACHINES = ("pc", "q35")
# Machine types that cannot run a general operating system (no PCI, no firmware to boot an installer, or a
# process of another machine): offered only when asked for. QEMU marks its experimental ones "x-".
SPECIAL_MACHINES = ("isapc", "microvm", "none")


@dataclass(frozen=True)
class PoolOffer:
    name: str
    active: bool
    available_bytes: int
    volumes: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostOffer:
    """A snapshot of one host's choices; values outside it must be refused."""

    domain_type: str
    machines: tuple[str, ...]
    firmwares: tuple[str, ...]
    cpu_modes: tuple[str, ...]
    max_vcpus: int
    memory_mib: int
    pools: tuple[PoolOffer, ...]
    networks: tuple[str, ...]
    bridges: tuple[str, ...]
    domain_names: frozenset[str] = field(default_factory=frozenset)
    arch: str = ARCH
    # Every domain type the host offers (kvm, qemu), preferred first; `domain_type` is the first.
    domain_types: tuple[str, ...] = ()
    # Machine types for special purposes (see SPECIAL_MACHINES), kept apart from `machines`.
    special_machines: tuple[str, ...] = ()
    # (alias, the versioned type it stands for): ("pc", "pc-i440fx-7.2"), ("q35", "pc-q35-7.2").
    machine_aliases: tuple[tuple[str, str], ...] = ()
    default_machine: str = ""  # what the hypervisor uses when a definition names none
    # Where CD-ROM images come from; None: every pool (`pools`), as for admins.
    iso_pools: tuple[PoolOffer, ...] | None = None

    @property
    def current_machines(self) -> tuple[str, ...]:
        """pc and q35 and the versions they stand for today: what a new VM should use."""
        names = [name for pair in self.machine_aliases for name in pair if pair[0] in COMMON_MACHINES]
        return tuple(m for m in dict.fromkeys(names) if m in self.machines)

    def pool(self, name: str) -> PoolOffer | None:
        return next((pool for pool in self.pools if pool.name == name), None)

    @property
    def active_pools(self) -> tuple[PoolOffer, ...]:
        return tuple(pool for pool in self.pools if pool.active)

    def volumes(self) -> list[tuple[str, str]]:
        """(pool, volume) of every volume in an active pool."""
        return [(pool.name, vol) for pool in self.active_pools for vol in pool.volumes]

    def isos(self) -> list[tuple[str, str]]:
        pools = self.active_pools if self.iso_pools is None else tuple(p for p in self.iso_pools if p.active)
        return [(pool.name, vol) for pool in pools for vol in pool.volumes if vol.lower().endswith(ISO_SUFFIX)]

    def only(self, *, pools: Collection[str], iso_pools: Collection[str], networks: Collection[str],
             bridges: Collection[str]) -> HostOffer:
        """The part of this offer named (what a user who is not an admin may choose from): new volumes
        only in `pools`, CD-ROM images only from `iso_pools`, NICs only on `networks` and `bridges`."""
        return replace(self, pools=tuple(p for p in self.pools if p.name in pools),
                       iso_pools=tuple(p for p in self.pools if p.name in iso_pools),
                       networks=tuple(n for n in self.networks if n in networks),
                       bridges=tuple(b for b in self.bridges if b in bridges))


def _optional_xml(call: Callable[..., Any], *args: object) -> etree._Element | None:
    """An XML fact some drivers do not offer: None instead of an error."""
    try:
        return parse_xml(call(*args))
    except libvirt.libvirtError:
        return None


def is_special_machine(name: str) -> bool:
    return name in SPECIAL_MACHINES or name.startswith("x-")


def _machine_order(name: str) -> tuple[bool, str, list[int]]:
    """The aliases people know first, then each family's versions newest first."""
    family = re.sub(r"-[\d.]+$", "", name)
    return name not in COMMON_MACHINES, family, [-int(n) for n in re.findall(r"\d+", name[len(family):])]


@dataclass(frozen=True)
class Machines:
    general: tuple[str, ...]
    special: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...]


def _machines(arch: etree._Element) -> Machines:
    names, aliases = [], []
    for machine in arch.iter("machine"):
        name = (machine.text or "").strip()
        if not name:
            continue
        names.append(name)
        if machine.get("canonical"):
            aliases.append((name, str(machine.get("canonical"))))
    unique = sorted(dict.fromkeys(names), key=_machine_order)
    return Machines(tuple(m for m in unique if not is_special_machine(m)),
                    tuple(m for m in unique if is_special_machine(m)), tuple(dict.fromkeys(aliases)))


def _guest_arch(caps: etree._Element) -> tuple[list[str], Machines]:
    """Domain types and machine types of the x86_64 hvm guest.

    The test driver only describes an i686 guest of type 'test' (yet accepts x86_64
    definitions), so without an x86_64 guest the first hvm guest's types are used.
    """
    guests = [g for g in caps.findall("guest") if g.findtext("os_type") == "hvm"]
    chosen = next((g for g in guests if g.find(f"arch[@name='{ARCH}']") is not None), None)
    if chosen is None and guests:
        chosen = guests[0]
    none = Machines((), (), ())
    if chosen is None:
        return [], none
    arch = chosen.find("arch")
    assert arch is not None
    domain_types = [str(d.get("type")) for d in arch.findall("domain") if d.get("type")]
    if chosen.find(f"arch[@name='{ARCH}']") is None:
        return domain_types, none  # machine names of another arch would be refused for x86_64
    return domain_types, _machines(arch)


def pick_domain_type(offered: list[str]) -> str:
    return domain_type_order(offered)[0]


def domain_type_order(offered: list[str]) -> tuple[str, ...]:
    """The host's domain types, preferred first (kvm, then qemu's full emulation)."""
    known = [kind for kind in DOMAIN_TYPE_PREFERENCE if kind in offered]
    return tuple(known + [kind for kind in offered if kind not in known]) or ("qemu",)


def _domcaps_facts(domcaps: etree._Element | None) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    """Firmwares, CPU modes and the vCPU limit from domain capabilities (with fallbacks)."""
    if domcaps is None:
        return (BIOS,), FALLBACK_CPU_MODES, FALLBACK_MAX_VCPUS
    firmware_values = {v.text for v in domcaps.findall("os/enum[@name='firmware']/value")}
    firmwares = (BIOS, UEFI) if UEFI in firmware_values else (BIOS,)
    modes = [str(m.get("name")) for m in domcaps.findall("cpu/mode")
             if m.get("supported") == "yes" and m.get("name") in ("host-passthrough", "host-model", "maximum")]
    cpu_modes = (*modes, CPU_DEFAULT) if modes else FALLBACK_CPU_MODES
    vcpu = domcaps.find("vcpu")
    raw_max = vcpu.get("max") if vcpu is not None else None
    max_vcpus = int(raw_max) if raw_max and raw_max.isdigit() else FALLBACK_MAX_VCPUS
    return firmwares, cpu_modes, max_vcpus


def _pools(conn: libvirt.virConnect) -> tuple[PoolOffer, ...]:
    offers = []
    for pool in conn.listAllStoragePools(0):
        active = bool(pool.isActive())
        available = int(pool.info()[3]) if active else 0
        volumes = tuple(sorted(vol.name() for vol in pool.listAllVolumes(0))) if active else ()
        offers.append(PoolOffer(pool.name(), active, available, volumes))
    return tuple(sorted(offers, key=lambda p: p.name))


def _bridges(conn: libvirt.virConnect, taken: Collection[str]) -> tuple[str, ...]:
    """Host bridges, without those of libvirt's networks (`taken`: a NIC joins such a network by its name);
    drivers without interface support simply have none."""
    try:
        interfaces = conn.listAllInterfaces(0)
    except libvirt.libvirtError:
        return ()
    names = []
    for iface in interfaces:
        try:
            if parse_xml(iface.XMLDesc(0)).get("type") == "bridge" and iface.name() not in taken:
                names.append(iface.name())
        except libvirt.libvirtError:
            continue  # an interface that vanished meanwhile
    return tuple(sorted(names))


def _networks(conn: libvirt.virConnect) -> tuple[tuple[str, ...], set[str]]:
    """Network names, "default" first and then by name (libvirt keeps no creation time), and their bridges."""
    named, bridges = [], set()
    for net in conn.listAllNetworks(0):
        try:
            bridge = parse_xml(net.XMLDesc(0)).find("bridge")
            named.append(net.name())
        except libvirt.libvirtError:
            continue  # a network that vanished meanwhile
        if bridge is not None and bridge.get("name"):
            bridges.add(str(bridge.get("name")))
    return tuple(sorted(named, key=lambda n: (n != "default", n))), bridges


def host_offer(conn: libvirt.virConnect) -> HostOffer:
    domain_types, machines = _guest_arch(parse_xml(conn.getCapabilities()))
    types = domain_type_order(domain_types)
    domcaps = _optional_xml(conn.getDomainCapabilities, None, ARCH, None, types[0], 0)
    firmwares, cpu_modes, max_vcpus = _domcaps_facts(domcaps)
    default_machine = (domcaps.findtext("machine") or "").strip() if domcaps is not None else ""
    networks, network_bridges = _networks(conn)
    return HostOffer(
        domain_type=types[0],
        domain_types=types,
        machines=machines.general,
        special_machines=machines.special,
        machine_aliases=machines.aliases,
        default_machine=default_machine if default_machine in machines.general else "",
        firmwares=firmwares,
        cpu_modes=cpu_modes,
        max_vcpus=max_vcpus,
        memory_mib=int(conn.getInfo()[1]),
        pools=_pools(conn),
        networks=networks,
        bridges=_bridges(conn, network_bridges),
        domain_names=frozenset(dom.name() for dom in conn.listAllDomains(0)),
    )
