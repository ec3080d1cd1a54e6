"""Moving one VM between hosts with libvirt: live and offline migration, its progress, abort, and
where the VM is afterwards. No Django here: the job that runs it is instances/migrate_jobs.py.

A migration runs in its caller's thread (a job worker) with its own connections to both hosts (a
long libvirt call must not hold the panel's per-host call slots): it re-runs the pre-flight checks
(migrate_checks), then migrates while polling libvirt's job statistics, reporting them, and asking
whether to stop (then it aborts libvirt's job on the source, and the VM stays there).
"""

from __future__ import annotations

import contextlib
import os.path
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import libvirt

from virt.connections import open_connection, start_event_loop
from virt.errors import (
    InvalidInput,
    Term,
    Text,
    Unreachable,
    VirtError,
    explain_connect_failure,
    gettext_noop,
    joined,
    libvirt_message,
    said_as,
    translate,
)
from virt.migrate_checks import (
    Endpoint,
    Finding,
    Options,
    VMFacts,
    active_pools,
    blocking,
    judge,
    source_facts,
    target_facts,
    unreachable,
)
from virt.uri import ConnectionSpec, validate_hostname
from virt.xml.codecs import iec
from virt.xml.storage import StorageVolume

__all__ = ["Endpoint", "Finding", "Migration", "Options", "Progress", "Report", "located", "migrating",
           "precreate_volumes", "spread"]

OPEN_TIMEOUT = 10.0
POLL_SECONDS = 1.0
MiB = 1 << 20


def _optional(call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(*args)
    except libvirt.libvirtError:
        return None


# ---------------------------------------------------------------- running a migration


@dataclass
class Progress:
    processed: int = 0  # bytes sent
    remaining: int | None = None
    total: int | None = None
    done: int = 0  # bytes that need no more sending (zero pages count without being sent); never goes back
    rate_bps: int | None = None
    elapsed_ms: int | None = None  # libvirt's job time
    downtime_ms: int | None = None

    def update(self, stats: dict[str, Any]) -> None:
        if int(stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE)) == libvirt.VIR_DOMAIN_JOB_NONE:
            return
        self.processed = int(stats.get("data_processed", self.processed))
        self.remaining = _int(stats.get("data_remaining"))
        self.total = _int(stats.get("data_total"))
        rates = [int(stats[k]) for k in ("memory_bps", "disk_bps") if k in stats]
        self.rate_bps = sum(rates) if rates else None
        self.elapsed_ms = _int(stats.get("time_elapsed"))
        if self.total and self.remaining is not None:
            # Measured against what is left, not bytes sent; dirtied pages never move it back.
            self.done = min(self.total, max(self.done, self.total - self.remaining))

    def finished(self) -> None:
        if self.total:
            self.done = self.total


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass
class Report:
    outcome: str  # done, failed, cancelled, refused
    message: str
    vm_host: str  # the panel host the VM is on now
    wall_s: float | None = None
    notes: list[str] = field(default_factory=list)


