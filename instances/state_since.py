"""Since when each VM is in its state, as far as the panel knows: one store for every panel process.

The panel records the state changes it makes (power actions) and the ones it sees (every read of a host's
VMs: the live watcher's, the VM list's, a VM's page) in the database (model VMState), so that every
process reads the same answer and a restart forgets nothing. A VM first seen already in a state has no
known start: the panel then says "at least" since it first saw it, except for a running VM of a host on
the panel's own machine, whose qemu process start time is a good estimate (virt/process_start.py; a
remote host's /proc is out of reach and libvirt's API does not tell it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from django.utils.translation import gettext as _

from hosts.models import Host
from instances.models import StateSince, VMState
from instances.templatetags.vm import duration
from virt import process_start
from virt.uri import Transport

__all__ = ["Since", "StateSince", "apply", "observe", "of_vm", "record", "row_words"]

# Until the panel has watched a VM this long, "at least N" says nothing useful.
AT_LEAST_FROM_SECONDS = 60


@dataclass(frozen=True)
class Since:
    at: float | None  # epoch seconds; None: nothing known
    source: str = ""  # a StateSince value
    shutdown_asked: float | None = None  # when the panel last asked the guest to shut down (while it runs)

    @property
    def at_least(self) -> bool:
        return self.source == StateSince.FIRST_SEEN

    def words(self, now: float | None = None) -> str:
        """'3 min', 'at least 2 h' (first seen in this state then), or 'unknown', in the active language."""
        if self.at is None:
            return _("unknown")
        seconds = max(0, int((time.time() if now is None else now) - self.at))
        if self.at_least:
            if seconds < AT_LEAST_FROM_SECONDS:
                return _("unknown")
            return _("at least {duration}").format(duration=_duration(seconds))
        return _("less than a minute") if seconds < 60 else _duration(seconds)

    @property
    def hint(self) -> str:
        if self.source == StateSince.PROCESS:
            return _("estimated from the start of its qemu process")
        if self.at_least:
            return _("the panel first saw it in this state then; it began earlier")
        return ""


def row_words(at: float | None, at_least: bool) -> str:
    """A VM row's since (DomainRow.state_since, .state_since_at_least) in the page's words."""
    return Since(at, StateSince.FIRST_SEEN if at_least else StateSince.PANEL).words()


def _duration(seconds: int) -> str:
    return duration(seconds)


def _estimate(host: Host, name: str, uuid: str, state: str, now: float) -> tuple[float, str]:
    """When a VM first seen in `state` entered it: the qemu process start of a running VM on the local
    socket, otherwise unknown (the moment it was first seen)."""
    if state == "running" and host.transport == Transport.LOCAL and host.path == "system":
        started = process_start.started_at(name, uuid)
        if started is not None and started <= now:
            return started, StateSince.PROCESS
    return now, StateSince.FIRST_SEEN


def _since(record: VMState) -> Since:
    return Since(record.since, record.source, record.shutdown_asked)


def observe(host: Host, vms: Iterable[tuple[str, str, str]], *, complete: bool) -> dict[str, Since]:
    """Compare what libvirt says now, (uuid, name, state) per VM, with the records: a VM seen for the first
    time gets one, a changed state begins now. `complete`: `vms` is every VM of the host, and records of
    others (deleted VMs) go. One query, plus writes only for what changed."""
    seen = {uuid.lower(): (name, state) for uuid, name, state in vms}
    query = VMState.objects.filter(host=host)
    records = {str(r.vm_uuid): r for r in (query if complete else query.filter(vm_uuid__in=list(seen)))}
    now = time.time()
    new: list[VMState] = []
    for uuid, (name, state) in seen.items():
        record = records.get(uuid)
        if record is None:
            since, source = _estimate(host, name, uuid, state, now)
            records[uuid] = record = VMState(host=host, vm_uuid=uuid, state=state, since=since, source=source)
            new.append(record)
        elif record.state != state:
            # Another process may have seen the change first: its moment stands.
            query.filter(pk=record.pk, state=record.state).update(
                state=state, since=now, source=StateSince.PANEL, shutdown_asked=None)
            record.state, record.since, record.source, record.shutdown_asked = state, now, StateSince.PANEL, None
    if new:
        VMState.objects.bulk_create(new, ignore_conflicts=True)
    if complete and len(records) > len(seen):
        query.exclude(vm_uuid__in=list(seen)).delete()
    return {uuid: _since(records[uuid]) for uuid in seen}


def of_vm(host: Host, uuid: str, name: str, state: str) -> Since:
    return observe(host, [(uuid, name, state)], complete=False)[uuid.lower()]


def record(host: Host, uuid: str, state: str, *, shutdown_asked: bool = False) -> Since:
    """The panel changed the VM's state (or asked the guest to shut down, `shutdown_asked`, while it still
    runs): it began now."""
    now = time.time()
    uuid = uuid.lower()
    current = VMState.objects.filter(host=host, vm_uuid=uuid).first()
    if current is None or current.state != state:
        values = {"state": state, "since": now, "source": StateSince.PANEL, "shutdown_asked": None}
    else:
        values = {}
    if shutdown_asked:
        values["shutdown_asked"] = now
    if values:
        VMState.objects.update_or_create(host=host, vm_uuid=uuid, defaults=values)
    return of_vm(host, uuid, "", state)


def apply(host: Host, snapshot: object) -> None:
    """Give a host's shared read (instances/host_rows.HostRows) its rows' state starts, once per read, before
    any viewer renders it: in the caller's thread, which owns its database connection."""
    from instances.host_rows import HostRows

    assert isinstance(snapshot, HostRows)
    with snapshot.states_lock:
        if snapshot.states_applied:
            return
        known = observe(host, ((r.uuid, r.name, r.state) for r in snapshot.rows), complete=True)
        from instances import quotas  # a self-service VM deleted outside the panel frees its owner's quota

        quotas.reconcile(host, known, snapshot.read_at)
        snapshot.rows = [replace(row, state_since=known[row.uuid.lower()].at,
                                 state_since_at_least=known[row.uuid.lower()].at_least)
                         for row in snapshot.rows]
        snapshot.states_applied = True
