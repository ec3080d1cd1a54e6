"""What a host offers a new VM: the whitelist every choice of the create form comes from.

Read in a fixed number of libvirt calls (a few per storage pool), so the form opens fast
even on a remote host. Facts a driver cannot give (the test driver has no domain
capabilities, many hosts list no interfaces) fall back to safe defaults, never errors.
"""

from __future__ import annotations

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
    # Where CD-ROM images come from; None: every pool (`pools`), as for admins.
    iso_pools: tuple[PoolOffer, ...] | None = None

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


def _guest_arch(caps: etree._Element) -> tuple[list[str], list[str]]:
    """Domain types and machine types of the x86_64 hvm guest.

    The test driver only describes an i686 guest of type 'test' (yet accepts x86_64
    definitions), so without an x86_64 guest the first hvm guest's types are used.
    """
    guests = [g for g in caps.findall("guest") if g.findtext("os_type") == "hvm"]
    chosen = next((g for g in guests if g.find(f"arch[@name='{ARCH}']") is not None), None)
    if chosen is None and guests:
        chosen = guests[0]
    if chosen is None:
        return [], []
    arch = chosen.find("arch")
    assert arch is not None
    domain_types = [str(d.get("type")) for d in arch.findall("domain") if d.get("type")]
    machines = [m.text.strip() for m in arch.iter("machine") if m.text and m.text.strip()]
    if chosen.find(f"arch[@name='{ARCH}']") is None:
        machines = []  # machine names of another arch would be refused for x86_64
    # The short aliases people know come first; the versioned names follow in order.
    return domain_types, sorted(dict.fromkeys(machines), key=lambda m: (m not in COMMON_MACHINES, m))


def pick_domain_type(offered: list[str]) -> str:
    for kind in DOMAIN_TYPE_PREFERENCE:
        if kind in offered:
            return kind
    return offered[0] if offered else "qemu"


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


def _bridges(conn: libvirt.virConnect) -> tuple[str, ...]:
    """Host bridges; drivers without interface support simply have none."""
    try:
        interfaces = conn.listAllInterfaces(0)
    except libvirt.libvirtError:
        return ()
    names = []
    for iface in interfaces:
        try:
            if parse_xml(iface.XMLDesc(0)).get("type") == "bridge":
                names.append(iface.name())
        except libvirt.libvirtError:
            continue  # an interface that vanished meanwhile
    return tuple(sorted(names))


def host_offer(conn: libvirt.virConnect) -> HostOffer:
    domain_types, machines = _guest_arch(parse_xml(conn.getCapabilities()))
    domain_type = pick_domain_type(domain_types)
    domcaps = _optional_xml(conn.getDomainCapabilities, None, ARCH, None, domain_type, 0)
    firmwares, cpu_modes, max_vcpus = _domcaps_facts(domcaps)
    return HostOffer(
        domain_type=domain_type,
        machines=tuple(machines),
        firmwares=firmwares,
        cpu_modes=cpu_modes,
        max_vcpus=max_vcpus,
        memory_mib=int(conn.getInfo()[1]),
        pools=_pools(conn),
        networks=tuple(sorted(net.name() for net in conn.listAllNetworks(0))),
        bridges=_bridges(conn),
        domain_names=frozenset(dom.name() for dom in conn.listAllDomains(0)),
    )
