"""Volume clone, wipe and a creation that allocates all its space: long storage operations declared as
durable jobs (jobs/runner.py).

Each runs on its host's long lane without a deadline, as long as the copy, wipe or allocation needs. At
most MAX_PER_HOST storage jobs are queued or running per host, and a volume being worked on is "busy",
counted over the Job rows every panel process shares. The views start them through their declared
operations (storage/operations.py: VOLUME_CLONE, VOLUME_WIPE, VOLUME_CREATE) with
webkvm.operations.start_job. A volume created without allocation (sparse) stays in the request
(storage/views/volumes.py); the job's kind is the operation's name, so every creation is audited as
volume.create. When a copy's or an allocation's worker died, what libvirt wrote is removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import reverse

from hosts import services
from jobs.models import Job
from jobs.runner import Handle, Kind, StillBusy, register
from jobs.words import Words
from storage import operations as ops
from storage.operations import ACTION_TIMEOUT
from virt.errors import Message, Unreachable, VirtError, gettext_noop
from virt.volumes import NewVolumeSpec, allocation_of, clone_volume, create_volume, remove_partial, wipe_volume

MAX_PER_HOST = 2
JOB_TIMEOUT = 24 * 3600.0  # the deadline of one copy or wipe: as long as it takes
COPYING = "copying"  # the English of the phase while copying (Job.phase): the reconciliation looks for it
ALLOCATING = "allocating"  # the same while a new volume's space is allocated


def _on_host(handle: Handle, fn: Callable[[Any], object], measure: Callable[[], int | None] | None = None) -> None:
    host = handle.host
    if host is None:
        raise VirtError(gettext_noop("The job's host was removed from the panel."))
    try:
        pending = services.connection(host).submit(fn, timeout=JOB_TIMEOUT)  # the long lane, never a page's slot
    except ValueError as exc:  # a stored value that no longer validates
        raise VirtError(str(exc)) from None
    handle.follow(pending.future, measure)


def _clone(handle: Handle) -> Words:
    p = handle.params
    pool, source, name, fmt, total = p["pool"], p["source"], p["name"], p["format"], int(p["total"])
    host = handle.host

    def allocated() -> int | None:
        found = services.call(host, lambda conn: allocation_of(conn, pool, name)) if host else None
        return found[0] if found else 0

    handle.progress(0, total, Message(gettext_noop("copying")))
    _on_host(handle, lambda conn: clone_volume(conn, pool, source, name, fmt), allocated if total else None)
    handle.progress(done=total, phase=Message(gettext_noop("copied")))
    return Message(gettext_noop("Volume {name} made, a copy of {source}."), name=name, source=source)


# What the reconciliation says when it removes what a copy or an allocation left (one sentence per case).
_PARTIAL_COPY = {
    "unreachable": gettext_noop("{host} does not answer ({error}); the partial copy {name} is removed once it does."),
    "failed": gettext_noop("The partial copy {name} could not be removed: {error}"),
    "building": gettext_noop("libvirt is still writing {name}; the partial copy is removed once it has finished."),
    "removed": gettext_noop("The partial copy {name} was removed."),
    "absent": gettext_noop("No partial copy was left."),
}
_UNFINISHED = {
    "unreachable": gettext_noop("{host} does not answer ({error}); the unfinished volume {name} is removed once it "
                                "does."),
    "failed": gettext_noop("The unfinished volume {name} could not be removed: {error}"),
    "building": gettext_noop("libvirt is still allocating {name}; the unfinished volume is removed once it has "
                             "finished."),
    "removed": gettext_noop("The unfinished volume {name} was removed."),
    "absent": gettext_noop("No unfinished volume was left."),
}


def _remove_left(job: Job, words: dict[str, str]) -> Words:
    """Remove the volume the job's libvirt call was writing (its name was new when the job began, so it is the
    job's), or raise StillBusy while libvirt goes on writing it or the host does not answer."""
    name, pool, host = job.params["name"], job.params["pool"], job.host
    assert host is not None
    try:
        outcome = services.change(host, lambda conn: remove_partial(conn, pool, name), ACTION_TIMEOUT)
    except Unreachable as exc:
        raise StillBusy(Message(words["unreachable"], host=host.name, error=exc, name=name)) from None
    except VirtError as exc:
        return Message(words["failed"], name=name, error=exc)
    if outcome == "building":
        raise StillBusy(Message(words["building"], name=name))
    return Message(words["removed"], name=name) if outcome == "removed" else Message(words["absent"])


def _clone_interrupted(job: Job) -> Words:
    """The worker died while copying: whatever libvirt wrote is a partial copy, removed once it can be."""
    if job.phase != COPYING or job.host is None:
        return ""  # the copy never began: it made nothing
    return _remove_left(job, _PARTIAL_COPY)


def _create(handle: Handle) -> Words:
    p = handle.params
    pool, total = p["pool"], int(p["total"])
    spec = NewVolumeSpec(p["name"], int(p["capacity"]), p["format"], True, p.get("backing", ""))
    host = handle.host

    def allocated() -> int | None:
        found = services.call(host, lambda conn: allocation_of(conn, pool, spec.name)) if host else None
        return found[0] if found else 0

    handle.progress(0, total, Message(gettext_noop("allocating")))  # from here on, a volume of that name is ours
    try:
        _on_host(handle, lambda conn: create_volume(conn, pool, spec), allocated if total else None)
    finally:
        if host is not None:
            try:
                services.connection(host).reads.invalidate()  # the pool's page shows the new volume (or its absence)
            except ValueError:
                pass
    handle.progress(done=total, phase=Message(gettext_noop("allocated")))
    return Message(gettext_noop("Volume {name} created, its space allocated."), name=spec.name)


def _create_interrupted(job: Job) -> Words:
    """The worker died while libvirt allocated: the volume it had begun is removed once it can be."""
    if job.phase != ALLOCATING or job.host is None:
        return Message(gettext_noop("It made nothing."))
    return _remove_left(job, _UNFINISHED)


def _wipe(handle: Handle) -> Words:
    pool, name = handle.params["pool"], handle.params["name"]
    handle.progress(phase=Message(gettext_noop("overwriting with zeros")))
    _on_host(handle, lambda conn: wipe_volume(conn, pool, name))
    return Message(gettext_noop("Volume {name} overwritten with zeros."), name=name)


def _wipe_interrupted(job: Job) -> Words:
    if not job.started:
        return ""
    return Message(gettext_noop("Volume {name} may be partly overwritten."), name=job.params["name"])


def _pool_page(job: Job) -> str | None:
    return reverse("storage:pool", args=[job.host.name, job.params["pool"]]) if job.host else None


CLONE = register(Kind("volume.clone", gettext_noop("Clone volume"), _clone, unit="bytes", lane="storage",
                      per_host=MAX_PER_HOST, link=_pool_page, interrupted=_clone_interrupted))
CREATE = register(Kind(ops.VOLUME_CREATE.job, gettext_noop("Create volume"), _create, unit="bytes", lane="storage",
                       per_host=MAX_PER_HOST, link=_pool_page, interrupted=_create_interrupted))
WIPE = register(Kind("volume.wipe", gettext_noop("Wipe volume"), _wipe, lane="storage", per_host=MAX_PER_HOST,
                     link=_pool_page, interrupted=_wipe_interrupted))

