"""Facts and usage figures of one hypervisor host, in a fixed number of libvirt calls."""

from __future__ import annotations

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
    memory_bytes: int
    free_memory_bytes: int | None
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
    free = _optional(conn.getFreeMemory)
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
        memory_bytes=int(info[1]) * 1024 * 1024,
        free_memory_bytes=int(free) if free is not None else None,
        domains_running=int(running),
        domains_total=int(running) + int(conn.numOfDefinedDomains()),
        pools=int(conn.numOfStoragePools()) + int(conn.numOfDefinedStoragePools()),
        networks=int(conn.numOfNetworks()) + int(conn.numOfDefinedNetworks()),
    )


@dataclass(frozen=True)
class UsageSample:
    """Cumulative CPU times (ns) and memory (bytes) at one instant; two samples give a rate."""

    time: float
    cpu_busy_ns: int | None
    cpu_total_ns: int | None
    memory_total: int
    memory_used: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def usage_sample(conn: libvirt.virConnect) -> UsageSample:
    cpu = _optional(conn.getCPUStats, libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
    busy = total = None
    if cpu:
        busy = int(cpu.get("kernel", 0)) + int(cpu.get("user", 0))
        total = busy + int(cpu.get("idle", 0)) + int(cpu.get("iowait", 0))
    memory = _optional(conn.getMemoryStats, libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
    if memory:
        total_mem = int(memory["total"]) * 1024
        available = int(memory.get("free", 0)) + int(memory.get("buffers", 0)) + int(memory.get("cached", 0))
        used = total_mem - available * 1024
    else:
        total_mem = int(conn.getInfo()[1]) * 1024 * 1024
        free = _optional(conn.getFreeMemory)
        used = total_mem - int(free) if free is not None else 0
    return UsageSample(time.time(), busy, total, total_mem, max(0, used))
