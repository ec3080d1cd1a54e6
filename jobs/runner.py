"""One way to run a long operation as a durable job.

A kind is declared once with `register(Kind(...))`: its name (also its audit action), the function
doing the work, whether it can be cancelled while it runs, and the per-host limit of its lane.
`start(request, kind, host, target, params)` checks the limits, writes the Job row and hands the job
to a job worker (RQ, when WEBKVM_REDIS_URL is set) or to a thread of this process (the panel alone,
and the tests on the test driver); both run `execute(job_id)`. The work function gets a Handle to
report progress and to see a cancel request; what it returns (or raises) is written to the Job and
audited once, with the duration.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import django_rq
import redis
import rq
from django.db import connections, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from hosts.models import Host
from jobs import liveness, push
from jobs.models import ACTIVE, Job, JobState
from jobs.words import Words, loaded, ours, stored
from virt.errors import Busy, Message, Said, Term, VirtError, gettext_noop, hidden_words
from virt.xml.codecs import iec
from webkvm import audit, redis_store
from webkvm.models import AuditResult

log = logging.getLogger(__name__)
T = TypeVar("T")
QUEUE = "default"  # the RQ queue `manage.py serve` starts its workers on


class Cancelled(Exception):
    """Raised by Handle.check_cancel() when somebody asked the job to stop; `words`: what the work undid or
    left on its way out (a Message of ours, or text), said after what was done."""

    def __init__(self, words: Words = "") -> None:
        super().__init__(words)
        self.words = words


class StopAsked(VirtError):
    """Raised by a work's step callback (in whichever thread the libvirt layer tells its steps from, a
    host's) when the job was asked to stop (Handle.stopping): the layer undoes what it made, as on any
    failure, and lets it through with its words extended by what it could not remove. The work turns it
    into Cancelled."""


@dataclass(frozen=True)
class Target:
    """What a job works on: an object type (vm, volume, pool, network, host) and its name on the host."""

    type: str
    name: str


@dataclass(frozen=True)
class Kind:
    name: str  # e.g. volume.clone; also the audit action
    label: str  # e.g. "Clone volume", marked with gettext_noop: shown translated (Job.kind_label)
    # Returns what was done, in words (a Message of ours, or text); raises VirtError with the reason.
    work: Callable[[Handle], Words]
    cancellable: bool = False  # may stop while it runs (the work calls check_cancel between steps)
    unit: str = ""  # "bytes" when done/total are bytes
    lane: str = ""  # kinds of one lane share the per-host limit
    per_host: int = 0  # at most this many active jobs of the lane per host; 0: no limit
    timeout: int = 24 * 3600  # seconds before the job worker gives up on it
    link: Callable[[Job], str | None] | None = None  # the page of what the job made or changed
    link_text: str = ""  # the words of that link (gettext_noop); "Show <target type>s" unless told
    # Tidies up after a worker that died; returns words for the result, or raises StillBusy to try later.
    interrupted: Callable[[Job], Words] | None = None
    # Lets go of what the starting request took for the job (e.g. a VM's lock) when it is cancelled unrun.
    never_ran: Callable[[Job], None] | None = None


class StillBusy(Exception):
    """An interrupted job cannot be tidied up yet (e.g. libvirt still writes its copy); try again later.
    Its argument says why, as a Message of ours (or text)."""

    def __init__(self, words: Words) -> None:
        super().__init__(words)
        self.words = words

    def __str__(self) -> str:
        return str(self.words)


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    if kind.name in KINDS and KINDS[kind.name] != kind:
        raise ValueError(f"job kind {kind.name} is registered twice")
    KINDS[kind.name] = kind
    return kind


def kind_of(job: Job) -> Kind | None:
    return KINDS.get(job.kind)


# --- starting -------------------------------------------------------------------------------------

_admission = threading.Lock()
running_here: set[int] = set()  # jobs this process runs in threads (the panel alone; test-driver hosts)


@contextmanager
def _admitting(host: Host | None) -> Iterator[None]:
    """One start at a time per host among all the panel's processes, so limits hold under concurrency."""
    shared = redis_store.client()
    if shared is None:
        with _admission:
            yield
        return
    lock = shared.lock(f"webkvm:jobs:admit:{host.pk if host else '-'}", timeout=30, blocking_timeout=10)
    try:
        acquired = lock.acquire()
    except redis.RedisError as exc:
        raise VirtError(gettext_noop("The job queue did not answer: {error}"), error=str(exc)) from None
    if not acquired:
        raise Busy(gettext_noop("Another job is being started on this host; try again in a moment."))
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.RedisError:
            pass  # lapsed (its 30 s are far beyond the few queries it guards), or Redis went away


