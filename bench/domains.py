"""The bench's VMs on the lab libvirtd: tiny diskless definitions named lab-bench-NNNN (labctl down removes lab-*)."""

from __future__ import annotations

import time

import libvirt

from tests.lab import domain_xml, remove_domain

PREFIX = "lab-bench-"
RUNNING = 3  # a few running VMs, so pages show live figures too
MEMORY_MIB = 32
SETTLE_S = 3.0  # freshly started guests keep both CPUs (and libvirtd) busy for a moment: skews the first timings


def bench_name(index: int) -> str:
    return f"{PREFIX}{index:04d}"


def bench_domains(conn: libvirt.virConnect) -> list[libvirt.virDomain]:
    return [dom for dom in conn.listAllDomains(0) if dom.name().startswith(PREFIX)]


def ensure_defined(conn: libvirt.virConnect, count: int, domain_type: str) -> float:
    """Define lab-bench-0001..count (keeping those already there) and start the first few; returns seconds."""
    began = time.monotonic()
    booted = False
    existing = {dom.name() for dom in bench_domains(conn)}
    for index in range(1, count + 1):
        name = bench_name(index)
        if name not in existing:
            conn.defineXML(domain_xml(name, domain_type, MEMORY_MIB, graphics=False))
    for index in range(1, min(RUNNING, count) + 1):
        dom = conn.lookupByName(bench_name(index))
        if not dom.isActive():
            dom.create()
            booted = True
    if booted:
        time.sleep(SETTLE_S)
    return time.monotonic() - began


def remove_all(conn: libvirt.virConnect) -> int:
    """Destroy and undefine every lab-bench-* domain (also leftovers of an interrupted run)."""
    return sum(remove_domain(dom) for dom in bench_domains(conn))
