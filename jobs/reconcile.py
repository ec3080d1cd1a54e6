"""Jobs whose worker is gone are ended truthfully: "interrupted", with what was done, leftovers removed.

Run when a job page or the job list is shown and when `manage.py serve` starts; `now_and_then()` (at most
once per lease period among all the panel's processes) before the job socket and the API read a job, before
a job is admitted, and every lease period while `manage.py serve` runs. A job a thread of this process runs
is alive; a running job while its worker renews its lease (jobs/liveness.py); a queued one while the job
queue still holds it (or, run by a panel thread: the panel alone, a test-driver host, while the process that
has it lives: briefly after it was made), and a queued step of a parent job (one migration of a host
evacuation) while its parent is active: the parent runs it. Taking a dead job's lease first means two
processes never tidy up the same job at once.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import redis
import rq
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import JobStatus

from jobs import liveness, runner
from jobs.models import ACTIVE, Job, JobState
from jobs.words import Words, stored
from virt.errors import Message, gettext_noop
from webkvm import redis_store

log = logging.getLogger(__name__)
OWNER = liveness.new_owner("reconciler")
QUEUE_GRACE = timedelta(seconds=60)  # a job row is written just before it reaches its worker
WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
EVERY = liveness.LEASE_SECONDS  # now_and_then(): no more often (a dead worker's lease takes as long to lapse)
LAST_KEY = "webkvm:jobs:reconciled"  # in Redis: set (with that expiry) by the process that reconciled last
_last_here = 0.0  # without Redis: time.monotonic() of this process's last reconciliation
_last_lock = threading.Lock()


class Completed(Exception):
    """Raised by a kind's `interrupted` hook when the work turned out done all the same (libvirt finished
    a migration whose worker died): the job ends done, with these words (a Message of ours, or text)."""

    def __init__(self, words: Words) -> None:
        super().__init__(words)
        self.words = words

    def __str__(self) -> str:
        return str(self.words)


def reconcile() -> int:
    """End every queued or running job whose worker is gone; returns how many were ended."""
    ended = 0
    for job in Job.objects.filter(state__in=ACTIVE).select_related("host"):
        try:
            why = _gone(job)
        except redis.RedisError as exc:
            log.warning("cannot check job %s: %s", job.pk, exc)
            return ended  # Redis away: nothing can be told now
        if why is None:
            continue
        try:
            if _end(job, why):
                ended += 1
        finally:
            liveness.unclaim(job.pk, OWNER)
    return ended


def due() -> bool:
    """Is it this process's turn to reconcile (none did in the last EVERY seconds)? Taking the turn is one
    SET NX with that expiry in Redis, shared by every process of the panel; in this process without it."""
    global _last_here
    shared = redis_store.client()
    if shared is not None:
        return bool(shared.set(LAST_KEY, OWNER, nx=True, px=int(EVERY * 1000)))
    with _last_lock:
        now = time.monotonic()
        if _last_here and now - _last_here < EVERY:
            return False
        _last_here = now
        return True


def forget_turn() -> None:
    """The next now_and_then() reconciles (for the tests)."""
    global _last_here
    with _last_lock:
        _last_here = 0.0
    shared = redis_store.client()
    if shared is not None:
        shared.delete(LAST_KEY)


def now_and_then() -> int:
    """reconcile() when it is due (at most once per lease period among all processes); never raises: what
    reads or starts jobs goes on, and the next turn tries again. Returns how many jobs were ended."""
    try:
        return reconcile() if due() else 0
    except Exception:
        log.exception("reconciling jobs failed")
        return 0


def _gone(job: Job) -> Message | None:
    """Why the job's worker is gone (and the job now claimed for tidying up), or None while it lives."""
    if job.pk in runner.running_here:  # a thread of this process runs it (or is about to)
        return None
    if job.state == JobState.RUNNING:
        why: Message | None = Message(gettext_noop("the worker running it stopped"))
    elif job.parent_id is not None:  # a step its parent job runs when its turn comes
        alive = Job.objects.filter(pk=job.parent_id, state__in=ACTIVE).exists()
        why = None if alive else Message(gettext_noop("its parent job ended before its turn"))
    elif redis_store.client() is None or not job.rq_id:  # a panel thread's, not in the job queue
        alive = timezone.now() - job.created < QUEUE_GRACE
        why = None if alive else Message(gettext_noop("the panel stopped before it began"))
    else:
        why = _lost_in_queue(job)
    return why if why is not None and liveness.claim(job.pk, OWNER) else None


def _lost_in_queue(job: Job) -> Message | None:
    shared = redis_store.client()
    assert shared is not None
    try:
        queued = rq.job.Job.fetch(job.rq_id, connection=shared)
    except NoSuchJobError:
        if timezone.now() - job.created < QUEUE_GRACE:
            return None
        return Message(gettext_noop("the job queue lost it before a worker took it"))
    status = queued.get_status(refresh=False)
    if status in WAITING:
        return None
    if status == JobStatus.STARTED:  # taken by a worker that has not begun it yet, if it is still there
        key = rq.Worker.redis_worker_namespace_prefix + (queued.worker_name or "")
        if queued.worker_name and rq.Worker.find_by_key(key, connection=shared) is not None:
            return None
        return Message(gettext_noop("the worker that took it stopped"))
    return Message(gettext_noop("the job queue reports it {status}"), status=str(status))


def _end(job: Job, why: Message) -> bool:
    kind = runner.kind_of(job)
    done = runner.progress_words(job)
    try:
        tidied = kind.interrupted(job) if kind is not None and kind.interrupted is not None else ""
    except runner.StillBusy as exc:
        # Said on the job's page while it waits; the job's phase and state stay as the worker left them.
        current = Job.objects.filter(pk=job.pk).values_list("words", flat=True).first() or {}
        Job.objects.filter(pk=job.pk, state__in=ACTIVE).update(
            result=str(exc)[:4000], words={**current, "result": stored(exc.words)})
        return False
    except Completed as exc:
        return runner.finish(job.pk, ACTIVE, JobState.DONE,
                             Message(gettext_noop("Done, found after {why}: {what}"), why=why, what=exc.words))
    first = (Message(gettext_noop("Interrupted: {why} ({done})."), why=why, done=done) if done
             else Message(gettext_noop("Interrupted: {why}."), why=why))
    words = Message(gettext_noop("{first} {then}"), first=first, then=tidied) if tidied else first
    return runner.finish(job.pk, ACTIVE, JobState.INTERRUPTED, words)