# "Vm web-01 is already being worked on.": one sentence per kind of target, to be translated whole.
_WORKED_ON = {
    "vm": gettext_noop("Vm {name} is already being worked on."),
    "volume": gettext_noop("Volume {name} is already being worked on."),
    "pool": gettext_noop("Pool {name} is already being worked on."),
    "network": gettext_noop("Network {name} is already being worked on."),
    "host": gettext_noop("Host {name} is already being worked on."),
}
# The lanes' names in "testhost already runs 2 storage jobs".
_LANES = {"storage": Term(gettext_noop("storage"))}


def _admit(kind: Kind, host: Host | None, target: Target) -> None:
    active = Job.objects.filter(state__in=ACTIVE, host=host)
    if active.filter(target_type=target.type, target_name=target.name).exists():
        if target.type in _WORKED_ON:
            raise Busy(_WORKED_ON[target.type], name=target.name)
        raise Busy(gettext_noop("{what} {name} is already being worked on."), what=target.type.capitalize(),
                   name=target.name)
    if kind.per_host and host is not None:
        lane = [k.name for k in KINDS.values() if k.lane == kind.lane]
        busy = active.filter(kind__in=lane).count()
        if busy >= kind.per_host:
            what = _LANES.get(kind.lane) or Term(kind.lane or kind.label)
            raise Busy(gettext_noop("{host} already runs {count} {what} jobs; wait for one to end."), host=host.name,
                       count=busy, what=what)


VIA = "via"  # the params key of how the request came in ("through the API, token NAME"), for the audit record


def origin(request: HttpRequest) -> dict[str, str]:
    """Params to add to a job a request starts, so that its audit record says how it was asked (the API)."""
    via = getattr(request, "webkvm_via", "")
    return {VIA: via} if via else {}


def start(request: HttpRequest, kind: str, host: Host | None, target: Target, params: dict[str, Any],
          summary: Words = "") -> Job:
    """Create the job and hand it to a worker. Raises Busy (a limit) or VirtError (no job queue).
    `summary`: what it does, a Message of ours (shown in each reader's language) or text."""
    from jobs.reconcile import now_and_then  # it imports this module

    declared = KINDS[kind]
    params = {**params, **origin(request)}
    user = request.user if request.user.is_authenticated else None
    shared = redis_store.client()
    here = in_thread(host)
    now_and_then()  # a job whose worker died no longer counts against the limits below
    with _admitting(host):
        _admit(declared, host, target)
        job = Job.objects.create(kind=kind, host=host, target_type=target.type, target_name=target.name[:255],
                                 summary=str(summary)[:255], words=_summary_words(summary), params=params,
                                 owner=user, remote_addr=request.META.get("REMOTE_ADDR"),
                                 rq_id="" if here else uuid.uuid4().hex)  # no RQ id: a panel thread runs it
    if here:
        running_here.add(job.pk)
        transaction.on_commit(lambda: threading.Thread(target=_in_thread, args=(job.pk,), name=f"job-{job.pk}",
                                                       daemon=True).start())
        return job
    try:
        django_rq.get_queue(QUEUE, connection=shared, commit_mode="on_db_commit").enqueue(
            execute, job.pk, job_id=job.rq_id, job_timeout=declared.timeout, result_ttl=3600, failure_ttl=86400)
    except redis.RedisError as exc:  # never started: no job to show; the caller audits the refusal
        Job.objects.filter(pk=job.pk).delete()
        raise VirtError(gettext_noop("The job queue did not answer: {error}"), error=str(exc)) from None
    return job


def in_thread(host: Host | None) -> bool:
    """Is a job on `host` run by a thread of this process rather than by a job worker? Without Redis (the panel
    alone) always; with it, for hosts on libvirt's test driver (the demo), whose world lives in each process
    that opens it: a job worker would change a copy that the panel never shows."""
    return redis_store.client() is None or (host is not None and host.transport == "test")


