"""The raw lower bound: what the same links cost with a connection already open and two bulk calls."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import libvirt

# The stat groups an instance list needs (state, CPU time, memory, vCPUs): the same as virt/domains.py asks for.
LIST_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
              | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU)
CALLS = 2


def _fetch(conn: libvirt.virConnect) -> int:
    domains = conn.listAllDomains(0)
    conn.getAllDomainStats(LIST_STATS, 0)
    return len(domains)


def measure(ports: list[int], rounds: int = 5) -> tuple[float, int]:
    """Median ms of one listAllDomains + one getAllDomainStats on every link at once; also the domain count.

    All links are asked concurrently, as a fleet page would, so several links to the one lab
    daemon include its contention."""
    conns = [libvirt.open(f"qemu+tcp://127.0.0.1:{port}/system") for port in ports]
    try:
        with ThreadPoolExecutor(max_workers=len(conns)) as pool:
            domains = max(pool.map(_fetch, conns))  # warm-up, not timed
            samples = []
            for _ in range(rounds):
                started = time.perf_counter()
                list(pool.map(_fetch, conns))
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        for conn in conns:
            conn.close()
    return statistics.median(samples), domains
