"""A VM's serial console as a byte pipe over libvirt's console stream API.

The stream travels inside the host's existing libvirt connection, so the serial console works
over every transport the panel reaches (local socket, ssh, tcp, tls) with no port or tunnel.

How the bytes move, and why this way: the stream is non-blocking and owned by one worker
thread, which sends pending input, receives, and waits a few milliseconds when there was
nothing to do. Bytes from the daemon are read off the connection's socket by libvirt's event
loop, which virt.connections registers before any connection is opened (without it nothing
would ever fill a non-blocking stream). Stream event callbacks are not used: they would run
our code in that single event-loop thread, which carries every host's keepalive and close
callbacks, so a slow browser would stall all hosts. A blocking recv is not used either: it
cannot be interrupted, so a frozen daemon would hold the thread until keepalive gives up,
while a non-blocking recv only looks at what the event loop has already received.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import libvirt

from virt.errors import InvalidState, Text, Unsupported, VirtError, gettext_noop, libvirt_message, translate

log = logging.getLogger(__name__)

CHUNK = 65536
IDLE_WAIT = 0.02  # seconds between polls when nothing moved: at most 20 ms added to an echo
MAX_PENDING = 1 << 20  # input not yet sent (a paste); more is dropped rather than buffered without end
BUSY_MESSAGE = "Active console session exists"  # libvirt's words when another client holds the console


class ConsoleBusy(VirtError):
    """Another client of the host (virsh console, another panel process) holds the console."""


def open_console(dom: libvirt.virDomain, *, force: bool) -> libvirt.virStream:
    """Attach a new non-blocking stream to the VM's first serial console.

    Without `force` an active session elsewhere raises ConsoleBusy; with it libvirt cuts that
    session off, whoever holds it (virsh console included): only an explicit take over uses it."""
    name = str(dom.name())
    if not dom.isActive():
        raise InvalidState(gettext_noop("{name} is not running: start it to use its serial console."), name=name)
    stream = dom.connect().newStream(libvirt.VIR_STREAM_NONBLOCK)
    flags = libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else libvirt.VIR_DOMAIN_CONSOLE_SAFE
    try:
        dom.openConsole(None, stream, flags)
    except libvirt.libvirtError as exc:
        abort_quietly(stream)
        message = libvirt_message(exc)
        if BUSY_MESSAGE.lower() in message.lower():
            raise ConsoleBusy(gettext_noop("{name}'s serial console is in use by another client of the host"),
                              name=name) from None
        if "cannot find character device" in message:
            raise Unsupported(gettext_noop("{name} has no serial console (it needs a <serial> or <console> device)."),
                              name=name) from None
        raise translate(exc) from None
    return stream


def abort_quietly(stream: libvirt.virStream) -> None:
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass  # never opened, or already ended by the daemon


class SerialPipe:
    """Moves bytes between one console stream and the caller's callbacks, in its own thread.

    `on_data(bytes)` is called from the worker thread for each chunk of console output and
    returns False when the receiver is gone; it may block, which slows the reading down
    (back-pressure). `on_end(reason)` is called once if the stream ends by itself (VM stopped,
    console taken over by another client, connection lost); not after close()."""

    def __init__(self, stream: libvirt.virStream, *, on_data: Callable[[bytes], bool],
                 on_end: Callable[[str], None], name: str = "serial") -> None:
        self._stream = stream
        self._on_data = on_data
        self._on_end = on_end
        self._name = name
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"serial-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, data: bytes) -> bool:
        """Queue input for the guest (any thread, never blocks); False when dropped or closed."""
        with self._lock:
            if self._closing or len(self._pending) + len(data) > MAX_PENDING:
                return False
            self._pending += data
        self._wake.set()
        return True

    def close(self) -> None:
        """End the session (any thread, never blocks): the worker aborts the stream and exits."""
        with self._lock:
            self._closing = True
        self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to finish (it aborts the stream); True when it has.

        A pipe closed before start() never had a worker: the stream is aborted here."""
        if self._thread.ident is None:
            if self._closing:
                abort_quietly(self._stream)
            return self._closing
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # Runs in the worker thread: the only thread that touches the stream after opening.
    def _run(self) -> None:
        reason = ""
        try:
            reason = self._pump()
        except libvirt.libvirtError as exc:
            reason = f"console stream ended ({translate(exc)}): taken over by another client, or the host was lost"
        except Exception as exc:  # a receiver's bug must still end the session cleanly
            log.exception("serial console %s failed", self._name)
            reason = f"the console failed: {exc}"
        finally:
            abort_quietly(self._stream)
        if reason and not self._closing:
            self._on_end(reason)

    def _pump(self) -> str:
        while True:
            with self._lock:
                if self._closing:
                    return ""
                data, self._pending = bytes(self._pending), bytearray()
            moved = False
            while data:
                sent = self._stream.send(data)
                if sent == -2:  # the stream is full: keep the rest for the next round
                    with self._lock:
                        self._pending[:0] = data
                    break
                data, moved = data[sent:], True
            got = self._stream.recv(CHUNK)
            if got == -2:
                pass  # nothing received yet
            elif not got:
                return Text(gettext_noop("the VM's serial console closed (the VM stopped)"))
            else:
                moved = True
                if not self._on_data(got):
                    return ""
            if not moved:
                self._wake.wait(IDLE_WAIT)
                self._wake.clear()
