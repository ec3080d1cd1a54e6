"""The bridge between Host rows and the process-wide libvirt connection registry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import libvirt
from django.conf import settings

from hosts.models import Host
from virt.connections import HostConnection, HostStatus, Registry
from virt.errors import Unreachable, VirtError
from virt.locks import VMLocks
from virt.ssh import SshIdentity, write_known_hosts

T = TypeVar("T")

registry = Registry(open_timeout=settings.WEBKVM_OPEN_TIMEOUT, call_timeout=settings.WEBKVM_CALL_TIMEOUT)


def connection(host: Host) -> HostConnection:
    return registry.host(str(host.pk), host.spec())


def _checked_connection(host: Host) -> HostConnection:
    try:
        return connection(host)
    except ValueError as exc:  # a stored value that no longer validates
        raise VirtError(str(exc)) from None


def call(host: Host, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
    return _checked_connection(host).call(fn, timeout)


vm_locks = VMLocks()


def call_locked(host: Host, vm_uuid: str, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
    """Like call(), serialised per VM: a second operation on the same VM raises Busy at once.

    The lock is released when fn really ends, even if that is after this request's deadline."""
    key = str(host.pk)
    vm_locks.acquire(key, vm_uuid)
    try:
        conn = _checked_connection(host)
        future = conn.submit(vm_locks.releasing(key, vm_uuid, fn))
    except BaseException:
        vm_locks.release(key, vm_uuid)
        raise
    return conn.wait(future, timeout)


def status(host: Host) -> HostStatus:
    return registry.status(str(host.pk))


@dataclass
class Outcome(Generic[T]):
    """The result of one host's call: a value, or the error to show in that host's part of the page."""

    host: Host
    value: T | None = None
    error: str = ""
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return not self.error


def call_many(hosts: Iterable[Host], fn: Callable[[libvirt.virConnect], T],
              timeout: float | None = None) -> list[Outcome[T]]:
    """Run `fn` on every host at once; each host gets its own deadline, so a dead one delays nobody."""
    started: list[tuple[Host, HostConnection | None, Future[T] | None, Outcome[T] | None]] = []
    for host in hosts:
        try:
            conn: HostConnection = connection(host)
            started.append((host, conn, conn.submit(fn), None))
        except Unreachable as exc:
            started.append((host, None, None, Outcome(host, error=str(exc), unreachable=True)))
        except (VirtError, ValueError) as exc:
            started.append((host, None, None, Outcome(host, error=str(exc))))
    begin = time.monotonic()
    outcomes: list[Outcome[T]] = []
    for host, maybe_conn, future, early in started:
        if early is not None:
            outcomes.append(early)
            continue
        assert maybe_conn is not None and future is not None
        conn = maybe_conn
        budget = (conn.call_timeout if timeout is None else timeout) - (time.monotonic() - begin)
        try:
            outcomes.append(Outcome(host, value=conn.wait(future, max(0.05, budget))))
        except Unreachable as exc:
            outcomes.append(Outcome(host, error=str(exc), unreachable=True))
        except VirtError as exc:
            outcomes.append(Outcome(host, error=str(exc)))
    return outcomes


def identity() -> SshIdentity:
    return SshIdentity(settings.WEBKVM_SSH_DIR)


def sync_known_hosts() -> None:
    """Rewrite the panel's known_hosts from the keys pinned in the database."""
    ident = identity()
    ident.ensure()
    entries: list[tuple[str, int | None, Any]] = [
        (host.hostname, host.port, host.pinned_keys)
        for host in Host.objects.filter(transport="ssh").exclude(ssh_host_keys="")
    ]
    write_known_hosts(ident.known_hosts, entries)
