"""Volume clone and wipe: long storage operations declared as durable jobs (jobs/runner.py).

Each runs on its host's long lane without a deadline, as long as the copy or wipe needs. At most
MAX_PER_HOST storage jobs are queued or running per host, and a volume being worked on is "busy",
counted over the Job rows every panel process shares. The views start them through their declared
operations (storage/operations.py: VOLUME_CLONE, VOLUME_WIPE) with webkvm.operations.start_job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import reverse

from hosts import services
from jobs.models import Job
from jobs.runner import Handle, Kind, StillBusy, register
from jobs.words import Words
from storage.operations import ACTION_TIMEOUT
from virt.errors import Message, Unreachable, VirtError, gettext_noop
from virt.volumes import allocation_of, clone_volume, remove_partial, wipe_volume

MAX_PER_HOST = 2
JOB_TIMEOUT = 24 * 3600.0  # the deadline of one copy or wipe: as long as it takes
COPYING = "copying"  # the English of the phase while copying (Job.phase): the reconciliation looks for it


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


def _clone_interrupted(job: Job) -> Words:
    """The worker died while copying: whatever libvirt wrote is a partial copy, removed once it can be."""
    name, pool = job.params["name"], job.params["pool"]
    if job.phase != COPYING or job.host is None:
        return ""  # the copy never began: it made nothing
    host = job.host
    try:
        outcome = services.change(host, lambda conn: remove_partial(conn, pool, name), ACTION_TIMEOUT)
    except Unreachable as exc:
        raise StillBusy(Message(gettext_noop("{host} does not answer ({error}); the partial copy {name} is removed "
                                             "once it does."), host=host.name, error=exc, name=name)) from None
    except VirtError as exc:
        return Message(gettext_noop("The partial copy {name} could not be removed: {error}"), name=name, error=exc)
    if outcome == "building":
        raise StillBusy(Message(gettext_noop("libvirt is still writing {name}; the partial copy is removed once it "
                                             "has finished."), name=name))
    if outcome == "removed":
        return Message(gettext_noop("The partial copy {name} was removed."), name=name)
    return Message(gettext_noop("No partial copy was left."))


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
WIPE = register(Kind("volume.wipe", gettext_noop("Wipe volume"), _wipe, lane="storage", per_host=MAX_PER_HOST,
                     link=_pool_page, interrupted=_wipe_interrupted))

