"""Moving VMs between hosts: live and offline migration, progress, cancel, batches and the job registry.

A migration runs in a background thread with its own connections to both hosts (a long libvirt call
must not hold the panel's per-host call slots): it re-runs the pre-flight checks (migrate_checks),
then migrates while polling libvirt's job statistics, and can be aborted. Jobs and batches live in a
per-process registry keyed by a random id, so the page can poll them.
"""

from __future__ import annotations

import contextlib
import os.path
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import libvirt

from virt.connections import open_connection, start_event_loop
from virt.errors import InvalidInput, Unreachable, VirtError, explain_connect_failure, translate
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
from virt.xml.storage import StorageVolume

__all__ = ["Batch", "Endpoint", "Finding", "MigrationJob", "Options", "Progress", "Registry", "Report", "jobs",
           "precreate_volumes", "spread"]

OPEN_TIMEOUT = 10.0
POLL_SECONDS = 0.5
KEEP_FINISHED_SECONDS = 6 * 3600


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
    rate_bps: int | None = None
    elapsed_ms: int | None = None  # libvirt's job time
    downtime_ms: int | None = None
    percent: float = 0.0

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
            # Zero pages count as done without being sent: measure against what is left, not bytes sent.
            self.percent = round(max(self.percent, 100.0 * (self.total - self.remaining) / self.total), 1)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass
class Report:
    outcome: str  # done, failed, cancelled, refused, skipped
    message: str
    vm_host: str  # the panel host the VM is on now
    wall_s: float | None = None
    notes: list[str] = field(default_factory=list)


def _open(spec: ConnectionSpec, name: str, timeout: float = OPEN_TIMEOUT) -> libvirt.virConnect:
    """A connection of this job's own, opened with a deadline (an ssh open can hang)."""
    start_event_loop()  # keepalive needs libvirt's event loop
    box: dict[str, Any] = {}
    abandoned = threading.Event()

    def opener() -> None:
        try:
            conn = open_connection(spec)
        except libvirt.libvirtError as exc:
            box["error"] = explain_connect_failure((exc.get_error_message() or str(exc)).strip())
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
        raise Unreachable(f"no answer within {timeout:g} s")
    if "error" in box:
        raise Unreachable(str(box["error"]))
    conn = box["conn"]
    with contextlib.suppress(libvirt.libvirtError):
        conn.setKeepAlive(5, 3)  # a dead peer ends the job instead of hanging it
    return conn


def _close(conn: libvirt.virConnect | None) -> None:
    if conn is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


