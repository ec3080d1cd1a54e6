"""A running VM's snapshot, and going back to a snapshot that holds memory, as durable jobs (jobs/runner.py):
libvirt writes the VM's whole memory into its qcow2 disks, or loads it back from them, which can take minutes.

The VM's lock is taken by the request that starts the job (so a refusal is immediate) and handed to the
job by its token, as instances/clone_jobs.py does: the job's worker renews it while libvirt writes, and it
is released when the job ends in any state, when it is cancelled before it ran, and by the reconciliation
when the job's worker died (once libvirt says what became of the snapshot). The job's kind is the
operation's name (instances/operations.py SNAPSHOT_CREATE), so every snapshot taken is audited as
vm.snapshot.create whether it ran in the request (a shut-off VM) or here; likewise SNAPSHOT_REVERT, audited as
vm.snapshot.revert whether it ran in the request (a disk-only snapshot) or here. When a revert's worker died,
libvirt is asked whether it still works on the VM (then again later) and whether the snapshot is now the VM's
current one (then it went back after all, when it was not before).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import libvirt
from django.http import HttpRequest
from django.urls import reverse

from hosts import services
from hosts.models import Host
from instances import operations as ops
from jobs.models import Job
from jobs.reconcile import Completed
from jobs.runner import Handle, Kind, StillBusy, register
from jobs.words import Words
from virt import snapshots
from virt.errors import Message, NotFound, Text, Unreachable, VirtError, gettext_noop
from webkvm.operations import start_job

WRITING = Text(gettext_noop("writing memory and disks"))  # the phase: equal to its English
LOADING = Text(gettext_noop("loading memory and disks"))
JOB_TIMEOUT = 6 * 3600.0  # the deadline of the libvirt call: a VM with a lot of memory on slow disks
MEASURE_TIMEOUT = 10.0  # asking how far libvirt is: a short call, in a slot of the host's connection
TIDY_TIMEOUT = 60.0
CURRENT = "current"  # what the reconciliation finds when the snapshot is the VM's current one
T = TypeVar("T")


def _locked_call(handle: Handle, phase: Words, fn: Callable[[libvirt.virDomain], T]) -> T:
    """fn(the VM's domain) on the host's long lane, under the VM's lock the request handed over (renewed here,
    released when it ends), with libvirt's memory figures as progress."""
    host, p = handle.host, handle.params
    key, vm, token = p["host_key"], p["vm"], p["lock"]
    try:
        if host is None:
            raise VirtError(gettext_noop("The job's host was removed from the panel."))
        services.vm_locks.adopt(key, vm, token)  # Busy if it lapsed and somebody else took the VM meanwhile
        handle.progress(phase=phase)
        try:
            pending = services.connection(host).submit(lambda conn: fn(conn.lookupByUUIDString(vm)), JOB_TIMEOUT)
        except ValueError as exc:  # a stored value that no longer validates
            raise VirtError("{error}", error=exc) from None  # its own words (a BadValue of ours, translated)
        result: T = handle.follow(pending.future, _measure(handle, host, vm), every=2.0)
        return result
    finally:
        services.vm_locks.release_token(key, vm, token)
        if host is not None:
            try:
                services.connection(host).reads.invalidate()  # the next page shows what changed
            except ValueError:
                pass


def _snapshot(handle: Handle) -> Words:
    p = handle.params
    vm, name, description = p["vm"], p["name"], p["description"]
    info = _locked_call(handle, WRITING, lambda dom: snapshots.create(dom, name, description))
    if info.with_memory:
        return Message(gettext_noop("Snapshot {name} of {vm} taken with its memory (uuid {uuid})."), name=info.name,
                       vm=p["vm_name"], uuid=vm)
    return Message(gettext_noop("Snapshot {name} of {vm} taken of its disks (it was shut off meanwhile) "
                                "(uuid {uuid})."), name=info.name, vm=p["vm_name"], uuid=vm)


def _revert(handle: Handle) -> Words:
    p = handle.params
    info = _locked_call(handle, LOADING, lambda dom: snapshots.revert(dom, p["name"]))
    return Message(gettext_noop("{vm} went back to snapshot {name}, its memory loaded ({state}) (uuid {uuid})."),
                   vm=p["vm_name"], name=info.name, state=info.state, uuid=p["vm"])


def _measure(handle: Handle, host: Host, vm: str) -> Callable[[], int | None]:
    """How far libvirt is, from its job statistics: reported as done/total when it tells (qemu for some
    snapshot kinds), else the phase alone stays on the job page."""

    def measure() -> int | None:
        figures = services.call(host, lambda conn: snapshots.memory_progress(conn.lookupByUUIDString(vm)),
                                MEASURE_TIMEOUT)
        if figures is None:
            return None
        done, total = figures
        if total != handle.job.total:
            handle.progress(total=total)
        return done

    return measure


def _snapshot_interrupted(job: Job) -> Words:
    """The worker died while libvirt wrote: ask libvirt whether the snapshot exists (then the job is done
    after all), whether it still works on the VM (then ask again later), or neither (interrupted)."""
    p = job.params
    if job.started is None or job.host is None:
        _unlock(job)
        return ""
    host, vm, name = job.host, p["vm"], p["name"]
    try:
        found = services.call(host, lambda conn: snapshots.after_interruption(conn.lookupByUUIDString(vm), name),
                              TIDY_TIMEOUT)
    except NotFound:
        _unlock(job)
        return Message(gettext_noop("The VM {vm} is gone."), vm=p["vm_name"])
    except Unreachable as exc:
        raise StillBusy(Message(gettext_noop("{host} does not answer ({error}); whether snapshot {name} was taken is "
                                             "asked again once it does."), host=host.name, error=exc, name=name)
                        ) from None
    except VirtError as exc:
        _unlock(job)
        return Message(gettext_noop("Whether snapshot {name} was taken could not be asked: {error}"), name=name,
                       error=exc)
    if found == snapshots.BUSY:
        raise StillBusy(Message(gettext_noop("libvirt is still working on {vm}; whether snapshot {name} was taken is "
                                             "asked again once it has finished."), vm=p["vm_name"], name=name))
    _unlock(job)
    if found == snapshots.EXISTS:  # taken after all: the job ends done
        raise Completed(Message(gettext_noop("snapshot {name} of {vm} was taken (uuid {uuid})."), name=name,
                                vm=p["vm_name"], uuid=vm))
    return Message(gettext_noop("Snapshot {name} was not taken."), name=name)


