"""vCPUs and memory of one VM, current and maximum.

The persistent definition always gets the new values (VIR_DOMAIN_AFFECT_CONFIG). On a running VM
the current values are also asked for live: vCPUs are hot-plugged or unplugged up to the maximum
the VM booted with, memory is handed to the guest's balloon driver. Maximums can only change at the
next boot, and so can anything the hypervisor or the guest refuses live: the report says which parts
wait, with libvirt's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import libvirt

from virt.create import MAX_VCPUS, MIN_MEMORY_MIB
from virt.errors import InvalidInput, InvalidState, Term, Text, gettext_noop, joined, translate
from virt.xml.domain import Domain
from virt.xml.parser import parse_xml

FALLBACK_MAX_VCPUS = 255


@dataclass(frozen=True)
class Sizing:
    vcpus: int
    max_vcpus: int
    memory_kib: int
    max_memory_kib: int

    @classmethod
    def of(cls, dom: Domain) -> Sizing:
        max_vcpus = dom.vcpus or 1
        max_memory = dom.memory or 0
        return cls(vcpus=dom.current_vcpus or max_vcpus, max_vcpus=max_vcpus,
                   memory_kib=dom.current_memory or max_memory, max_memory_kib=max_memory)

    def problems(self, host_max_vcpus: int, host_memory_mib: int) -> dict[str, str]:
        """Field name -> why the value cannot be used on this host."""
        found: dict[str, str] = {}
        if not 1 <= self.max_vcpus <= host_max_vcpus:
            found["max_vcpus"] = Text(gettext_noop("Between 1 and {count} on this host."), count=host_max_vcpus)
        if not 1 <= self.vcpus <= self.max_vcpus:
            found["vcpus"] = Text(gettext_noop("Between 1 and the maximum."))
        if not MIN_MEMORY_MIB * 1024 <= self.max_memory_kib <= host_memory_mib * 1024:
            found["max_memory_mib"] = Text(gettext_noop("Between {low} and {high} MiB on this host."),
                                           low=MIN_MEMORY_MIB,
                                           high=host_memory_mib)
        if not MIN_MEMORY_MIB * 1024 <= self.memory_kib <= self.max_memory_kib:
            found["memory_mib"] = Text(gettext_noop("Between {low} MiB and the maximum."), low=MIN_MEMORY_MIB)
        return found


@dataclass(frozen=True)
class ResizeState:
    name: str
    config: Sizing
    live: Sizing | None  # None: not running
    host_max_vcpus: int
    host_memory_mib: int
    persistent: bool

    @property
    def pending(self) -> list[str]:
        """What the running VM uses that differs from its saved definition (applies at the next boot)."""
        if self.live is None:
            return []
        names = {"vcpus": Text(gettext_noop("vCPUs")), "max_vcpus": Text(gettext_noop("maximum vCPUs")),
                 "memory_kib": Text(gettext_noop("memory")), "max_memory_kib": Text(gettext_noop("maximum memory"))}
        return [label for attr, label in names.items() if getattr(self.live, attr) != getattr(self.config, attr)]


@dataclass
class ResizeReport:
    live: list[str] = field(default_factory=list)
    next_boot: list[str] = field(default_factory=list)
    running: bool = False
    host_said: list[str] = field(default_factory=list)  # libvirt's words for what the running VM refused


def host_limits(conn: libvirt.virConnect, dom: Domain) -> tuple[int, int]:
    """(most vCPUs a VM of this machine type may have, host memory in MiB)."""
    max_vcpus = 0
    try:
        caps = parse_xml(conn.getDomainCapabilities(dom.emulator, dom.os.arch, dom.os.machine, dom.type, 0))
        raw = caps.find("vcpu")
        max_vcpus = int(raw.get("max", "0")) if raw is not None and raw.get("max", "").isdigit() else 0
    except libvirt.libvirtError:
        pass  # drivers without domain capabilities (the test driver)
    if not max_vcpus:
        try:
            max_vcpus = int(conn.getMaxVcpus(dom.type))
        except libvirt.libvirtError:
            max_vcpus = FALLBACK_MAX_VCPUS
    return min(max_vcpus, MAX_VCPUS), int(conn.getInfo()[1])


def read_state(dom: libvirt.virDomain) -> ResizeState:
    persistent = bool(dom.isPersistent())
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if persistent else 0
    config = Domain.from_xml(dom.XMLDesc(flags))
    live = Sizing.of(Domain.from_xml(dom.XMLDesc(0))) if dom.isActive() else None
    max_vcpus, memory_mib = host_limits(dom.connect(), config)
    return ResizeState(str(dom.name()), Sizing.of(config), live, max_vcpus, memory_mib, persistent)


def _config_steps(dom: libvirt.virDomain, old: Sizing, new: Sizing) -> None:
    """Write the definition; raise a maximum before the current value, lower it after."""
    config = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    steps: list[tuple[bool, Callable[[], object]]] = [
        (new.max_vcpus != old.max_vcpus,
         lambda: dom.setVcpusFlags(new.max_vcpus, config | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)),
        (new.vcpus != old.vcpus, lambda: dom.setVcpusFlags(new.vcpus, config)),
    ]
    if new.max_vcpus < old.max_vcpus:
        steps.reverse()
    memory: list[tuple[bool, Callable[[], object]]] = [
        (new.max_memory_kib != old.max_memory_kib,
         lambda: dom.setMemoryFlags(new.max_memory_kib, config | libvirt.VIR_DOMAIN_MEM_MAXIMUM)),
        (new.memory_kib != old.memory_kib, lambda: dom.setMemoryFlags(new.memory_kib, config)),
    ]
    if new.max_memory_kib < old.max_memory_kib:
        memory.reverse()
    for needed, step in steps + memory:
        if needed:
            step()


def _live_step(label: str, wanted: int, now: int, ceiling: int, apply: Callable[[], object],
               report: ResizeReport) -> None:
    if wanted == now:
        return
    if wanted > ceiling:
        report.next_boot.append(Text(gettext_noop("{what} (above the maximum the VM started with)"), what=label))
        return
    try:
        apply()
        report.live.append(label)
    except libvirt.libvirtError as exc:
        report.next_boot.append(Text(gettext_noop("{what} (the running VM did not take it)"), what=label))
        report.host_said.append(Text(gettext_noop("{what}: {error}"), what=label, error=translate(exc)))


def resize(dom: libvirt.virDomain, new: Sizing) -> ResizeReport:
    """Apply `new` to the definition and, where possible, to the running VM."""
    state = read_state(dom)
    problems = new.problems(state.host_max_vcpus, state.host_memory_mib)
    if problems:
        raise InvalidInput("{problems}", problems=joined(list(problems.values())))
    if not state.persistent:
        raise InvalidState(gettext_noop("{name} is transient: it has no saved definition to change."), name=state.name)
    _config_steps(dom, state.config, new)
    report = ResizeReport(running=state.live is not None)
    live = state.live
    if live is None:
        return report
    _live_step(Term(gettext_noop("vCPUs")), new.vcpus, live.vcpus, live.max_vcpus,
               lambda: dom.setVcpusFlags(new.vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE), report)
    # The balloon driver in the guest decides when (and whether) the guest follows.
    _live_step(Term(gettext_noop("memory (handed to the guest's balloon driver)")), new.memory_kib, live.memory_kib,
               live.max_memory_kib,
               lambda: dom.setMemoryFlags(new.memory_kib, libvirt.VIR_DOMAIN_AFFECT_LIVE), report)
    if new.max_vcpus != live.max_vcpus:
        report.next_boot.append(Text(gettext_noop("maximum vCPUs")))
    if new.max_memory_kib != live.max_memory_kib:
        report.next_boot.append(Text(gettext_noop("maximum memory")))
    return report
