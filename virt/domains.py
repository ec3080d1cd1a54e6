"""Listing every VM of a host in a constant number of libvirt calls, and reading one VM in detail.

The fleet view must not loop over domains: one getAllDomainStats plus two filtered
listAllDomains answer name, UUID, state, vCPUs, memory, CPU time, autostart and
managed-save for every VM of a host, whatever their number (3 round trips).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import libvirt

from virt.errors import Term, gettext_noop
from virt.xml.domain import Domain

# libvirt's state numbers, in the words the panel shows.
STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: Term(gettext_noop("no state")),
    libvirt.VIR_DOMAIN_RUNNING: Term(gettext_noop("running")),
    libvirt.VIR_DOMAIN_BLOCKED: Term(gettext_noop("running")),  # blocked on I/O: still running for a sysadmin
    libvirt.VIR_DOMAIN_PAUSED: Term(gettext_noop("paused")),
    libvirt.VIR_DOMAIN_SHUTDOWN: Term(gettext_noop("shutting down")),
    libvirt.VIR_DOMAIN_SHUTOFF: Term(gettext_noop("shut off")),
    libvirt.VIR_DOMAIN_CRASHED: Term(gettext_noop("crashed")),
    libvirt.VIR_DOMAIN_PMSUSPENDED: Term(gettext_noop("suspended (guest)")),
}
STATES = tuple(Term(state) for state in ("running", "paused", "shutting down", "shut off", "crashed",
                                         "suspended (guest)", "no state"))
LIST_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
              | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU)


def state_name(code: int) -> str:
    return STATE_NAMES.get(code, STATE_NAMES[libvirt.VIR_DOMAIN_NOSTATE])


@dataclass(frozen=True)
class DomainRow:
    """One line of the fleet view."""

    uuid: str
    name: str
    state: str
    vcpus: int
    memory_kib: int
    max_memory_kib: int
    cpu_time_ns: int | None
    autostart: bool
    managed_save: bool
    cpu_percent: float | None = None
    state_since: float | None = None  # epoch seconds (instances/state_since.py)
    state_since_at_least: bool = False  # state_since is when the panel first saw this state: it began earlier

    @property
    def active(self) -> bool:
        return self.state in ("running", "paused", "shutting down", "suspended (guest)")

    def as_dict(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid, "name": self.name, "state": self.state, "vcpus": self.vcpus,
            "memory_kib": self.memory_kib, "max_memory_kib": self.max_memory_kib,
            "cpu_percent": self.cpu_percent, "autostart": self.autostart,
            "managed_save": self.managed_save, "state_since": self.state_since,
            "state_since_at_least": self.state_since_at_least,
        }


def _uuids(conn: libvirt.virConnect, flags: int) -> set[str]:
    return {dom.UUIDString() for dom in conn.listAllDomains(flags)}


def list_domains(conn: libvirt.virConnect) -> list[DomainRow]:
    """Every VM of the host, in three round trips (name and UUID travel with each domain object)."""
    stats = conn.getAllDomainStats(LIST_STATS, 0)
    autostart = _uuids(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
    saved = _uuids(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)
    rows = []
    for dom, values in stats:
        state = int(values.get("state.state", libvirt.VIR_DOMAIN_NOSTATE))
        if "balloon.maximum" in values:
            max_mem = int(values["balloon.maximum"])
            mem = int(values.get("balloon.current", max_mem))
            vcpus = int(values.get("vcpu.current", values.get("vcpu.maximum", 0)))
            cpu = values.get("cpu.time")
        else:
            # libvirt's test driver reports only the state in bulk; it runs in-process,
            # so these per-domain calls cost no round trip. Real drivers never get here.
            _state, max_mem, mem, vcpus, cpu = dom.info()
        active = state not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_NOSTATE)
        uuid = dom.UUIDString()
        rows.append(DomainRow(
            uuid=uuid, name=dom.name(), state=state_name(state), vcpus=int(vcpus),
            memory_kib=int(mem), max_memory_kib=int(max_mem),
            cpu_time_ns=int(cpu) if active and cpu is not None else None,
            autostart=uuid in autostart, managed_save=uuid in saved,
        ))
    return rows


@dataclass
class _Seen:
    state: str
    cpu_time_ns: int | None
    at: float


@dataclass
class ActivityMeter:
    """CPU usage from two samples of cumulative CPU time.

    Kept per process: the first sample of a VM has no CPU figure yet. (When a state began is shared
    by every process: the panel's store, instances/state_since.py.)
    """

    _seen: dict[tuple[str, str], _Seen] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def annotate(self, host_key: str, rows: list[DomainRow], now: float | None = None) -> list[DomainRow]:
        now = time.time() if now is None else now
        out = []
        with self._lock:
            for row in rows:
                key = (host_key, row.uuid)
                prev = self._seen.get(key)
                percent = None
                if prev and row.cpu_time_ns is not None and prev.cpu_time_ns is not None and now > prev.at:
                    used = (row.cpu_time_ns - prev.cpu_time_ns) / ((now - prev.at) * 1e9 * max(1, row.vcpus))
                    percent = round(min(100.0, max(0.0, used * 100)), 1)
                # Samples closer than half a second give a noisy figure: keep the older one.
                if prev is None or now - prev.at >= 0.5 or prev.state != row.state:
                    self._seen[key] = _Seen(row.state, row.cpu_time_ns, now)
                out.append(_replace(row, cpu_percent=percent))
            # Forget VMs this host no longer has (deleted, renamed away): the meter must not grow forever.
            current = {row.uuid for row in rows}
            for key in [k for k in self._seen if k[0] == host_key and k[1] not in current]:
                del self._seen[key]
        return out

    def forget_host(self, host_key: str) -> None:
        with self._lock:
            for key in [k for k in self._seen if k[0] == host_key]:
                del self._seen[key]


def _replace(row: DomainRow, **changes: Any) -> DomainRow:
    values = {name: getattr(row, name) for name in DomainRow.__dataclass_fields__}
    values.update(changes)
    return DomainRow(**values)


# ---- one VM in detail ------------------------------------------------------------------


@dataclass(frozen=True)
class DiskInfo:
    target: str
    device: str
    bus: str
    source: str
    format: str
    capacity: int | None
    allocation: int | None
    readonly: bool


@dataclass(frozen=True)
class NicInfo:
    mac: str
    kind: str
    source: str
    model: str
    addresses: list[str]


@dataclass(frozen=True)
class GraphicsInfo:
    type: str
    listen: str
    port: int | None
    autoport: bool


@dataclass(frozen=True)
class DomainDetail:
    uuid: str
    name: str
    title: str
    description: str
    state: str
    state_code: int
    persistent: bool
    autostart: bool
    managed_save: bool
    vcpus: int
    max_vcpus: int
    memory_kib: int
    max_memory_kib: int
    os_type: str
    arch: str
    machine: str
    firmware: str
    domain_type: str
    disks: list[DiskInfo]
    nics: list[NicInfo]
    graphics: list[GraphicsInfo]
    serials: list[str]
    consoles: list[str]
    cpu_time_ns: int

    @property
    def active(self) -> bool:
        return self.state_code not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)


def _optional(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except libvirt.libvirtError:
        return None


# Where libvirt learns a VM's addresses, in the order the panel asks: dnsmasq's DHCP leases, the QEMU guest
# agent (a static address, too), the host's ARP table.
LEASE, AGENT, ARP = (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
                     libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP)
# How long the page waits for the guest agent. libvirt's own agent timeout blocks by default (only its
# guest-sync gives up, after 5 s), and agentSetResponseTimeout would change it for every agent command of the
# VM, for every client, until the VM stops; so the question runs in a thread of its own that the page stops
# waiting for, and a VM gets no second question while one is unanswered.
AGENT_WAIT_SECONDS = 1.0
_agent_asking: set[tuple[int, str]] = set()
_agent_lock = threading.Lock()
_AddressAnswer = dict[str, dict[str, Any]]  # libvirt's answer: {guest's name: {"hwaddr": ..., "addrs": [...]}}


def _agent_ready(xml: Domain) -> bool:
    """The VM has the guest agent's channel, and (when libvirt says so) the agent has opened it.

    A running qemu VM's live XML says state='connected' or 'disconnected'; an agent that is not connected
    would fail at once anyway, so it is not asked."""
    channel = xml.guest_agent
    return channel is not None and channel.target_state in (None, "connected")


def _ask_agent(dom: libvirt.virDomain, wait: float = AGENT_WAIT_SECONDS) -> _AddressAnswer | None:
    """The guest agent's addresses, or None when it fails or has not answered within `wait` seconds."""
    key = (id(dom.connect()), dom.UUIDString())  # both kept in the objects: no round trip
    with _agent_lock:
        if key in _agent_asking:
            return None  # the last question hangs still: the agent is stuck or the guest is very busy
        _agent_asking.add(key)
    answer: list[_AddressAnswer | None] = []
    done = threading.Event()

    def ask() -> None:
        try:
            answer.append(_optional(dom.interfaceAddresses, AGENT))
        finally:
            with _agent_lock:
                _agent_asking.discard(key)
            done.set()

    threading.Thread(target=ask, name=f"guest-agent-{key[1]}", daemon=True).start()
    return answer[0] if done.wait(wait) and answer else None


def fetch_addresses(dom: libvirt.virDomain, agent: bool) -> list[_AddressAnswer]:
    """libvirt's answers, in order: DHCP leases, the guest agent (only if `agent`), the ARP table."""
    answers = [_optional(dom.interfaceAddresses, LEASE)]
    if agent:
        answers.append(_ask_agent(dom))
    answers.append(_optional(dom.interfaceAddresses, ARP))
    return [answer for answer in answers if answer]


def _shown(addr: str) -> bool:
    """Loopback and link-local addresses (which the guest agent reports) say nothing about reaching the VM."""
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def merge_addresses(answers: Iterable[_AddressAnswer]) -> dict[str, list[str]]:
    """Addresses ("192.0.2.5/24") per MAC (lower case), first answer first, each address once per MAC: as the
    first source said it (the ARP table knows no prefix and says /0; a lease or the agent knows it)."""
    found: dict[str, dict[str, str]] = {}
    for answer in answers:
        for iface in answer.values():
            mac = (iface.get("hwaddr") or "").lower()
            for addr in iface.get("addrs") or []:
                ip = str(addr.get("addr", ""))
                if _shown(ip):
                    found.setdefault(mac, {}).setdefault(ip, f"{ip}/{addr.get('prefix', 0)}")
    return {mac: list(texts.values()) for mac, texts in found.items()}


def _addresses(dom: libvirt.virDomain, agent: bool = False) -> dict[str, list[str]]:
    """IP addresses per MAC from the DHCP leases, the guest agent (if `agent`), then the host's ARP table."""
    return merge_addresses(fetch_addresses(dom, agent))


def _firmware(xml: Domain) -> str:
    os = xml.os
    if os.firmware == "efi" or (os.loader_type == "pflash") or "OVMF" in (os.loader or ""):
        return "UEFI"
    return "BIOS"


def domain_detail(dom: libvirt.virDomain) -> DomainDetail:
    """Everything the detail page shows: one XMLDesc plus a few cheap calls per VM."""
    xml = Domain.from_xml(dom.XMLDesc(0))
    state_code, _reason = dom.state()
    state_code = int(state_code)
    info = dom.info()
    running = state_code not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)
    agent = state_code == libvirt.VIR_DOMAIN_RUNNING and _agent_ready(xml)
    addresses = _addresses(dom, agent) if running else {}
    disks = []
    for disk in xml.disks:
        size = _optional(dom.blockInfo, disk.target_dev) if disk.target_dev and disk.source_path else None
        disks.append(DiskInfo(
            target=disk.target_dev or "", device=disk.device or "disk", bus=disk.target_bus or "",
            source=disk.source_path or "(empty)", format=disk.driver_type or "",
            capacity=int(size[0]) if size else None, allocation=int(size[1]) if size else None,
            readonly=bool(disk.readonly),
        ))
    nics = [NicInfo(
        mac=nic.mac or "", kind=nic.type or "", source=nic.source_network or nic.source_bridge or "",
        model=nic.model or "", addresses=addresses.get((nic.mac or "").lower(), []),
    ) for nic in xml.interfaces]
    graphics = [GraphicsInfo(type=g.type or "", listen=g.listen or "", port=g.port if g.port and g.port > 0 else None,
                             autoport=bool(g.autoport)) for g in xml.graphics]
    return DomainDetail(
        uuid=dom.UUIDString(), name=dom.name(), title=xml.title or "", description=xml.description or "",
        state=state_name(state_code), state_code=state_code,
        persistent=bool(dom.isPersistent()), autostart=bool(_optional(dom.autostart)),
        managed_save=bool(_optional(dom.hasManagedSaveImage, 0)),
        vcpus=int(info[3]), max_vcpus=int(xml.vcpus or info[3]),
        memory_kib=int(info[2]), max_memory_kib=int(info[1]),
        os_type=xml.os.type or "", arch=xml.os.arch or "", machine=xml.os.machine or "",
        firmware=_firmware(xml), domain_type=xml.type or "",
        disks=disks, nics=nics, graphics=graphics,
        serials=[f"serial{s.target_port or 0} ({s.type})" for s in xml.serials],
        consoles=[f"console ({c.type}, {c.target_type or 'serial'})" for c in xml.consoles],
        cpu_time_ns=int(info[4]),
    )


