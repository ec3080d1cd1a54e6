"""The reads of a whole host that pages share (virt/shared_reads.py): what to ask, under which key,
and which kind of change event makes a kept answer stale."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import libvirt

from virt.connections import HOST
from virt.domains import DomainSample, domain_sample
from virt.events import DOMAIN, NETWORK, POOL
from virt.hostinfo import HostSummary, UsageSample, host_summary, usage_sample
from virt.networks import NetworkInfo, list_networks
from virt.storage import PoolSummary, list_pools

T = TypeVar("T")


@dataclass(frozen=True)
class Read(Generic[T]):
    key: str
    topic: str
    fn: Callable[[libvirt.virConnect], T]


HOST_SUMMARY: Read[HostSummary] = Read("host-summary", HOST, host_summary)
HOST_USAGE: Read[UsageSample] = Read("host-usage", HOST, usage_sample)
POOLS: Read[list[PoolSummary]] = Read("pools", POOL, list_pools)
NETWORKS: Read[list[NetworkInfo]] = Read("networks", NETWORK, list_networks)


def vm_sample(uuid: str) -> Read[DomainSample]:
    """One VM's usage counters, shared by everybody with its page open (each page polls them)."""
    return Read(f"vm-sample:{uuid.lower()}", DOMAIN, lambda conn: domain_sample(conn.lookupByUUIDString(uuid)))
