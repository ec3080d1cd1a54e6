"""One libvirt connection per host per process, with deadlines, keepalive and reconnect.

Why every call goes through here: an open can hang on a dead ssh host and a call can
hang inside a frozen daemon. Calls therefore run in a small per-host thread pool and
the caller waits at most its deadline; when every worker of a host is stuck, new calls
fail at once instead of piling up. libvirt's event loop runs in a daemon thread so
keepalive and close callbacks work; a closed connection marks the host down and is
reopened in the background with backoff.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import libvirt

from virt.errors import Unreachable, VirtError, explain_connect_failure, translate
from virt.uri import ConnectionSpec, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")
Call = Callable[[libvirt.virConnect], T]

KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
MAX_BACKOFF = 15.0


class HostState(enum.StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


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


def _close_quietly(conn: libvirt.virConnect) -> None:
    try:
        conn.unregisterCloseCallback()
        conn.close()
    except libvirt.libvirtError:
        pass


class HostConnection:
    """The connection to one host, its state, and the threads its calls run in."""

    def __init__(self, name: str, spec: ConnectionSpec, *, open_timeout: float, call_timeout: float,
                 max_in_flight: int = 4) -> None:
        self.name = name
        self.spec = spec
        self.open_timeout = open_timeout
        self.call_timeout = call_timeout
        self.max_in_flight = max_in_flight
        self._executor = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix=f"virt-{name}")
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None
        self._status = HostStatus(HostState.UNKNOWN, "not contacted yet", time.time())
        self._in_flight = 0
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False
        self._reconnect_timer: threading.Timer | None = None

    @property
    def status(self) -> HostStatus:
        return self._status

    def submit(self, fn: Call[T]) -> Future[T]:
        """Queue `fn(conn)`; raises Unreachable at once when the host is known to be unresponsive."""
        with self._lock:
            if self._closed:
                raise Unreachable(f"{self.name}: connection closed")
            if self._in_flight >= self.max_in_flight:
                raise Unreachable(f"not responding ({self._in_flight} calls still waiting): {self._status.reason}")
            if self._conn is None and time.monotonic() < self._retry_at:
                raise Unreachable(self._status.reason or "not connected")
            self._in_flight += 1
        try:
            return self._executor.submit(self._run, fn)
        except RuntimeError:
            with self._lock:
                self._in_flight -= 1
            raise Unreachable(f"{self.name}: connection closed") from None

    def wait(self, future: Future[T], timeout: float | None = None) -> T:
        """Wait for a submitted call, at most its deadline (plus the open deadline if not connected)."""
        deadline = self.call_timeout if timeout is None else timeout
        if self._conn is None:
            deadline = max(deadline, self.open_timeout)  # the call includes opening the connection
        try:
            return future.result(deadline)
        except FutureTimeout:
            reason = f"no answer within {deadline:g} s"
            self._set_status(HostState.DEGRADED, reason)
            raise Unreachable(reason) from None

    def call(self, fn: Call[T], timeout: float | None = None) -> T:
        return self.wait(self.submit(fn), timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if self._reconnect_timer:
                self._reconnect_timer.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if conn is not None:
            # Closing talks to the daemon, which may be frozen: never block the caller on it.
            threading.Thread(target=_close_quietly, args=(conn,), name=f"close-{self.name}", daemon=True).start()

    # Runs in a worker thread.
    def _run(self, fn: Call[T]) -> T:
        try:
            conn = self._connection()
            try:
                result = fn(conn)
            except libvirt.libvirtError as exc:
                error = translate(exc)
                if isinstance(error, Unreachable) or not self._alive(conn):
                    self._drop(conn, str(error))
                raise error from None
            self._set_status(HostState.UP, "")
            return result
        finally:
            with self._lock:
                self._in_flight -= 1

    def _connection(self) -> libvirt.virConnect:
        with self._open_lock:
            conn = self._conn
            if conn is not None:
                return conn
            try:
                conn = open_connection(self.spec)
            except libvirt.libvirtError as exc:
                reason = explain_connect_failure((exc.get_error_message() or str(exc)).strip())
                self._opened_failed(reason)
                raise Unreachable(reason) from None
            self._watch(conn)
            with self._lock:
                self._conn = conn
                self._failures = 0
                self._retry_at = 0.0
            self._set_status(HostState.UP, "")
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

    @staticmethod
    def _alive(conn: libvirt.virConnect) -> bool:
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def _on_close(self, conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        words = {
            libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "connection error",
            libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "connection closed by the host",
            libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timed out",
        }.get(reason, "connection closed")
        self._drop(conn, words)

    def _drop(self, conn: libvirt.virConnect, reason: str) -> None:
        with self._lock:
            if self._conn is not conn:
                return
            self._conn = None
            self._retry_at = 0.0  # the first reconnect is immediate, later ones back off
        self._set_status(HostState.DOWN, reason)
        log.warning("lost connection to %s: %s", self.name, reason)
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


class Registry:
    """Process-wide map from a host key to its HostConnection."""

    def __init__(self, *, open_timeout: float = 4.0, call_timeout: float = 3.0) -> None:
        self.open_timeout = open_timeout
        self.call_timeout = call_timeout
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
            fresh = HostConnection(key, spec, open_timeout=self.open_timeout, call_timeout=self.call_timeout)
            self._hosts[key] = fresh
        if current is not None:
            current.close()
        return fresh

    def status(self, key: str) -> HostStatus:
        with self._lock:
            current = self._hosts.get(key)
        return current.status if current else HostStatus(HostState.UNKNOWN, "not contacted yet")

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
