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
from storage.operations import ACTION_TIMEOUT
from virt.errors import Unreachable, VirtError
from virt.volumes import allocation_of, clone_volume, remove_partial, wipe_volume

MAX_PER_HOST = 2
JOB_TIMEOUT = 24 * 3600.0  # the deadline of one copy or wipe: as long as it takes
COPYING = "copying"


def _on_host(handle: Handle, fn: Callable[[Any], object], measure: Callable[[], int | None] | None = None) -> None:
    host = handle.host
    if host is None:
        raise VirtError("The job's host was removed from the panel.")
    try:
        pending = services.connection(host).submit(fn, timeout=JOB_TIMEOUT)  # the long lane, never a page's slot
    except ValueError as exc:  # a stored value that no longer validates
        raise VirtError(str(exc)) from None
    handle.follow(pending.future, measure)


def _clone(handle: Handle) -> str:
    p = handle.params
    pool, source, name, fmt, total = p["pool"], p["source"], p["name"], p["format"], int(p["total"])
    host = handle.host

    def allocated() -> int | None:
        found = services.call(host, lambda conn: allocation_of(conn, pool, name)) if host else None
        return found[0] if found else 0

    handle.progress(0, total, COPYING)
    _on_host(handle, lambda conn: clone_volume(conn, pool, source, name, fmt), allocated if total else None)
    handle.progress(done=total, phase="copied")
    return f"Volume {name} made, a copy of {source}."


def _clone_interrupted(job: Job) -> str:
    """The worker died while copying: whatever libvirt wrote is a partial copy, removed once it can be."""
    name, pool = job.params["name"], job.params["pool"]
    if job.phase != COPYING or job.host is None:
        return ""  # the copy never began: it made nothing
    host = job.host
    try:
        outcome = services.change(host, lambda conn: remove_partial(conn, pool, name), ACTION_TIMEOUT)
    except Unreachable as exc:
        raise StillBusy(f"{host.name} does not answer ({exc}); the partial copy {name} is removed once it does."
                        ) from None
    except VirtError as exc:
        return f"The partial copy {name} could not be removed: {exc}"
    if outcome == "building":
        raise StillBusy(f"libvirt is still writing {name}; the partial copy is removed once it has finished.")
    return f"The partial copy {name} was removed." if outcome == "removed" else "No partial copy was left."


def _wipe(handle: Handle) -> str:
    pool, name = handle.params["pool"], handle.params["name"]
    handle.progress(phase="overwriting with zeros")
    _on_host(handle, lambda conn: wipe_volume(conn, pool, name))
    return f"Volume {name} overwritten with zeros."


def _wipe_interrupted(job: Job) -> str:
    return f"Volume {job.params['name']} may be partly overwritten." if job.started else ""


def _pool_page(job: Job) -> str | None:
    return reverse("storage:pool", args=[job.host.name, job.params["pool"]]) if job.host else None


CLONE = register(Kind("volume.clone", "Clone volume", _clone, unit="bytes", lane="storage", per_host=MAX_PER_HOST,
                      link=_pool_page, interrupted=_clone_interrupted))
WIPE = register(Kind("volume.wipe", "Wipe volume", _wipe, lane="storage", per_host=MAX_PER_HOST, link=_pool_page,
                     interrupted=_wipe_interrupted))