def _summary_words(summary: Words) -> dict[str, Any]:
    """Only a summary of ours is kept as a message: a job with a plain one shows its kind's name to readers
    of another language than English (Job.shown_summary)."""
    return {"summary": stored(summary)} if isinstance(summary, Said) else {}


def _in_thread(job_id: int) -> None:
    try:
        execute(job_id)
    finally:
        running_here.discard(job_id)
        connections.close_all()  # this thread is no request's: hold no database connection


# --- running --------------------------------------------------------------------------------------


class Handle:
    """What the work function of a job sees: its job, host and params, progress and cancellation."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.host = job.host
        self.params: dict[str, Any] = job.params
        # Set once a cancel request has been seen: the work's steps that run in another thread (a host's)
        # look at it instead of asking the database from there.
        self.stopping = threading.Event()

    def progress(self, done: int | None = None, total: int | None = None, phase: Words | None = None) -> None:
        """How far it is; `phase`: what it does now, a Message of ours (Message(gettext_noop("copying {volume}"),
        volume=...)) shown in each reader's language, or text (libvirt's own words) shown as it is."""
        fields: dict[str, Any] = {}
        if done is not None:
            fields["done"] = self.job.done = done
        if total is not None:
            fields["total"] = self.job.total = total
        if phase is not None:
            fields["phase"] = self.job.phase = str(phase)[:255]
            fields["words"] = self.job.words = {**(self.job.words or {}), "phase": stored(phase)}
        if fields and Job.objects.filter(pk=self.job.pk, state=JobState.RUNNING).update(**fields):
            _announce(self.job.pk)

    def cancel_requested(self) -> bool:
        if not self.stopping.is_set() and Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            self.stopping.set()
        return self.stopping.is_set()

    def check_cancel(self) -> None:
        if self.cancel_requested():
            raise Cancelled

    def follow(self, pending: Future[T], measure: Callable[[], int | None] | None = None, every: float = 1.0,
               watch_cancel: bool = False) -> T:
        """Wait for a host call, reporting `measure()` (bytes done so far) as progress every `every` seconds;
        `watch_cancel`: also look for a cancel request each time (it sets `stopping` for the call's steps)."""
        while True:
            try:
                return pending.result(timeout=every)
            except FutureTimeout:
                pass
            if watch_cancel:
                self.cancel_requested()
            if measure is not None:
                try:
                    done = measure()
                except VirtError:
                    done = None  # a busy host: the next round will tell
                if done is not None:
                    self.progress(done=done)


def _worker_name() -> str:
    current = rq.get_current_job()
    if current is not None and current.worker_name:
        return current.worker_name
    return f"panel thread {threading.get_native_id()} of pid {os.getpid()} on {socket.gethostname()}"


def progress_words(job: Job) -> Words:
    """What was done: "400 MiB of 1.0 GiB done, copying", or "" before it started."""
    if job.started is None:
        return ""
    kind = kind_of(job)
    size: Callable[[int], str] = iec if kind is not None and kind.unit == "bytes" else str
    kept = (job.words or {}).get("phase")
    phase = loaded(kept) if kept is not None and job.phase else job.phase
    if not job.total:
        return phase
    if not job.phase:
        return Message(gettext_noop("{done} of {total} done"), done=size(job.done), total=size(job.total))
    return Message(gettext_noop("{done} of {total} done, {phase}"), done=size(job.done), total=size(job.total),
                   phase=phase)


def execute(job_id: int) -> None:
    """Run one job (in a job worker, or in a thread of the panel). Never raises: the Job says how it ended."""
    heartbeat = liveness.Heartbeat(job_id)
    if not heartbeat.start():
        return  # being reconciled: it was given up on
    try:
        started = Job.objects.filter(pk=job_id, state=JobState.QUEUED).update(
            state=JobState.RUNNING, started=timezone.now(), worker=_worker_name()[:255])
        if not started:
            return  # cancelled while queued, or reconciled
        _announce(job_id)
        job = Job.objects.select_related("host", "owner").get(pk=job_id)
        kind = kind_of(job)
        try:
            if kind is None:
                raise VirtError(gettext_noop("This panel does not know jobs of kind {kind}."), kind=job.kind)
            result = kind.work(Handle(job))
        except Cancelled as exc:
            job.refresh_from_db()
            done = progress_words(job)
            first = (Message(gettext_noop("Cancelled on request ({done})."), done=done) if done
                     else Message(gettext_noop("Cancelled on request.")))
            finish(job_id, ACTIVE, JobState.CANCELLED,
                   Message(gettext_noop("{first} {then}"), first=first, then=exc.words) if exc.words else first)
        except VirtError as exc:
            finish(job_id, ACTIVE, JobState.FAILED, exc, for_users=_hidden(exc) if exc.from_host else "")
        except Exception as exc:
            log.exception("job %s (%s) failed", job_id, job.kind)
            finish(job_id, ACTIVE, JobState.FAILED, Message(gettext_noop("unexpected error: {error}"), error=str(exc)),
                   for_users=Message(gettext_noop("unexpected error")))
        else:
            finish(job_id, ACTIVE, JobState.DONE, result)
    finally:
        heartbeat.stop()


def _hidden(exc: VirtError) -> Words:
    """What stands for the host's own words where only admins may read them."""
    return ours(hidden_words(exc))


def _announce(job_id: int) -> None:
    """Open job pages follow the change once it is committed (jobs/push.py)."""
    transaction.on_commit(lambda: push.announce(job_id))


# --- ending ---------------------------------------------------------------------------------------


def finish(job_id: int, from_states: tuple[str, ...], state: str, result: Words, for_users: Words = "") -> bool:
    """Move the job from one of `from_states` to its final `state` and audit it; once only (False when
    it had already left those states: reconciled, cancelled, or ended by another process). `for_users`
    stands for `result` where it holds the host's own words (Job.result_for_users). Both are messages of
    ours (shown in each reader's language) or text; the audit record keeps their English."""
    now = timezone.now()
    with transaction.atomic():  # the end and its audit record are seen together
        kept = Job.objects.select_for_update().filter(pk=job_id, state__in=from_states).values_list(
            "words", flat=True).first()
        if kept is None:
            return False
        said = {key: value for key, value in (kept or {}).items() if key not in ("result", "result_for_users")}
        said["result"] = stored(result)
        if for_users:
            said["result_for_users"] = stored(for_users)
        result, for_users = str(result), str(for_users)
        if not Job.objects.filter(pk=job_id, state__in=from_states).update(
                state=state, result=result[:4000], result_for_users=for_users[:4000], finished=now, words=said):
            return False
        job = Job.objects.select_related("host", "owner").get(pk=job_id)
        # An interrupted job's end is when it was found, not when its worker died: no duration for it.
        seconds = f" ({job.seconds} s)" if job.seconds is not None and state != JobState.INTERRUPTED else ""
        words = f"{job.summary or job.kind}: {result or state}{seconds}"
        if via := (job.params or {}).get(VIA):
            words = f"{words} ({via})"
        took = int(job.seconds * 1000) if job.seconds is not None and state != JobState.INTERRUPTED else None
        try:
            with transaction.atomic():
                event = audit.record(None, job.kind, object_type=job.target_type, object_name=job.target_name,
                                     host_name=job.host.name if job.host else "",
                                     result=AuditResult.OK if state == JobState.DONE else AuditResult.FAILED,
                                     detail=words, user=job.owner, remote_addr=job.remote_addr,
                                     duration_ms=took)
                Job.objects.filter(pk=job_id).update(audit=event)
        except Exception:  # the job's outcome must never be lost to a database hiccup
            log.exception("could not audit job %s", job_id)
    _announce(job_id)
    return True


def request_cancel(job: Job, who: str) -> str:
    """Stop a queued job at once, or ask a running one of a cancellable kind to stop; words for the user, in
    the active language. Raises Busy for a running job that cannot be stopped."""
    kind = kind_of(job)
    if job.state == JobState.QUEUED and finish(job.pk, (JobState.QUEUED,), JobState.CANCELLED,
                                               Message(gettext_noop("Cancelled by {user} before it started."),
                                                       user=who)):
        if kind is not None and kind.never_ran is not None:
            kind.never_ran(job)
        return _("Cancelled before it started.")
    if job.state == JobState.RUNNING and kind is not None and kind.cancellable:
        Job.objects.filter(pk=job.pk, state=JobState.RUNNING).update(cancel_requested=True)
        _announce(job.pk)
        return _("Asked to stop; it stops at its next step.")
    if job.active:
        raise Busy(gettext_noop("This job cannot be stopped once it runs."))
    return _("The job has already ended ({state}).").format(state=job.state_label)