class MigrationJob:
    """One VM from source to target. run() blocks; start() runs it in a daemon thread.

    `before(job)` may raise VirtError to refuse (e.g. the VM is busy); `after(job)` runs at the end
    whatever happened (audit, locks). Both run in the job's thread."""

    def __init__(self, vm_uuid: str, vm_name: str, source: Endpoint, target: Endpoint, options: Options, *,
                 before: Callable[[MigrationJob], None] | None = None,
                 after: Callable[[MigrationJob], None] | None = None) -> None:
        self.id = ""
        self.vm_uuid, self.vm_name = vm_uuid.lower(), vm_name
        self.source, self.target, self.options = source, target, options
        self.before, self.after = before, after
        self.state = "waiting"  # waiting, checking, migrating, done, failed, cancelled, refused, skipped
        self.live: bool | None = None
        self.findings: list[Finding] = []
        self.progress = Progress()
        self.report: Report | None = None
        self.created = time.time()
        self.began: float | None = None  # monotonic
        self.ended: float | None = None
        self.context: dict[str, Any] = {}  # the caller's own bookkeeping (user, locks held)
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._dom: libvirt.virDomain | None = None  # set while libvirt migrates: what abortJob acts on

    # -- control

    def start(self) -> None:
        threading.Thread(target=self.run, name=f"migrate-{self.vm_name}", daemon=True).start()

    def cancel(self) -> bool:
        """Ask to stop; True if it was still running. The VM stays on the source."""
        if self.finished:
            return False
        self._cancel.set()
        with self._lock:
            dom = self._dom
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.abortJob()
        return True

    def skip(self, reason: str) -> None:
        self.state = "skipped"
        self.report = Report("skipped", reason, self.source.name)
        self.ended = time.monotonic()

    @property
    def finished(self) -> bool:
        return self.report is not None

    @property
    def wall_s(self) -> float | None:
        if self.began is None:
            return None
        return round((self.ended or time.monotonic()) - self.began, 3)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state for the page."""
        report = self.report
        return {
            "id": self.id, "vm_uuid": self.vm_uuid, "vm_name": self.vm_name, "source": self.source.name,
            "target": self.target.name, "state": self.state, "live": self.live,
            "options": self.options.describe(self.live is not False), "finished": self.finished,
            "findings": [f.as_dict() for f in self.findings], "progress": asdict(self.progress),
            "wall_s": self.wall_s, "report": asdict(report) if report else None,
        }

    # -- the work

    def run(self) -> None:
        self.began = time.monotonic()
        src = dst = None
        try:
            if self.before is not None:
                self.before(self)
            self.state = "checking"
            src = _open(self.source.spec, self.source.name)
            try:
                dst = _open(self.target.spec, self.target.name)
            except Unreachable as exc:
                self.findings = [unreachable(self.target.name, str(exc))]
                self._end("refused", "Nothing was moved: the pre-flight checks found a problem.", self.source.name)
                return
            dom = src.lookupByUUIDString(self.vm_uuid)
            vm = source_facts(dom)
            self.vm_name, self.live = vm.name, vm.active
            self.findings = judge(vm, target_facts(dst, vm), self.source.name, self.target.name, self.options,
                                  self.target.peer_uri)
            if blocking(self.findings):
                self._end("refused", "Nothing was moved: the pre-flight checks found a problem.", self.source.name)
            elif self._cancel.is_set():
                self._end("cancelled", f"Cancelled before it started: {vm.name} stays on {self.source.name}.",
                          self.source.name)
            elif vm.active:
                self._live(src, dst, dom, vm)
            else:
                self._offline(dst, dom, vm)
        except VirtError as exc:
            self._end("failed", f"{exc}", self.source.name)
        except libvirt.libvirtError as exc:
            self._end("failed", f"{translate(exc)}", self.source.name)
        except Exception as exc:  # never leave the page polling forever
            self._end("failed", f"unexpected error: {exc}", self.source.name)
        finally:
            _close(src)
            _close(dst)
            if self.after is not None:
                self.after(self)

    def _end(self, outcome: str, message: str, where: str, notes: list[str] | None = None) -> None:
        self.ended = time.monotonic()
        self.state = outcome
        self.report = Report(outcome, message, where, self.wall_s, notes or [])

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

    def _live(self, src: libvirt.virConnect, dst: libvirt.virConnect, dom: libvirt.virDomain, vm: VMFacts) -> None:
        self.state = "migrating"
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

        worker = threading.Thread(target=migrate, name=f"migrate3-{vm.name}", daemon=True)
        with self._lock:
            self._dom = dom
        worker.start()
        aborted = False
        while worker.is_alive():
            if self._cancel.is_set() and not aborted:
                try:  # refused while libvirt has not started its job yet: try again at the next poll
                    dom.abortJob()
                    aborted = True
                except libvirt.libvirtError:
                    pass
            with contextlib.suppress(libvirt.libvirtError):
                self.progress.update(dom.jobStats(0))
            worker.join(POLL_SECONDS)
        with self._lock:
            self._dom = None
        error = outcome.get("error")
        if error is None:
            self._live_done(src, dst, vm)
            return
        _delete(created)  # only what this job made
        if old_downtime is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.migrateSetMaxDowntime(int(old_downtime), 0)
        where, state_words = _whereabouts(src, dst, vm, self.source.name, self.target.name)
        cancelled = self._cancel.is_set() or error.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED
        if cancelled:
            self._end("cancelled", f"Cancelled. {state_words}", where)
        else:
            self._end("failed", f"The migration failed: {translate(error)}. {state_words}", where)

    def _live_done(self, src: libvirt.virConnect, dst: libvirt.virConnect, vm: VMFacts) -> None:
        """libvirt says it is done: figures and housekeeping, none of which may turn it into a failure."""
        notes = []
        try:
            new = dst.lookupByUUIDString(vm.uuid)
            stats = _optional(new.jobStats, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED) or {}
            self.progress.update(stats)
            self.progress.downtime_ms = _int(stats.get("downtime"))
            if vm.autostart:
                new.setAutostart(1)  # migration does not carry the autostart flag
                notes.append(f"Autostart is on for {vm.name} on {self.target.name}.")
        except libvirt.libvirtError as exc:
            notes.append(f"{self.target.name} did not answer after the migration ({translate(exc)}): check its "
                         "autostart setting.")
        self.progress.percent = 100.0
        if self.options.keep_source:
            notes.append(f"{self.source.name} keeps an inactive definition of {vm.name}.")
            if vm.autostart:
                with contextlib.suppress(libvirt.libvirtError):
                    src.lookupByUUIDString(vm.uuid).setAutostart(0)
                    notes.append(f"Autostart was turned off on {self.source.name}.")
        if self.options.copy_storage:
            notes += [f"The source copy of disk {d.dev} stays on {self.source.name} at {d.path}: delete it when "
                      "you no longer need it." for d in vm.disks if d.copied]
        figures = []
        if self.progress.elapsed_ms is not None:
            figures.append(f"libvirt job {self.progress.elapsed_ms / 1000:.1f} s")
        if self.progress.downtime_ms is not None:
            figures.append(f"downtime {self.progress.downtime_ms} ms")
        about = f" ({', '.join(figures)})" if figures else ""
        self._end("done", f"{vm.name} now runs on {self.target.name}{about}.", self.target.name, notes)

    def _offline(self, dst: libvirt.virConnect, dom: libvirt.virDomain, vm: VMFacts) -> None:
        """A shut-off VM: define it on the target from its full definition, then undefine the source."""
        self.state = "migrating"
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        new = dst.defineXML(xml)
        self.progress.percent = 50.0
        notes = []
        if vm.autostart:
            new.setAutostart(1)
            notes.append(f"Autostart is on for {vm.name} on {self.target.name}.")
        if self.options.keep_source:
            notes.append(f"{self.source.name} keeps its definition of {vm.name}.")
            if vm.autostart:
                dom.setAutostart(0)
                notes.append(f"Autostart was turned off on {self.source.name}.")
        else:
            try:
                _undefine_keeping_nvram(dom)
            except libvirt.libvirtError as exc:
                notes.append(f"{self.source.name} could not remove its definition ({translate(exc)}): the VM is "
                             f"now defined on both hosts; remove it from {self.source.name} by hand.")
        self.progress.percent = 100.0
        self._end("done", f"{vm.name} (shut off) is now defined on {self.target.name}.", self.target.name, notes)


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
            words = "paused" if state == libvirt.VIR_DOMAIN_PAUSED else "running"
            kept = "its definition intact" if dom.isPersistent() == vm.persistent else "its definition changed"
            return source, f"{vm.name} is still {words} on {source} with {kept}."
    except libvirt.libvirtError:
        pass
    with contextlib.suppress(libvirt.libvirtError):
        if dst.lookupByUUIDString(vm.uuid).isActive():
            return target, f"{vm.name} runs on {target}."
    return source, f"{vm.name} is not running on {source} or {target}: check both hosts."


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
        raise InvalidInput("the target pool for a disk disappeared after the checks") from None
    except libvirt.libvirtError:
        _delete(made)
        raise
    return made


# ---------------------------------------------------------------- several VMs, one after another


class Batch:
    """Migrations run one at a time (host evacuation, several VMs from the fleet view); stop() aborts the
    current one and skips the rest."""

    def __init__(self, title: str, jobs: list[MigrationJob], *,
                 after: Callable[[Batch], None] | None = None) -> None:
        self.id = ""
        self.title = title
        self.jobs = jobs
        self.after = after
        self.stopped = False
        self.began: float | None = None
        self.ended: float | None = None
        self.current: MigrationJob | None = None

    def start(self) -> None:
        threading.Thread(target=self.run, name=f"migrate-batch-{self.id}", daemon=True).start()

    def run(self) -> None:
        self.began = time.monotonic()
        try:
            for job in self.jobs:
                if self.stopped:
                    job.skip("Stopped before its turn: nothing was moved.")
                    continue
                self.current = job
                job.run()
            self.current = None
        finally:
            self.ended = time.monotonic()
            if self.after is not None:
                self.after(self)

    def stop(self) -> bool:
        if self.finished:
            return False
        self.stopped = True
        current = self.current
        if current is not None:
            current.cancel()
        return True

    @property
    def finished(self) -> bool:
        return self.ended is not None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for job in self.jobs:
            out[job.state] = out.get(job.state, 0) + 1
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "finished": self.finished, "stopped": self.stopped,
                "counts": self.counts(), "jobs": [job.snapshot() for job in self.jobs],
                "wall_s": round((self.ended or time.monotonic()) - self.began, 3) if self.began else None}


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


# ---------------------------------------------------------------- the registry the pages poll


class Registry:
    """Jobs and batches of this process, by a random id; finished ones are forgotten after a while."""

    def __init__(self, keep_seconds: float = KEEP_FINISHED_SECONDS) -> None:
        self.keep_seconds = keep_seconds
        self._items: dict[str, tuple[MigrationJob | Batch, Any]] = {}
        self._lock = threading.Lock()

    def add(self, item: MigrationJob | Batch, owner: Any = None) -> str:
        """Register (and name) a job or batch; `owner` is whatever the caller checks access with."""
        item.id = secrets.token_hex(12)
        if isinstance(item, Batch):
            for index, job in enumerate(item.jobs):
                job.id = f"{item.id}-{index}"
        with self._lock:
            now = time.monotonic()
            for key, (old, _owner) in list(self._items.items()):
                if old.ended is not None and now - old.ended > self.keep_seconds:
                    del self._items[key]
            self._items[item.id] = (item, owner)
        return item.id

    def get(self, item_id: str) -> tuple[MigrationJob | Batch, Any] | None:
        with self._lock:
            return self._items.get(item_id)


jobs = Registry()
