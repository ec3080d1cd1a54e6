"""One libvirt connection per host per process, with deadlines, keepalive and reconnect.

Why every call goes through here: an open can hang on a dead ssh host and a call can
hang inside a frozen daemon. Calls therefore run in a small per-host thread pool and
each caller waits at most its own deadline; a host that fails makes later calls fail at
once instead of piling up, while a host that is only busy queues them. libvirt's event
loop runs in a daemon thread so keepalive, close callbacks and change events work; a
closed connection marks the host down and is reopened in the background with backoff.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import libvirt

from virt.errors import (
    HostBusy,
    Text,
    Unreachable,
    VirtError,
    explain_connect_failure,
    gettext_noop,
    libvirt_message,
    said_as,
    translate,
)
from virt.events import CONNECTION, DOMAIN, HostEvent, Listener
from virt.events import deregister as deregister_events
from virt.events import register as register_events
from virt.migrate_checks import host_uuid
from virt.shared_reads import SharedReads
from virt.uri import ConnectionSpec, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")
Call = Callable[[libvirt.virConnect], T]

KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
MAX_BACKOFF = 15.0
DEFAULT_SLOTS = 4
LONG_CALL_SECONDS = 10.0  # calls allowed longer than this run in the long lane, not in a slot
LONG_LANE_THREADS = 16
PROBE_SECONDS = 0.5  # how long a caller whose call is past its deadline waits for the probe's answer
SHARER_CHECK_SECONDS = 0.1  # a reader waiting for another's read looks this often whether the host failed
HOST = "host"  # topic of reads about the host as a whole (its summary counts VMs: domain events drop it)


class HostState(enum.StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


NOT_CONTACTED = Text(gettext_noop("not contacted yet"))


@dataclass(frozen=True)
class HostStatus:
    state: HostState
    reason: str = ""
    since: float = 0.0

    @property
    def reachable(self) -> bool:
        return self.state == HostState.UP


_loop_lock = threading.Lock()
_loop_started = False


def _ignore_libvirt_error(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we raise and log them ourselves."""


