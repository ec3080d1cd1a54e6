"""The bridge between Host rows and the process-wide libvirt connection registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import libvirt
from django.conf import settings
from django.utils.translation import gettext as _

from hosts import machine
from hosts.models import Host
from virt.connections import HostConnection, HostStatus, Registry
from virt.errors import HostBusy, Said, Unreachable, VirtError, host_words, said_as
from virt.locks import VMLocks
from virt.reads import Read
from virt.ssh import SshIdentity, write_known_hosts
from webkvm import redis_store
from webkvm.i18n import said
from webkvm.shared_locks import RedisVMLocks

T = TypeVar("T")

registry = Registry(open_timeout=settings.WEBKVM_OPEN_TIMEOUT, call_timeout=settings.WEBKVM_CALL_TIMEOUT,
                    slots=settings.WEBKVM_HOST_SLOTS, fresh_for=settings.WEBKVM_READ_FRESH_MS / 1000)


def connection(host: Host) -> HostConnection:
    return registry.host(str(host.pk), host.spec())


def _checked_connection(host: Host) -> HostConnection:
    try:
        return connection(host)
    except ValueError as exc:  # a stored value that no longer validates
        raise said_as(VirtError, exc if isinstance(exc, Said) else str(exc)) from None


def _observed(host: Host, conn: HostConnection) -> None:
    """After a call: which machine the connection reached (hosts/machine.py); a comparison in memory
    unless it is new."""
    if conn.host_uuid and (conn.host_uuid != host.hypervisor_uuid or host.unconfirmed_uuid):
        machine.observe(host, conn.host_uuid)


def call(host: Host, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
    conn = _checked_connection(host)
    try:
        return conn.call(fn, timeout)
    finally:
        _observed(host, conn)


def _vm_locks() -> VMLocks | RedisVMLocks:
    """Per-VM locks in Redis when the panel's processes share one (WEBKVM_REDIS_URL), else in this process."""
    shared = redis_store.client()
    return RedisVMLocks(shared) if shared is not None else VMLocks()


vm_locks = _vm_locks()


def change(host: Host, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
    """call() for something that changes the host: what is kept of its shared reads is dropped after it,
    so the next page shows the change even before libvirt's event arrives (and for changes, such as a
    new volume, that raise no event)."""
    conn = _checked_connection(host)
    try:
        return conn.call(fn, timeout)
    finally:
        conn.reads.invalidate()
        _observed(host, conn)


def read(host: Host, shared: Read[T], timeout: float | None = None) -> T:
    """A read shared by every request asking `host` for it at the same time and kept for a moment
    (virt/shared_reads.py). Filter per user after it, never by asking libvirt per user."""
    conn = _checked_connection(host)
    try:
        return conn.read(shared.key, shared.topic, shared.fn, timeout)
    finally:
        _observed(host, conn)


def call_locked(host: Host, vm_uuid: str, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
    """Like call(), serialised per VM: a second operation on the same VM raises Busy at once.

    The lock is released when fn really ends (or is dropped from the queue unrun), even if that is
    after this request's deadline. Reads kept for the host are dropped afterwards: the change shows
    on the next page even before libvirt's event arrives."""
    key = str(host.pk)
    vm_locks.acquire(key, vm_uuid)
    began: list[bool] = []
    try:
        conn = _checked_connection(host)

        def changing(libvirt_conn: libvirt.virConnect) -> T:
            began.append(True)
            try:
                return fn(libvirt_conn)
            finally:
                conn.reads.invalidate()  # before the caller hears the answer
                vm_locks.release(key, vm_uuid)

        pending = conn.submit(changing, timeout)
    except BaseException:
        vm_locks.release(key, vm_uuid)
        raise

    def settled(done: Future[T]) -> None:
        # Taken out of the queue unrun, or failed before fn (the connection could not be opened):
        # changing() never ran to release the lock.
        if not began:
            vm_locks.release(key, vm_uuid)

    pending.add_done_callback(settled)
    return conn.wait(pending)


def status(host: Host) -> HostStatus:
    return registry.status(str(host.pk))


@dataclass
class Outcome(Generic[T]):
    """The result of one host's call: a value, or the words for that host's part of the page."""

    host: Host
    value: T | None = None
    error: str = ""
    unreachable: bool = False
    busy: bool = False
    exception: BaseException | None = None  # what failed: its words are said in the reader's language

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def words(self) -> str:
        """"busy: 3 calls queued", "unreachable: connection refused" or "error: ...", in the active language
        (the outcome may come from another thread: it is worded when read)."""
        if isinstance(self.exception, VirtError):
            return said(host_words(self.exception))
        reason = said(self.exception) if self.exception is not None else self.error
        if self.busy:
            return reason
        if self.unreachable:
            return _("unreachable: %(reason)s") % {"reason": reason}
        return _("error: %(reason)s") % {"reason": reason}

    @classmethod
    def failed(cls, host: Host, exc: BaseException) -> Outcome[T]:
        return cls(host, error=str(exc), unreachable=isinstance(exc, Unreachable), busy=isinstance(exc, HostBusy),
                   exception=exc)


def call_many(hosts: Iterable[Host], fn: Callable[[libvirt.virConnect], T],
              timeout: float | None = None) -> list[Outcome[T]]:
    """Run `fn` on every host at once; each host gets its own deadline, so a dead one delays nobody."""
    return each(hosts, lambda host: call(host, fn, timeout))


def read_many(hosts: Iterable[Host], shared: Read[T], timeout: float | None = None) -> list[Outcome[T]]:
    """read() on every host at once, each within its own deadline."""
    return each(hosts, lambda host: read(host, shared, timeout))


def each(hosts: Iterable[Host], ask: Callable[[Host], T]) -> list[Outcome[T]]:
    """ask(host) for every host in threads of its own, so hosts are asked at once and a host that is
    down or busy shapes only its own outcome."""
    chosen = list(hosts)

    def one(host: Host) -> Outcome[T]:
        try:
            return Outcome(host, value=ask(host))
        except VirtError as exc:
            return Outcome.failed(host, exc)

    if len(chosen) <= 1:
        return [one(host) for host in chosen]
    with ThreadPoolExecutor(max_workers=min(len(chosen), 32), thread_name_prefix="ask-hosts") as pool:
        return list(pool.map(one, chosen))


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
