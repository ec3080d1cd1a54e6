"""Listing every VM of a host in a constant number of libvirt calls, and reading one VM in detail.

The fleet view must not loop over domains: one getAllDomainStats plus two filtered
listAllDomains answer name, UUID, state, vCPUs, memory, CPU time, autostart and
managed-save for every VM of a host, whatever their number (3 round trips).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import libvirt

from virt.xml.domain import Domain

# libvirt's state numbers, in the words the panel shows.
STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",  # blocked on I/O: still running for a sysadmin
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended (guest)",
}
STATES = ("running", "paused", "shutting down", "shut off", "crashed", "suspended (guest)", "no state")
LIST_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
              | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU)


def state_name(code: int) -> str:
    return STATE_NAMES.get(code, "no state")


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


def _addresses(dom: libvirt.virDomain) -> dict[str, list[str]]:
    """IP addresses per MAC from the DHCP leases, then the host's ARP table (no guest agent needed)."""
    found: dict[str, list[str]] = {}
    for source in (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP):
        for iface in (_optional(dom.interfaceAddresses, source) or {}).values():
            mac = (iface.get("hwaddr") or "").lower()
            for addr in iface.get("addrs") or []:
                text = f"{addr['addr']}/{addr['prefix']}"
                if text not in found.setdefault(mac, []):
                    found[mac].append(text)
    return found


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
    addresses = _addresses(dom) if running else {}
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
