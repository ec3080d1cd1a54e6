"""Long storage operations (clone, wipe) run in the background; the page polls their progress.

A job runs on its host's own connection threads without a deadline, so it may take as long
as the copy needs; at most MAX_PER_HOST run per host so page requests always find a free
thread. Jobs live in this process (the panel runs one worker by default) and are forgotten
an hour after they end. Each writes its one audit record when it ends.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import libvirt
from django.db import connections
from django.http import HttpRequest

from hosts import services
from hosts.models import Host
from virt.errors import Busy, VirtError
from virt.volumes import allocation_of
from webkvm import audit
from webkvm.models import AuditResult

log = logging.getLogger(__name__)
MAX_PER_HOST = 2
KEEP_SECONDS = 3600
JOB_TIMEOUT = 24 * 3600.0  # the deadline of one copy or wipe: as long as it takes


@dataclass
class Job:
    id: str
    kind: str  # clone, wipe
    host: Host
    pool: str
    volume: str  # the volume being made (clone) or changed (wipe)
    detail: str  # what the audit record says
    total: int = 0  # bytes expected in the new volume; 0: progress cannot be measured
    state: str = "running"  # running, done, failed
    error: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    user: Any = None
    remote_addr: str | None = None

    def as_dict(self, done: int | None = None) -> dict[str, Any]:
        percent = None
        if self.state == "done":
            percent = 100.0
        elif done is not None and self.total:
            percent = min(99.0, round(100.0 * done / self.total, 1))  # 100 only once libvirt says so
        return {"id": self.id, "kind": self.kind, "pool": self.pool, "volume": self.volume, "state": self.state,
                "error": self.error, "done": done, "total": self.total or None, "percent": percent,
                "seconds": round((self.finished or time.time()) - self.started, 1)}


_jobs: dict[str, Job] = {}
_lock = threading.Lock()


def _forget_old() -> None:
    cutoff = time.time() - KEEP_SECONDS
    for key in [k for k, job in _jobs.items() if job.finished and job.finished < cutoff]:
        del _jobs[key]


def start(request: HttpRequest, host: Host, kind: str, pool: str, volume: str, detail: str,
          work: Callable[[libvirt.virConnect], object], total: int = 0) -> Job:
    """Run work(conn) in the background; raises Busy when the host already runs MAX_PER_HOST jobs."""
    with _lock:
        _forget_old()
        running = [j for j in _jobs.values() if j.host.pk == host.pk and j.state == "running"]
        if len(running) >= MAX_PER_HOST:
            raise Busy(f"{host.name} already runs {len(running)} storage jobs; wait for one to end.")
        if any(j.pool == pool and j.volume == volume for j in running):
            raise Busy(f"Volume {volume} is already being worked on.")
        job = Job(secrets.token_urlsafe(12), kind, host, pool, volume, detail, total,
                  user=request.user, remote_addr=request.META.get("REMOTE_ADDR"))
        _jobs[job.id] = job
    try:
        # A copy or wipe takes as long as it takes: it runs in the host's long lane, never in a page's slot.
        pending = services.connection(host).submit(work, timeout=JOB_TIMEOUT)
    except (VirtError, ValueError) as exc:
        with _lock:
            del _jobs[job.id]
        raise VirtError(str(exc)) from None
    pending.add_done_callback(lambda f: _finished(job, f))
    return job


def _finished(job: Job, future: Future[object]) -> None:
    error = future.exception()
    job.error = str(error) if error else ""
    job.state = "failed" if error else "done"
    job.finished = time.time()
    try:
        audit.record(None, f"volume.{job.kind}", object_type="volume", object_name=f"{job.pool}/{job.volume}",
                     host_name=job.host.name, result=AuditResult.FAILED if error else AuditResult.OK,
                     detail=f"{job.detail}{f': {error}' if error else ''} ({job.as_dict()['seconds']} s)",
                     user=job.user, remote_addr=job.remote_addr)
    except Exception:  # the job's outcome must never be lost to a database hiccup
        log.exception("could not audit storage job %s", job.id)
    finally:
        connections.close_all()  # this thread is libvirt's, not a request's: hold no connection


def get(job_id: str) -> Job | None:
    with _lock:
        return _jobs.get(job_id)


def progress(job: Job) -> dict[str, Any]:
    """The job as JSON, with the bytes the new volume holds so far (one libvirt call while running)."""
    done = None
    if job.state == "running" and job.total:
        try:
            found = services.call(job.host, lambda conn: allocation_of(conn, job.pool, job.volume))
            done = found[0] if found else 0
        except VirtError:
            done = None  # a busy host: the next poll will tell
    return job.as_dict(done)
