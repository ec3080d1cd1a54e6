"""libvirt's change events of one connection, as one small record type.

The daemon pushes these over the connection we already hold (one registration call per kind at
open), so knowing that a VM started, a device left or a pool stopped costs no polling. Callbacks
run in libvirt's event-loop thread: listeners must return quickly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

log = logging.getLogger(__name__)

# Topics, also used to name what a shared read depends on.
DOMAIN = "domain"
POOL = "pool"
NETWORK = "network"
CONNECTION = "connection"

LIFECYCLE_WORDS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}


@dataclass(frozen=True)
class HostEvent:
    topic: str  # DOMAIN, POOL, NETWORK or CONNECTION
    what: str  # "started", "reboot", "device-removed", "job-completed", "closed"...
    uuid: str = ""  # of the domain, pool or network


Listener = Callable[[HostEvent], None]


def register(conn: libvirt.virConnect, emit: Listener) -> list[tuple[str, int]]:
    """Subscribe `conn` to the events the panel follows; returns what to deregister later.
    A driver without an event kind is simply not followed for it."""

    def domain(what: str) -> Callable[..., None]:
        def callback(_conn: libvirt.virConnect, dom: libvirt.virDomain, *_rest: Any) -> None:
            emit(HostEvent(DOMAIN, what, dom.UUIDString()))
        return callback

    def lifecycle(_conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, _detail: int,
                  _opaque: object) -> None:
        emit(HostEvent(DOMAIN, LIFECYCLE_WORDS.get(event, "changed"), dom.UUIDString()))

    def pool(_conn: libvirt.virConnect, found: libvirt.virStoragePool, *_rest: Any) -> None:
        emit(HostEvent(POOL, "changed", found.UUIDString()))

    def network(_conn: libvirt.virConnect, found: libvirt.virNetwork, *_rest: Any) -> None:
        emit(HostEvent(NETWORK, "changed", found.UUIDString()))

    wanted: list[tuple[str, int, Callable[..., None]]] = [
        ("domain", libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle),
        ("domain", libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, domain("reboot")),
        ("domain", libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, domain("device-added")),
        ("domain", libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, domain("device-removed")),
        ("domain", libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, domain("job-completed")),
        ("pool", libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, pool),
        ("network", libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE, network),
    ]
    registered: list[tuple[str, int]] = []
    for kind, event_id, callback in wanted:
        try:
            if kind == "domain":
                handle = conn.domainEventRegisterAny(None, event_id, callback, None)
            elif kind == "pool":
                handle = conn.storagePoolEventRegisterAny(None, event_id, callback, None)
            else:
                handle = conn.networkEventRegisterAny(None, event_id, callback, None)
        except libvirt.libvirtError as exc:
            log.debug("events of kind %s/%s not available: %s", kind, event_id, exc)
            continue
        registered.append((kind, handle))
    return registered


def deregister(conn: libvirt.virConnect, registered: list[tuple[str, int]]) -> None:
    for kind, handle in registered:
        try:
            if kind == "domain":
                conn.domainEventDeregisterAny(handle)
            elif kind == "pool":
                conn.storagePoolEventDeregisterAny(handle)
            else:
                conn.networkEventDeregisterAny(handle)
        except libvirt.libvirtError:
            pass
