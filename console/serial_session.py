"""One serial console session: the checks before it opens, claiming the VM's console, the re-checks.

Who holds each VM's console is kept by console/serial_holders.py: in this process's memory, or in
Redis for every panel process when WEBKVM_REDIS_URL is set.

The checks are the VNC console's (console/session.py, console/tickets.py): Origin, a single-use
ticket (of the serial kind) bound to user, login session (or API token), host and VM, and the console grant.
The byte stream is libvirt's console stream on the host's existing connection (virt/serial.py),
so nothing the client sends is used as an address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

from console.serial_holders import Holder, InUse, ProcessSerialSessions, RedisSerialSessions, SerialSessions
from console.session import access_lost, admit, via_of
from console.tickets import VM_GONE, Refused, host_refusal, refuse
from hosts import services
from hosts.models import Host
from virt.errors import NotFound, Text, VirtError, gettext_noop
from virt.serial import ConsoleBusy, abort_quietly, open_console
from webkvm import audit

KIND = "serial"


def _configured() -> SerialSessions:
    from webkvm.redis_store import client

    shared = client()
    return ProcessSerialSessions() if shared is None else RedisSerialSessions(shared)


sessions: SerialSessions = _configured()  # this process's; in Redis (shared by every process) when configured


@dataclass
class SerialSession:
    user: Any
    host: Host
    vm_uuid: str
    session_key: str
    remote_addr: str | None
    holder: Holder
    stream: libvirt.virStream
    registry: SerialSessions
    api_token_id: int | None = None  # opened with an API token (not a login session)
    via: str = ""  # "through the API, token NAME" for the audit

    @property
    def key(self) -> tuple[int, str]:
        return (self.host.pk, self.vm_uuid)

    def lost(self) -> str:  # a Text, or "" while it may go on
        """Why the session must end now ("" while it may go on): logout, grant withdrawn, VM gone or stopped."""
        reason, host = access_lost(self.user, self.session_key, self.host, self.vm_uuid, self.api_token_id)
        if host is None:
            return reason
        try:
            active = services.call(host, lambda conn: bool(conn.lookupByUUIDString(self.vm_uuid).isActive()))
        except NotFound:
            return Text(VM_GONE)
        except VirtError as exc:
            return host_refusal(Text(gettext_noop("host {host} does not answer"), host=host.name), exc).told(self.user)
        return "" if active else Text(gettext_noop("the VM is not running any more"))

    def release(self) -> None:
        self.registry.release(self.key, self.holder)

    def record_close(self, reason: str) -> None:
        detail = f"serial console: {reason or 'closed'}" + (f" ({self.via})" if self.via else "")
        audit.record(None, "console.close", object_type="vm", object_name=self.vm_uuid, host_name=self.host.name,
                     detail=detail, user=self.user, remote_addr=self.remote_addr)


def open_session(*, ticket: str, host_name: str, vm_uuid: str, session_key: str, origin: str, host_header: str,
                 remote_addr: str | None, take_over: bool, kick: Callable[[str], None], channel: str = "",
                 registry: SerialSessions | None = None, presented: str = "") -> SerialSession:
    """Every check, then the console stream; Refused or InUse (both audited) on any failure.

    `kick` and `channel` are how the new session is told to close when taken over (in this process,
    or from another through the channel layer); `registry` defaults to this process's `sessions`."""
    spent = admit(ticket=ticket, host_name=host_name, vm_uuid=vm_uuid, session_key=session_key, origin=origin,
                  host_header=host_header, remote_addr=remote_addr, kind=KIND, presented=presented)
    vm = str(spent.vm_uuid)
    via = via_of(spent)
    where: dict[str, Any] = {"host_name": host_name, "vm_uuid": vm, "remote_addr": remote_addr, "user": spent.user,
                             "via": via}
    holder = Holder(spent.user.get_username(), kick, channel=channel)
    key = (spent.host.pk, vm)
    held = sessions if registry is None else registry
    try:
        previous = held.claim(key, holder, take_over=take_over)
    except InUse as exc:
        refuse(Refused(gettext_noop("serial console {reason}"), reason=exc.text), **where)
        raise
    except Refused as exc:
        raise refuse(Refused(gettext_noop("serial console: {reason}"), reason=exc.text), **where) from None
    try:
        stream = services.call(spent.host, lambda conn: open_console(conn.lookupByUUIDString(vm), force=take_over))
    except ConsoleBusy:
        held.release(key, holder)
        refuse(gettext_noop("serial console in use by another client of the host"), **where)
        raise InUse(gettext_noop("in use by another client of the host (virsh console or another panel process)")) \
            from None
    except NotFound:
        held.release(key, holder)
        raise refuse(VM_GONE, **where) from None
    except VirtError as exc:
        held.release(key, holder)
        raise refuse(host_refusal(gettext_noop("serial console"), exc), **where) from None
    except BaseException:
        held.release(key, holder)
        raise
    if take_over:
        taken_from = previous.describe().replace("in use by ", "") if previous else "any other client of the host"
        try:
            audit.record(None, "console.takeover", object_type="vm", object_name=vm, host_name=host_name,
                         detail=f"serial console taken over from {taken_from}" + (f" ({via})" if via else ""),
                         user=spent.user, remote_addr=remote_addr)
        except BaseException:
            abort_quietly(stream)
            held.release(key, holder)
            raise
    return SerialSession(user=spent.user, host=spent.host, vm_uuid=vm, session_key=session_key,
                         remote_addr=remote_addr, holder=holder, stream=stream, registry=held,
                         api_token_id=spent.api_token_id, via=via)