def _revert_interrupted(job: Job) -> Words:
    """The worker died while libvirt loaded the snapshot: ask libvirt whether it still works on the VM (then ask
    again later) and whether the snapshot is now the VM's current one."""
    p = job.params
    if job.started is None or job.host is None:
        _unlock(job)
        return ""
    host, vm, name = job.host, p["vm"], p["name"]

    def ask(dom: libvirt.virDomain) -> str:
        if snapshots.has_active_job(dom):
            return snapshots.BUSY
        current = [s.name for s in snapshots.list_snapshots(dom) if s.current]
        return CURRENT if current == [name] else snapshots.ABSENT

    try:
        found = services.call(host, lambda conn: ask(conn.lookupByUUIDString(vm)), TIDY_TIMEOUT)
    except NotFound:
        _unlock(job)
        return Message(gettext_noop("The VM {vm} is gone."), vm=p["vm_name"])
    except Unreachable as exc:
        raise StillBusy(Message(gettext_noop("{host} does not answer ({error}); whether {vm} went back to snapshot "
                                             "{name} is asked again once it does."), host=host.name, error=exc,
                                vm=p["vm_name"], name=name)) from None
    except VirtError as exc:
        _unlock(job)
        return Message(gettext_noop("Whether {vm} went back to snapshot {name} could not be asked: {error}"),
                       vm=p["vm_name"], name=name, error=exc)
    if found == snapshots.BUSY:
        raise StillBusy(Message(gettext_noop("libvirt is still working on {vm}; whether it went back to snapshot "
                                             "{name} is asked again once it has finished."), vm=p["vm_name"],
                                name=name))
    _unlock(job)
    if found == CURRENT and not p.get("was_current"):  # it became the current snapshot: the revert happened
        raise Completed(Message(gettext_noop("{vm} went back to snapshot {name} (uuid {uuid})."), vm=p["vm_name"],
                                name=name, uuid=vm))
    if found == CURRENT:
        return Message(gettext_noop("Whether {vm} went back to snapshot {name} is not known (it was already the "
                                    "current snapshot): look at the VM before using it."), vm=p["vm_name"], name=name)
    return Message(gettext_noop("{vm} did not go back to snapshot {name}."), vm=p["vm_name"], name=name)


def _unlock(job: Job) -> None:
    """Lets go of the VM's lock the request took for the job (it ended, or never ran)."""
    services.vm_locks.release_token(job.params["host_key"], job.params["vm"], job.params["lock"])


def _snapshots_page(job: Job) -> str | None:
    return reverse("instances:snapshots", args=[job.host.name, job.params["vm"]]) if job.host else None


SNAPSHOT = register(Kind(ops.SNAPSHOT_CREATE.job, gettext_noop("Take snapshot with memory"), _snapshot, unit="bytes",
                         link=_snapshots_page, link_text=gettext_noop("Show the snapshots"),
                         interrupted=_snapshot_interrupted, never_ran=_unlock))
REVERT = register(Kind(ops.SNAPSHOT_REVERT.job, gettext_noop("Revert to snapshot with memory"), _revert,
                       unit="bytes", link=_snapshots_page, link_text=gettext_noop("Show the snapshots"),
                       interrupted=_revert_interrupted, never_ran=_unlock))


def start_snapshot(request: HttpRequest, host: Host, vm_uuid: str, vm_name: str, name: str, description: str,
                   lock: str, *, quiet: bool = False) -> Job | None:
    """Start the snapshot of a running VM whose lock the request holds (`lock`: its token, handed to the job).
    None when it could not start: the refusal is audited and said (`quiet`: raised), and the lock is still the
    caller's."""
    job: Job | None = start_job(
        request, ops.SNAPSHOT_CREATE, host=host, name=vm_name,
        params={"host_key": str(host.pk), "vm": vm_uuid.lower(), "vm_name": vm_name, "lock": lock, "name": name,
                "description": description},
        summary=Message(gettext_noop("snapshot {name} of {vm} with its memory"), name=name, vm=vm_name), quiet=quiet)
    return job


def start_revert(request: HttpRequest, host: Host, vm_uuid: str, vm_name: str, snapshot: snapshots.SnapshotInfo,
                 lock: str, *, quiet: bool = False) -> Job | None:
    """Start going back to a snapshot that holds memory, of a VM whose lock the request holds (`lock`: its
    token, handed to the job). None when it could not start (as start_snapshot)."""
    job: Job | None = start_job(
        request, ops.SNAPSHOT_REVERT, host=host, name=vm_name,
        params={"host_key": str(host.pk), "vm": vm_uuid.lower(), "vm_name": vm_name, "lock": lock,
                "name": snapshot.name, "was_current": snapshot.current},
        summary=Message(gettext_noop("{vm} back to snapshot {name}, with its memory"), name=snapshot.name,
                        vm=vm_name), quiet=quiet)
    return job
