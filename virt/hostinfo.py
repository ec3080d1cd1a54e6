"""Facts and usage figures of one hypervisor host, in a fixed number of libvirt calls."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import libvirt
from lxml import etree

from virt.xml.parser import parse_xml


def _version(number: int) -> str:
    return f"{number // 1000000}.{number // 1000 % 1000}.{number % 1000}"


def _optional(call: Any, *args: Any) -> Any:
    """Some drivers lack a call (test driver) or a fact (no DMI): unknown, never an error."""
    try:
        return call(*args)
    except libvirt.libvirtError:
        return None


@dataclass(frozen=True)
class Memory:
    """A host's memory in bytes, read one way for the overview, the graph and every JSON answer.

    Free is what the host can still give to VMs: the kernel's free memory plus buffers and page cache where
    libvirt reports them (virNodeGetMemoryStats), else its free figure alone; used is the rest."""

    total: int
    free: int | None

    @property
    def used(self) -> int | None:
        return None if self.free is None else self.total - self.free

    @property
    def percent_used(self) -> float | None:
        """Tenths of a percent, halves up (as static/js/format.js rounds): 28.6."""
        used = self.used
        return None if used is None or not self.total else math.floor(1000 * used / self.total + 0.5) / 10


def memory(conn: libvirt.virConnect, info: list[Any] | None = None) -> Memory:
    stats = _optional(conn.getMemoryStats, libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
    if stats and stats.get("total"):
        total = int(stats["total"]) * 1024  # KiB
        free = sum(int(stats.get(key, 0)) for key in ("free", "buffers", "cached")) * 1024
    else:  # drivers without memory statistics (the test driver)
        total = int((info or conn.getInfo())[1]) << 20  # MiB
        free = _optional(conn.getFreeMemory)
    return Memory(total, None if free is None else max(0, min(total, int(free))))


@dataclass(frozen=True)
class HostSummary:
    hostname: str
    hypervisor: str
    hypervisor_version: str
    libvirt_version: str
    arch: str
    cpu_model: str
    cpus: int
    mhz: int
    numa_nodes: int
    sockets: int
    cores: int
    threads: int
    memory_bytes: int  # total, free and used: one reading of memory() (the graph's samples read it the same way)
    free_memory_bytes: int | None
    used_memory_bytes: int | None
    memory_percent: float | None
    domains_running: int
    domains_total: int
    pools: int
    networks: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def host_summary(conn: libvirt.virConnect) -> HostSummary:
    info = conn.getInfo()
    caps: etree._Element = parse_xml(conn.getCapabilities())
    running = conn.numOfDomains()
    hv_version = _optional(conn.getVersion)
    mem = memory(conn, info)
    return HostSummary(
        hostname=_optional(conn.getHostname) or "unknown",
        hypervisor=conn.getType(),
        hypervisor_version=_version(hv_version) if hv_version else "unknown",
        libvirt_version=_version(conn.getLibVersion()),
        arch=str(caps.findtext("./host/cpu/arch") or info[0]),
        cpu_model=str(caps.findtext("./host/cpu/model") or info[0]),
        cpus=int(info[2]),
        mhz=int(info[3]),
        numa_nodes=int(info[4]),
        sockets=int(info[5]),
        cores=int(info[6]),
        threads=int(info[7]),
        memory_bytes=mem.total,
        free_memory_bytes=mem.free,
        used_memory_bytes=mem.used,
        memory_percent=mem.percent_used,
        domains_running=int(running),
        domains_total=int(running) + int(conn.numOfDefinedDomains()),
        pools=int(conn.numOfStoragePools()) + int(conn.numOfDefinedStoragePools()),
        networks=int(conn.numOfNetworks()) + int(conn.numOfDefinedNetworks()),
    )


@dataclass(frozen=True)
class UsageSample:
    """Cumulative CPU times (ns) and memory (bytes, as HostSummary has it) at one instant; two samples give a rate."""

    time: float
    cpu_busy_ns: int | None
    cpu_total_ns: int | None
    memory_total: int
    memory_used: int | None
    memory_free: int | None
    memory_percent: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def usage_sample(conn: libvirt.virConnect) -> UsageSample:
    cpu = _optional(conn.getCPUStats, libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
    busy = total = None
    if cpu:
        busy = int(cpu.get("kernel", 0)) + int(cpu.get("user", 0))
        total = busy + int(cpu.get("idle", 0)) + int(cpu.get("iowait", 0))
    mem = memory(conn)
    return UsageSample(time.time(), busy, total, mem.total, mem.used, mem.free, mem.percent_used)