def _open(spec: ConnectionSpec, name: str, timeout: float = OPEN_TIMEOUT) -> libvirt.virConnect:
    """A connection of this migration's own, opened with a deadline (an ssh open can hang)."""
    start_event_loop()  # keepalive needs libvirt's event loop
    box: dict[str, Any] = {}
    abandoned = threading.Event()

    def opener() -> None:
        try:
            conn = open_connection(spec)
        except libvirt.libvirtError as exc:
            box["error"] = explain_connect_failure(libvirt_message(exc))
            return
        if abandoned.is_set():
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
            return
        box["conn"] = conn

    thread = threading.Thread(target=opener, name=f"migrate-open-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        abandoned.set()
        raise Unreachable(gettext_noop("no answer within {seconds} s"), seconds=f"{timeout:g}")
    if "error" in box:
        raise said_as(Unreachable, box["error"])
    conn = box["conn"]
    with contextlib.suppress(libvirt.libvirtError):
        conn.setKeepAlive(5, 3)  # a dead peer ends the migration instead of hanging it
    return conn


def _close(conn: libvirt.virConnect | None) -> None:
    if conn is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


class Migration:
    """One VM from source to target; run() blocks until it has ended and returns the Report.

    `report(progress, phase)` hears how far it is (the phase in words) at each poll; `stop()` is asked
    at each poll whether to stop: before libvirt starts, nothing moves; while libvirt migrates, its job
    on the source is aborted (abortJob) and the VM keeps running there."""

    def __init__(self, vm_uuid: str, source: Endpoint, target: Endpoint, options: Options, *,
                 report: Callable[[Progress, str], None] | None = None, stop: Callable[[], bool] | None = None,
                 poll: float = POLL_SECONDS) -> None:
        self.vm_uuid, self.vm_name = vm_uuid.lower(), vm_uuid.lower()
        self.source, self.target, self.options = source, target, options
        self.live: bool | None = None
        self.findings: list[Finding] = []
        self.progress = Progress()
        self.report: Report | None = None
        self.stop_requested = False
        self.began: float | None = None  # monotonic
        self.ended: float | None = None
        self._report, self._stop, self._poll = report, stop, poll

    @property
    def wall_s(self) -> float | None:
        if self.began is None:
            return None
        return round((self.ended or time.monotonic()) - self.began, 3)

    def _say(self, phase: str) -> None:
        if self._report is not None:
            self._report(self.progress, phase)

    def _stopping(self) -> bool:
        if not self.stop_requested and self._stop is not None:
            self.stop_requested = bool(self._stop())
        return self.stop_requested

    def run(self) -> Report:
        self.began = time.monotonic()
        src = dst = None
        try:
            self._say(Text(gettext_noop("checking {source} and {target}"), source=self.source.name,
                           target=self.target.name))
            src = _open(self.source.spec, self.source.name)
            try:
                dst = _open(self.target.spec, self.target.name)
            except Unreachable as exc:
                self.findings = [unreachable(self.target.name, Text.of(exc))]
                return self._end("refused", Text(gettext_noop("Nothing was moved: the pre-flight checks found a "
                                                              "problem.")), self.source.name)
            dom = src.lookupByUUIDString(self.vm_uuid)
            vm = source_facts(dom)
            self.vm_name, self.live = vm.name, vm.active
            self.findings = judge(vm, target_facts(dst, vm), self.source.name, self.target.name, self.options,
                                  self.target.peer_uri)
            if blocking(self.findings):
                return self._end("refused", Text(gettext_noop("Nothing was moved: the pre-flight checks found a "
                                                              "problem.")), self.source.name)
            if self._stopping():
                return self._end("cancelled", Text(gettext_noop("Cancelled before it started: {vm} stays on {host}."),
                                                   vm=vm.name, host=self.source.name), self.source.name)
            if vm.active:
                return self._live(src, dst, dom, vm)
            return self._offline(dst, dom, vm)
        except VirtError as exc:
            return self._end("failed", Text.of(exc), self.source.name)
        except libvirt.libvirtError as exc:
            return self._end("failed", Text.of(translate(exc)), self.source.name)
        finally:
            _close(src)
            _close(dst)

    def _end(self, outcome: str, message: str, where: str, notes: list[str] | None = None) -> Report:
        self.ended = time.monotonic()
        self.report = Report(outcome, message, where, self.wall_s, notes or [])
        return self.report

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        opts = self.options
        if opts.bandwidth_mib:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(opts.bandwidth_mib)
        if opts.migration_address and not opts.tunnelled:
            address = validate_hostname(opts.migration_address)
            params[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{address}"
            params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = address.strip("[]")
        return params

    def _flags(self) -> int:
        opts = self.options
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
        if not opts.keep_source:
            flags |= libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        if opts.copy_storage:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        if opts.peer_to_peer or opts.tunnelled:
            flags |= libvirt.VIR_MIGRATE_PEER2PEER
        if opts.tunnelled:
            flags |= libvirt.VIR_MIGRATE_TUNNELLED
        return int(flags)

    def _phase(self) -> str:
        if self.stop_requested:
            return Text(gettext_noop("aborting"))
        rate = self.progress.rate_bps
        if self.options.copy_storage:
            if rate:
                return Text(gettext_noop("copying disks and memory at {rate}/s"), rate=iec(rate))
            return Text(gettext_noop("copying disks and memory"))
        if rate:
            return Text(gettext_noop("copying memory at {rate}/s"), rate=iec(rate))
        return Text(gettext_noop("copying memory"))

    def _live(self, src: libvirt.virConnect, dst: libvirt.virConnect, dom: libvirt.virDomain,
              vm: VMFacts) -> Report:
        if self.options.copy_storage:
            self._say(Text(gettext_noop("making the disks to copy into on {host}"), host=self.target.name))
        created = precreate_volumes(dst, vm) if self.options.copy_storage else []
        old_downtime = None
        try:
            if self.options.max_downtime_ms:
                old_downtime = _optional(dom.migrateGetMaxDowntime, 0)
                dom.migrateSetMaxDowntime(int(self.options.max_downtime_ms), 0)
        except libvirt.libvirtError:
            _delete(created)
            raise
        params, flags = self._params(), self._flags()
        peer = self.target.peer_uri
        outcome: dict[str, Any] = {}

        def migrate() -> None:
            try:
                if flags & libvirt.VIR_MIGRATE_PEER2PEER:
                    dom.migrateToURI3(peer, params, flags)
                else:
                    dom.migrate3(dst, params, flags)
            except libvirt.libvirtError as exc:
                outcome["error"] = exc

        self._say(self._phase())
        worker = threading.Thread(target=migrate, name=f"migrate3-{vm.name}", daemon=True)
        worker.start()
        aborted = False
        while worker.is_alive():
            if not aborted and self._stopping():
                try:  # refused while libvirt has not started its job yet: try again at the next poll
                    dom.abortJob()
                    aborted = True
                except libvirt.libvirtError:
                    pass
            with contextlib.suppress(libvirt.libvirtError):
                self.progress.update(dom.jobStats(0))
            self._say(self._phase())
            worker.join(self._poll)
        error = outcome.get("error")
        if error is None:
            return self._live_done(src, dst, vm)
        _delete(created)  # only what this migration made
        if old_downtime is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.migrateSetMaxDowntime(int(old_downtime), 0)
        where, state_words = _whereabouts(src, dst, vm, self.source.name, self.target.name)
        if self.stop_requested or error.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED:
            return self._end("cancelled", Text(gettext_noop("Cancelled. {state}"), state=state_words), where)
        return self._end("failed", Text(gettext_noop("The migration failed: {error}. {state}"), error=translate(error),
                                        state=state_words), where)

    def _live_done(self, src: libvirt.virConnect, dst: libvirt.virConnect, vm: VMFacts) -> Report:
        """libvirt says it is done: figures and housekeeping, none of which may turn it into a failure."""
        notes: list[str] = []
        try:
            new = dst.lookupByUUIDString(vm.uuid)
            stats = _optional(new.jobStats, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED) or {}
            self.progress.update(stats)
            self.progress.downtime_ms = _int(stats.get("downtime"))
            if vm.autostart:
                new.setAutostart(1)  # migration does not carry the autostart flag
                notes.append(Text(gettext_noop("Autostart is on for {vm} on {host}."), vm=vm.name,
                                  host=self.target.name))
        except libvirt.libvirtError as exc:
            notes.append(Text(gettext_noop("{host} did not answer after the migration ({error}): check its "
                                           "autostart setting."), host=self.target.name, error=translate(exc)))
        self.progress.finished()
        if self.options.keep_source:
            notes.append(Text(gettext_noop("{host} keeps an inactive definition of {vm}."), host=self.source.name,
                              vm=vm.name))
            if vm.autostart:
                with contextlib.suppress(libvirt.libvirtError):
                    src.lookupByUUIDString(vm.uuid).setAutostart(0)
                    notes.append(Text(gettext_noop("Autostart was turned off on {host}."), host=self.source.name))
        if self.options.copy_storage:
            notes += [Text(gettext_noop("The source copy of disk {disk} stays on {host} at {path}: delete it when "
                                        "you no longer need it."), disk=d.dev, host=self.source.name, path=d.path)
                      for d in vm.disks if d.copied]
        figures: list[Text] = []
        if self.progress.elapsed_ms is not None:
            seconds = f"{self.progress.elapsed_ms / 1000:.1f}"
            figures.append(Text(gettext_noop("libvirt job {seconds} s"), seconds=seconds))
        if self.progress.downtime_ms is not None:
            figures.append(Text(gettext_noop("downtime {ms} ms"), ms=self.progress.downtime_ms))
        self._say(Text(gettext_noop("done")))
        if figures:
            about = joined(figures, ", ")
            return self._end("done", Text(gettext_noop("{vm} now runs on {host} ({figures})."), vm=vm.name,
                                          host=self.target.name, figures=about), self.target.name, notes)
        return self._end("done", Text(gettext_noop("{vm} now runs on {host}."), vm=vm.name, host=self.target.name),
                         self.target.name, notes)

    def _offline(self, dst: libvirt.virConnect, dom: libvirt.virDomain, vm: VMFacts) -> Report:
        """A shut-off VM: define it on the target from its full definition, then undefine the source."""
        self._say(Text(gettext_noop("defining {vm} on {host}"), vm=vm.name, host=self.target.name))
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        new = dst.defineXML(xml)
        notes: list[str] = []
        if vm.autostart:
            new.setAutostart(1)
            notes.append(Text(gettext_noop("Autostart is on for {vm} on {host}."), vm=vm.name, host=self.target.name))
        if self.options.keep_source:
            notes.append(Text(gettext_noop("{host} keeps its definition of {vm}."), host=self.source.name, vm=vm.name))
            if vm.autostart:
                dom.setAutostart(0)
                notes.append(Text(gettext_noop("Autostart was turned off on {host}."), host=self.source.name))
        else:
            try:
                _undefine_keeping_nvram(dom)
            except libvirt.libvirtError as exc:
                notes.append(Text(gettext_noop("{host} could not remove its definition ({error}): the VM is "
                                               "now defined on both hosts; remove it from {host} by hand."),
                                  host=self.source.name, error=translate(exc)))
        self._say(Text(gettext_noop("done")))
        return self._end("done", Text(gettext_noop("{vm} (shut off) is now defined on {host}."), vm=vm.name,
                                      host=self.target.name), self.target.name, notes)


def _delete(volumes: list[libvirt.virStorageVol]) -> None:
    for vol in volumes:
        with contextlib.suppress(libvirt.libvirtError):
            vol.delete(0)


def _undefine_keeping_nvram(dom: libvirt.virDomain) -> None:
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
            raise
        dom.undefine()


def _whereabouts(src: libvirt.virConnect, dst: libvirt.virConnect, vm: VMFacts, source: str,
                 target: str) -> tuple[str, str]:
    """After a failure: (host the VM is on, what the page says about it). Resumes a source copy that
    the migration left paused, unless the VM had been paused by its user."""
    try:
        dom = src.lookupByUUIDString(vm.uuid)
        state, reason = dom.state()
        if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION and not vm.paused:
            dom.resume()
            state = libvirt.VIR_DOMAIN_RUNNING
        if dom.isActive():
            paused = state == libvirt.VIR_DOMAIN_PAUSED
            words = Term(gettext_noop("paused")) if paused else Term(gettext_noop("running"))
            if dom.isPersistent() == vm.persistent:
                return source, Text(gettext_noop("{vm} is still {state} on {host} with its definition intact."),
                                    vm=vm.name, state=words, host=source)
            return source, Text(gettext_noop("{vm} is still {state} on {host} with its definition changed."),
                                vm=vm.name, state=words, host=source)
    except libvirt.libvirtError:
        pass
    with contextlib.suppress(libvirt.libvirtError):
        if dst.lookupByUUIDString(vm.uuid).isActive():
            return target, Text(gettext_noop("{vm} runs on {host}."), vm=vm.name, host=target)
    return source, Text(gettext_noop("{vm} is not running on {source} or {target}: check both hosts."), vm=vm.name,
                        source=source, target=target)


def precreate_volumes(dst: libvirt.virConnect, vm: VMFacts) -> list[libvirt.virStorageVol]:
    """Empty volumes of the same size and format for every disk copy-storage writes, in the target pool
    with the same path (or pool name). Returns what was made, so a failure can remove exactly that."""
    by_name, by_path = active_pools(dst)
    made: list[libvirt.virStorageVol] = []
    try:
        for disk in vm.disks:
            if not disk.copied or disk.capacity is None:
                continue
            pool = by_name[disk.pool] if disk.pool else by_name[by_path[os.path.dirname(disk.path)]]
            name = disk.volume or os.path.basename(disk.path)
            xml = StorageVolume.new(name=name, capacity=disk.capacity, allocation=0,
                                    format=disk.format if disk.format in ("qcow2", "raw") else "raw")
            made.append(pool.createXML(xml.to_xml(), 0))
    except KeyError:
        raise InvalidInput(gettext_noop("the target pool for a disk disappeared after the checks")) from None
    except libvirt.libvirtError:
        _delete(made)
        raise
    return made



# ---------------------------------------------------------------- after a worker died


_GONE = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_INVALID)


def migrating(conn: libvirt.virConnect, vm_uuid: str) -> bool:
    """Does libvirt still run a job (the migration) on the VM on this host? False when it is not there."""
    try:
        return bool(int(conn.lookupByUUIDString(vm_uuid).jobInfo()[0]) != libvirt.VIR_DOMAIN_JOB_NONE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _GONE:
            return False
        raise


def located(conn: libvirt.virConnect, vm_uuid: str, resume: bool = False) -> str:
    """What a host says about the VM: running, paused, shut off or absent. resume: a copy left paused by
    an unfinished migration (not by its user) runs again."""
    try:
        dom = conn.lookupByUUIDString(vm_uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return "absent"
        raise
    if not dom.isActive():
        return "shut off"
    state, reason = dom.state()
    if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION and resume:
        dom.resume()
        return "running"
    return "paused" if state == libvirt.VIR_DOMAIN_PAUSED else "running"


# ---------------------------------------------------------------- evacuation plan


def spread(vms: list[tuple[str, int]], free: dict[str, int]) -> dict[str, str]:
    """Evacuation plan: VM uuid -> target name. Largest VMs first, each to the target with the most free
    memory left after what is already planned there. `vms` are (uuid, memory bytes)."""
    left = dict(free)
    plan = {}
    for vm_uuid, memory in sorted(vms, key=lambda vm: -vm[1]):
        if not left:
            break
        best = max(sorted(left), key=lambda name: left[name])
        plan[vm_uuid] = best
        left[best] -= memory
    return plan