@dataclass(frozen=True)
class DomainSample:
    """Cumulative counters at one instant; the page turns two samples into rates."""

    time: float
    state: str
    vcpus: int
    cpu_time_ns: int | None
    disk_read_bytes: int | None
    disk_write_bytes: int | None
    net_rx_bytes: int | None
    net_tx_bytes: int | None
    memory_kib: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DomainSample.__dataclass_fields__}


def _sum(values: dict[str, Any], prefix: str, suffix: str) -> int | None:
    count = values.get(f"{prefix}.count")
    if count is None:
        return None
    return sum(int(values.get(f"{prefix}.{i}.{suffix}", 0)) for i in range(int(count)))


def domain_sample(dom: libvirt.virDomain) -> DomainSample:
    """One bulk-stats call for this VM (CPU, disks, NICs, memory)."""
    flags = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BLOCK
             | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU)
    stats = dom.connect().domainListGetStats([dom], flags, 0)
    values: dict[str, Any] = stats[0][1] if stats else {}
    state = int(values.get("state.state", libvirt.VIR_DOMAIN_NOSTATE))
    if "balloon.current" in values:
        memory, vcpus, cpu = int(values["balloon.current"]), int(values.get("vcpu.current", 0)), values.get("cpu.time")
    else:  # the test driver reports only the state in bulk
        state, _max, memory, vcpus, cpu = dom.info()
    active = state not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)
    return DomainSample(
        time=time.time(), state=state_name(int(state)), vcpus=int(vcpus),
        cpu_time_ns=int(cpu) if active and cpu is not None else None,
        disk_read_bytes=_sum(values, "block", "rd.bytes"), disk_write_bytes=_sum(values, "block", "wr.bytes"),
        net_rx_bytes=_sum(values, "net", "rx.bytes"), net_tx_bytes=_sum(values, "net", "tx.bytes"),
        memory_kib=int(memory),
    )