def start_event_loop() -> None:
    """Register libvirt's default event loop once per process and run it in a daemon thread."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def open_connection(spec: ConnectionSpec) -> libvirt.virConnect:
    """Open a connection for `spec` (blocking; callers bound it with a deadline)."""
    uri = spec.uri()
    if spec.transport == Transport.TCP and spec.sasl_username:
        def credentials(creds: list[list[Any]], _opaque: object) -> int:
            for cred in creds:
                if cred[0] == libvirt.VIR_CRED_AUTHNAME:
                    cred[4] = spec.sasl_username
                elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                    cred[4] = spec.sasl_password
                else:
                    return -1
            return 0

        auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], credentials, None]
        return libvirt.openAuth(uri, auth, 0)
    return libvirt.open(uri)


def _close_quietly(conn: libvirt.virConnect, events: list[tuple[str, int]]) -> None:
    deregister_events(conn, events)
    try:
        conn.unregisterCloseCallback()
        conn.close()
    except libvirt.libvirtError:
        pass


@dataclass(eq=False)
class Ticket:
    """One call's place in its host's queue: its own deadline, and when a thread took it up."""

    timeout: float
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    cancelled: bool = False

    def overdue(self, now: float) -> float:
        """Seconds past its own deadline while running (0: not running or still within it)."""
        if self.started is None:
            return 0.0
        return max(0.0, now - self.started - self.timeout)


@dataclass(frozen=True)
class Pending(Generic[T]):
    future: Future[T]
    ticket: Ticket

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        self.future.add_done_callback(fn)


class HostConnection:
    """The connection to one host, its state, and the threads its calls run in.

    Calls run in `slots` threads; more callers wait in a queue, each within its own deadline, and a
    caller whose deadline passes while its call is still queued hears "busy", never "unreachable".
    The host is unreachable only when it fails: the open fails or outlasts its deadline, keepalive
    or the close callback says the link is dead, or a running call is past its own deadline while
    nothing else the host was asked since has been answered (a probe asks). Until then later
    callers fail fast. Calls allowed more than LONG_CALL_SECONDS (copies, migrations, big changes)
    run in a lane of their own so they never hold a slot the pages need.
    """

    def __init__(self, name: str, spec: ConnectionSpec, *, open_timeout: float, call_timeout: float,
                 slots: int = DEFAULT_SLOTS, fresh_for: float = 1.0) -> None:
        self.name = name
        self.spec = spec
        self.open_timeout = open_timeout
        self.call_timeout = call_timeout
        self.slots = slots
        self.reads = SharedReads(fresh_for)
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"virt-{name}")
        self._long_lane = ThreadPoolExecutor(max_workers=LONG_LANE_THREADS, thread_name_prefix=f"virt-long-{name}")
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None
        self._events: list[tuple[str, int]] = []
        self._listeners: list[Listener] = []
        self._status = HostStatus(HostState.UNKNOWN, NOT_CONTACTED, time.time())
        self._queued = 0
        self._running: set[Ticket] = set()
        self._last_answer = 0.0  # monotonic time the host last answered anything
        self._probing: threading.Event | None = None  # set when the running probe is answered
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False
        self._reconnect_timer: threading.Timer | None = None
        # The hypervisor's host UUID as the last open found it (None: unknown): which machine answers.
        self.host_uuid: str | None = None

    @property
    def status(self) -> HostStatus:
        return self._status

    @property
    def queued(self) -> int:
        return self._queued

    def submit(self, fn: Call[T], timeout: float | None = None) -> Pending[T]:
        """Queue `fn(conn)` with its deadline; raises Unreachable at once when the host is known to fail."""
        budget = self.call_timeout if timeout is None else timeout
        if self._conn is None:
            budget = max(budget, self.open_timeout)  # the call includes opening the connection
        ticket = Ticket(budget)
        with self._lock:
            if self._closed:
                raise Unreachable(gettext_noop("{host}: connection closed"), host=self.name)
            stuck = self._stuck_reason(time.monotonic())
            if stuck:
                raise said_as(Unreachable, stuck)
            if self._conn is None and time.monotonic() < self._retry_at:
                raise said_as(Unreachable, self._status.reason or Text(gettext_noop("not connected")))
            self._queued += 1
        lane = self._long_lane if budget > LONG_CALL_SECONDS else self._executor
        try:
            return Pending(lane.submit(self._run, fn, ticket), ticket)
        except RuntimeError:
            with self._lock:
                self._queued -= 1
            raise Unreachable(gettext_noop("{host}: connection closed"), host=self.name) from None

    def wait(self, pending: Pending[T]) -> T:
        """The call's answer, waiting at most until its deadline."""
        ticket = pending.ticket
        remaining = ticket.submitted + ticket.timeout - time.monotonic()
        try:
            return pending.future.result(max(0.0, remaining))
        except FutureTimeout:
            pass
        with self._lock:
            if ticket.started is None and not ticket.cancelled and pending.future.cancel():
                ticket.cancelled = True  # never taken up: nothing of it will run
                self._queued -= 1
        started = ticket.started
        if started is not None and not ticket.cancelled:
            # Running: it fails the host only once past its own deadline, counted from when it began.
            # Give a call taken up late a little more time rather than call a busy host unreachable.
            until_overdue = started + ticket.timeout - time.monotonic()
            if until_overdue > 0:
                try:
                    return pending.future.result(min(until_overdue, 0.25 * ticket.timeout) + 0.01)
                except FutureTimeout:
                    pass
            if ticket.overdue(time.monotonic()) > 0:
                # Past its own deadline. Unreachable, unless the host answers a probe at once: then this
                # call is only slow (a VM's job lock, a loaded daemon) and the host is busy, not down.
                if self._probe().wait(PROBE_SECONDS):
                    raise HostBusy(gettext_noop("busy: the host answers, but not this call within {seconds} s"),
                                   seconds=f"{ticket.timeout:g}") from None
                reason = Text(gettext_noop("no answer within {seconds} s"), seconds=f"{ticket.timeout:g}")
                self._set_status(HostState.DEGRADED, reason)
                raise said_as(Unreachable, reason) from None
        with self._lock:
            queued = self._queued
            stuck = self._stuck_reason(time.monotonic())
        if stuck:
            raise said_as(Unreachable, stuck) from None
        if started is None or ticket.cancelled:
            raise HostBusy(gettext_noop("busy: {count} calls queued"), count=queued + 1) from None
        raise HostBusy(gettext_noop("busy: {count} calls queued, this one taken up late"), count=queued) from None

    def call(self, fn: Call[T], timeout: float | None = None) -> T:
        return self.wait(self.submit(fn, timeout))

    def read(self, key: str, topic: str, fn: Call[T], timeout: float | None = None,
             fresh_for: float | None = None) -> T:
        """A read shared by every caller asking for `key` at the same time, and kept `fresh_for` seconds
        (the connection's default when None) unless an event of `topic` says the host changed."""
        holder: list[Pending[T]] = []

        def start() -> Future[T]:
            pending = self.submit(fn, timeout)
            holder.append(pending)
            return pending.future

        shared, mine = self.reads.join(key, topic, start, fresh_for)
        future = cast("Future[T]", shared)
        if mine:
            return self.wait(holder[0])
        if future.done():
            return future.result()
        # Another caller owns this read and its deadline; wait as long as a caller of our own would, but not
        # a moment longer once the host is known to fail (the shared read may be the call that hangs).
        budget = self.call_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        while True:
            with self._lock:
                stuck = self._stuck_reason(time.monotonic())
            if stuck:
                raise said_as(Unreachable, stuck)
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostBusy(gettext_noop("busy: {count} calls queued"), count=self._queued)
            try:
                return future.result(min(left, SHARER_CHECK_SECONDS))
            except FutureTimeout:
                continue
            except CancelledError:
                raise HostBusy(gettext_noop("busy: {count} calls queued"), count=self._queued) from None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every change event of this host (from libvirt's event thread); returns
        the function that unsubscribes. Events are registered on every connection as it opens."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if self._reconnect_timer:
                self._reconnect_timer.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._long_lane.shutdown(wait=False, cancel_futures=True)
        if conn is not None:
            # Closing talks to the daemon, which may be frozen: never block the caller on it.
            events, self._events = self._events, []
            threading.Thread(target=_close_quietly, args=(conn, events), name=f"close-{self.name}",
                             daemon=True).start()

    # Called with self._lock held.
    def _stuck_reason(self, now: float) -> str:
        """Why the host counts as failing now ("" when it does not): a running call is past its own
        deadline and the host has answered nothing since that deadline."""
        for ticket in self._running:
            late = ticket.overdue(now)
            if late > 0 and self._last_answer < now - late:
                return Text(gettext_noop("not responding: no answer for {seconds} s"),
                            seconds=f"{now - (ticket.started or now):.1f}")
        return ""

    def _probe(self) -> threading.Event:
        """Ask the host one cheap question outside the queue: an answer proves a slow call is only slow.
        The event is set when the host answers (one probe at a time; a running one is shared)."""
        with self._lock:
            conn = self._conn
            if self._probing is not None or conn is None or self._closed:
                return self._probing or threading.Event()
            answered = self._probing = threading.Event()

        def probe() -> None:
            try:
                conn.getLibVersion()
            except libvirt.libvirtError:
                return
            finally:
                with self._lock:
                    self._probing = None
            self._answered()
            answered.set()

        threading.Thread(target=probe, name=f"probe-{self.name}", daemon=True).start()
        return answered

    def _answered(self) -> None:
        with self._lock:
            self._last_answer = time.monotonic()
            stuck = self._stuck_reason(self._last_answer)
        if not stuck:
            self._set_status(HostState.UP, "")

    # Runs in a worker thread.
    def _run(self, fn: Call[T], ticket: Ticket) -> T:
        with self._lock:
            self._queued -= 1
            ticket.started = time.monotonic()
            self._running.add(ticket)
        try:
            conn = self._connection()
            try:
                result = fn(conn)
            except libvirt.libvirtError as exc:
                error = translate(exc)
                if isinstance(error, Unreachable) or not self._alive(conn):
                    self._drop(conn, Text.of(error))
                else:
                    self._answered()  # an error is an answer: the host is there
                raise error from None
            self._answered()
            return result
        finally:
            with self._lock:
                self._running.discard(ticket)

    def _connection(self) -> libvirt.virConnect:
        with self._open_lock:
            conn = self._conn
            if conn is not None:
                return conn
            try:
                conn = open_connection(self.spec)
            except libvirt.libvirtError as exc:
                reason = explain_connect_failure(libvirt_message(exc))
                self._opened_failed(reason)
                raise said_as(Unreachable, reason) from None
            self._watch(conn)
            self.host_uuid = _identity(conn)
            with self._lock:
                self._conn = conn
                self._failures = 0
                self._retry_at = 0.0
            self._answered()
            log.info("connected to %s (%s)", self.name, self.spec.display_uri())
            return conn

    def _watch(self, conn: libvirt.virConnect) -> None:
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # in-process drivers (test://) have no keepalive
        try:
            conn.registerCloseCallback(self._on_close, None)
        except libvirt.libvirtError:
            pass
        self._events = register_events(conn, self._emit)

    def _emit(self, event: HostEvent) -> None:
        if event.topic != CONNECTION:
            self.reads.invalidate(event.topic)
            if event.topic == DOMAIN:
                self.reads.invalidate(HOST)  # the host's summary counts its VMs
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # one listener's bug must not stop libvirt's event thread
                log.exception("event listener of %s failed", self.name)

    @staticmethod
    def _alive(conn: libvirt.virConnect) -> bool:
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def _on_close(self, conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        words = {
            libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: Text(gettext_noop("connection error")),
            libvirt.VIR_CONNECT_CLOSE_REASON_EOF: Text(gettext_noop("connection closed by the host")),
            libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: Text(gettext_noop("keepalive timed out")),
        }.get(reason, Text(gettext_noop("connection closed")))
        self._drop(conn, words)

    def _drop(self, conn: libvirt.virConnect, reason: str) -> None:
        with self._lock:
            if self._conn is not conn:
                return
            self._conn = None
            self._retry_at = 0.0  # the first reconnect is immediate, later ones back off
        self.reads.invalidate()
        self._set_status(HostState.DOWN, reason)
        log.warning("lost connection to %s: %s", self.name, reason)
        self._emit(HostEvent(CONNECTION, "closed"))
        self._schedule_reconnect(0.5)

    def _opened_failed(self, reason: str) -> None:
        with self._lock:
            self._failures += 1
            backoff = min(MAX_BACKOFF, 2.0 ** (self._failures - 1))
            self._retry_at = time.monotonic() + backoff
        self._set_status(HostState.DOWN, reason)
        self._schedule_reconnect(backoff)

    def _schedule_reconnect(self, delay: float) -> None:
        with self._lock:
            if self._closed or (self._reconnect_timer and self._reconnect_timer.is_alive()):
                return
            timer = threading.Timer(delay, self._reconnect)
            timer.daemon = True
            self._reconnect_timer = timer
        timer.start()

    def _reconnect(self) -> None:
        with self._lock:
            self._reconnect_timer = None
        if self._closed or self._conn is not None:
            return
        try:
            self.call(lambda conn: conn.getLibVersion())
        except VirtError:
            pass  # _opened_failed has scheduled the next attempt

    def _set_status(self, state: HostState, reason: str) -> None:
        current = self._status
        if current.state != state or current.reason != reason:
            self._status = HostStatus(state, reason, time.time())


def _identity(conn: libvirt.virConnect) -> str | None:
    """The host UUID of the machine a new connection reached; a failure only leaves it unknown."""
    try:
        return host_uuid(conn)
    except Exception:  # an answer the panel cannot read must not fail the connection
        return None


class Registry:
    """Process-wide map from a host key to its HostConnection."""

    def __init__(self, *, open_timeout: float = 4.0, call_timeout: float = 3.0, slots: int = DEFAULT_SLOTS,
                 fresh_for: float = 1.0) -> None:
        self.open_timeout = open_timeout
        self.call_timeout = call_timeout
        self.slots = slots
        self.fresh_for = fresh_for
        self._hosts: dict[str, HostConnection] = {}
        self._lock = threading.Lock()

    def host(self, key: str, spec: ConnectionSpec) -> HostConnection:
        """The connection for `key`; a changed spec (or password) replaces the old connection."""
        with self._lock:
            current = self._hosts.get(key)
            if current is not None and current.spec == spec and current.spec.sasl_password == spec.sasl_password:
                return current
            if current is None:
                start_event_loop()
            fresh = HostConnection(key, spec, open_timeout=self.open_timeout, call_timeout=self.call_timeout,
                                   slots=self.slots, fresh_for=self.fresh_for)
            self._hosts[key] = fresh
        if current is not None:
            current.close()
        return fresh

    def status(self, key: str) -> HostStatus:
        with self._lock:
            current = self._hosts.get(key)
        return current.status if current else HostStatus(HostState.UNKNOWN, NOT_CONTACTED)

    def forget(self, key: str) -> None:
        with self._lock:
            current = self._hosts.pop(key, None)
        if current is not None:
            current.close()

    def close_all(self) -> None:
        with self._lock:
            hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            host.close()
