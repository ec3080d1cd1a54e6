"""One serial console session: the checks before it opens, who holds each VM's console, the re-checks.

The checks are the VNC console's (console/session.py, console/tickets.py): Origin, a single-use
ticket (of the serial kind) bound to user, login session, host and VM, and the console grant.
The byte stream is libvirt's console stream on the host's existing connection (virt/serial.py),
so nothing the client sends is used as an address.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import libvirt
from django.utils import timezone

from console.session import access_lost, admit
from console.tickets import Refused, refuse
from hosts import services
from hosts.models import Host
from virt.errors import NotFound, VirtError
from virt.serial import ConsoleBusy, abort_quietly, open_console
from webkvm import audit

KIND = "serial"


class InUse(Refused):
    """The console is held by somebody else; the page offers an explicit take over."""


@dataclass(eq=False)
class Holder:
    """The session holding a VM's serial console in this process."""

    username: str
    kick: Callable[[str], None]  # ends that session with a reason; called from any thread
    since: datetime = field(default_factory=timezone.now)

    def describe(self) -> str:
        return f"in use by {self.username} since {timezone.localtime(self.since):%Y-%m-%d %H:%M:%S %Z}"


class SerialSessions:
    """VM -> the one session holding its serial console, in this process.

    Per process on purpose: sessions are sockets of this process. With several workers (or a
    second panel) a session of another process is not listed here, but libvirt's own console
    lock still refuses a second opener (then the page says "in use by another client"), and a
    take over opens with VIR_DOMAIN_CONSOLE_FORCE, which cuts off any holder, virsh console
    included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[int, str], Holder] = {}

    def claim(self, key: tuple[int, str], holder: Holder, *, take_over: bool) -> Holder | None:
        """Make `holder` the VM's session; returns the one it took over from (already told), or
        raises InUse when the console is held and no take over was asked for."""
        with self._lock:
            current = self._held.get(key)
            if current is not None and not take_over:
                raise InUse(current.describe())
            self._held[key] = holder
        if current is not None:
            current.kick(f"taken over by {holder.username}")
        return current

    def release(self, key: tuple[int, str], holder: Holder) -> None:
        with self._lock:
            if self._held.get(key) is holder:
                del self._held[key]

    def holder(self, key: tuple[int, str]) -> Holder | None:
        with self._lock:
            return self._held.get(key)


sessions = SerialSessions()


@dataclass
class SerialSession:
    user: Any
    host: Host
    vm_uuid: str
    session_key: str
    remote_addr: str | None
    holder: Holder
    stream: libvirt.virStream

    @property
    def key(self) -> tuple[int, str]:
        return (self.host.pk, self.vm_uuid)

    def lost(self) -> str:
        """Why the session must end now ("" while it may go on): logout, grant withdrawn, VM gone or stopped."""
        reason, host = access_lost(self.user, self.session_key, self.host, self.vm_uuid)
        if host is None:
            return reason
        try:
            active = services.call(host, lambda conn: bool(conn.lookupByUUIDString(self.vm_uuid).isActive()))
        except NotFound:
            return "the VM no longer exists on this host"
        except VirtError as exc:
            return f"host {host.name} does not answer: {exc}"
        return "" if active else "the VM is not running any more"

    def release(self) -> None:
        sessions.release(self.key, self.holder)

    def record_close(self, reason: str) -> None:
        audit.record(None, "console.close", object_type="vm", object_name=self.vm_uuid, host_name=self.host.name,
                     detail=f"serial console: {reason or 'closed'}", user=self.user, remote_addr=self.remote_addr)


def open_session(*, ticket: str, host_name: str, vm_uuid: str, session_key: str, origin: str, host_header: str,
                 remote_addr: str | None, take_over: bool, kick: Callable[[str], None]) -> SerialSession:
    """Every check, then the console stream; Refused or InUse (both audited) on any failure."""
    spent = admit(ticket=ticket, host_name=host_name, vm_uuid=vm_uuid, session_key=session_key, origin=origin,
                  host_header=host_header, remote_addr=remote_addr, kind=KIND)
    vm = str(spent.vm_uuid)
    where: dict[str, Any] = {"host_name": host_name, "vm_uuid": vm, "remote_addr": remote_addr, "user": spent.user}
    holder = Holder(spent.user.get_username(), kick)
    key = (spent.host.pk, vm)
    try:
        previous = sessions.claim(key, holder, take_over=take_over)
    except InUse as exc:
        refuse(f"serial console {exc}", **where)
        raise
    try:
        stream = services.call(spent.host, lambda conn: open_console(conn.lookupByUUIDString(vm), force=take_over))
    except ConsoleBusy:
        sessions.release(key, holder)
        refuse("serial console in use by another client of the host", **where)
        raise InUse("in use by another client of the host (virsh console or another panel process)") from None
    except NotFound:
        sessions.release(key, holder)
        raise refuse("the VM no longer exists on this host", **where) from None
    except VirtError as exc:
        sessions.release(key, holder)
        raise refuse(str(exc), **where) from None
    except BaseException:
        sessions.release(key, holder)
        raise
    if take_over:
        taken_from = previous.describe().replace("in use by ", "") if previous else "any other client of the host"
        try:
            audit.record(None, "console.takeover", object_type="vm", object_name=vm, host_name=host_name,
                         detail=f"serial console taken over from {taken_from}", user=spent.user,
                         remote_addr=remote_addr)
        except BaseException:
            abort_quietly(stream)
            sessions.release(key, holder)
            raise
    return SerialSession(user=spent.user, host=spent.host, vm_uuid=vm, session_key=session_key,
                         remote_addr=remote_addr, holder=holder, stream=stream)
