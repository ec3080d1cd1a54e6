"""Migration and evacuation as durable jobs (jobs/runner.py).

vm.migrate moves one VM to another host on a job worker (virt/migrate.py, with its own connections to
both hosts): the pre-flight checks once more, then libvirt's migration, its progress (bytes of memory
and disks from libvirt's job statistics) and its phase on the job page. Cancel aborts libvirt's job on
the source, and the VM keeps running there. The VM's lock on both hosts is taken by the request that
starts it (so a refusal is immediate) and handed to the job by its tokens, or, for a step of an
evacuation, taken when its turn comes; it is released in every end state. Grants follow the VM.

When the worker dies while libvirt migrates, the reconciliation waits until libvirt's job on the source
has ended, then looks where the VM is: the job is done if it runs on the target, interrupted (saying
where the VM is) if it stayed on the source.

host.evacuate and vm.migrate-many are parents whose children are vm.migrate jobs, made by the starting
request and run one after another by the parent's worker (one migration at a time keeps each one's
switch-over short). The parent's progress is children ended of all; cancelling it aborts the running
child and cancels those not begun; it is done when every child is, failed with the list otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django import forms
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext

from hosts import services
from hosts.models import Host
from jobs import runner
from jobs.models import Job, JobState
from jobs.reconcile import Completed
from jobs.runner import Cancelled, Handle, Kind, StillBusy, register
from jobs.words import Words, loaded, ours, stored
from virt.errors import InvalidInput, Message, Said, Term, Text, Unreachable, VirtError, gettext_noop, joined
from virt.migrate import Migration, Progress, Report, located, migrating
from virt.migrate_checks import Endpoint, Options
from webkvm.i18n import said
from webkvm.models import VMGrant
from webkvm.operations import Operation, label_of, refused, start_job

CALL_TIMEOUT = 30.0  # the reconciliation's questions to a host
RESULT_WORDS = 300  # of each child's result in its parent's


@dataclass(frozen=True)
class Planned:
    """One VM to move, as the request checked it."""

    source: Host
    target: Host
    vm_uuid: str
    vm_name: str
    options: Options
    live: bool  # running when the request saw it

    @property
    def summary(self) -> Message:
        return Message(gettext_noop("migration of {vm} from {source} to {target} ({how})"), vm=self.vm_name,
                       source=self.source.name, target=self.target.name, how=ours(self.options.describe(self.live)))

    def params(self, locks: list[list[str]]) -> dict[str, Any]:
        return {"vm": self.vm_uuid.lower(), "name": self.vm_name, "target": self.target.pk,
                "options": asdict(self.options), "live": self.live, "locks": locks}


def endpoint(host: Host) -> Endpoint:
    try:
        return Endpoint(host.name, host.spec())
    except ValueError as exc:  # a stored value that no longer validates
        raise InvalidInput("{host}: {error}", host=host.name, error=exc) from None


# --- the VM's lock on both hosts -------------------------------------------------------------------


def take_locks(source: Host, target: Host, vm_uuid: str) -> list[list[str]]:
    """The VM's lock on its host and on the one it goes to: [[host key, token], ...], or Busy."""
    taken: list[list[str]] = []
    try:
        for host in (source, target):
            taken.append([str(host.pk), services.vm_locks.acquire(str(host.pk), vm_uuid)])
    except BaseException:
        release_locks(vm_uuid, taken)
        raise
    return taken


def release_locks(vm_uuid: str, locks: list[list[str]]) -> None:
    for key, token in locks:
        services.vm_locks.release_token(key, vm_uuid, token)


def _hold_locks(handle: Handle, source: Host, target: Host) -> list[list[str]]:
    """Hold the locks the request handed over, or (a step of an evacuation) take them now; the tokens are
    kept in the job's params, so whoever ends the job can release them."""
    vm, locks = handle.params["vm"], handle.params.get("locks") or []
    if not locks:
        locks = take_locks(source, target, vm)
        handle.params = {**handle.params, "locks": locks}
        Job.objects.filter(pk=handle.job.pk).update(params=handle.params)
        return locks
    try:
        for key, token in locks:
            services.vm_locks.adopt(key, vm, token)  # Busy if it lapsed and somebody took the VM meanwhile
    except BaseException:
        release_locks(vm, locks)  # only those still held with these tokens
        raise
    return locks


def _unlock(job: Job) -> None:
    """Cancelled before it ran, or ended by the reconciliation: the tokens in its params are let go of."""
    release_locks(job.params["vm"], job.params.get("locks") or [])


def follow_grants(source: Host, target: Host, vm_uuid: str, keep: bool) -> None:
    """Grants name a VM by host and UUID: they go with it (and are copied when the source keeps it)."""
    for grant in VMGrant.objects.filter(host=source, vm_uuid=vm_uuid):
        VMGrant.objects.update_or_create(user=grant.user, host=target, vm_uuid=vm_uuid, defaults={
            "vm_name": grant.vm_name, "can_console": grant.can_console, "can_power": grant.can_power,
            "can_change": grant.can_change, "can_delete": grant.can_delete})
        if not keep:
            grant.delete()


# --- one VM ------------------------------------------------------------------------------------------


def _stop_asked(job: Job) -> bool:
    """Cancel asked of this job, or of the evacuation it is a step of."""
    return Job.objects.filter(pk__in=[pk for pk in (job.pk, job.parent_id) if pk is not None],
                              cancel_requested=True).exists()


def _report(handle: Handle, progress: Progress, phase: str) -> None:
    if progress.total:
        handle.progress(progress.done, progress.total, ours(phase))
    else:
        handle.progress(phase=ours(phase))


def _remember(handle: Handle, **values: Any) -> None:
    handle.params = {**handle.params, **values}
    Job.objects.filter(pk=handle.job.pk).update(params=handle.params)


def _words(migration: Migration, report: Report) -> Text:
    parts = [Text.of(report.message), *(Text.of(note) for note in report.notes)]
    problems = [Text("{problem} {advice}", problem=f.problem, advice=f.advice) if f.advice else Text.of(f.problem)
                for f in migration.findings if f.blocking]
    if problems:
        parts.append(Text(gettext_noop("Pre-flight: {problems}"), problems=joined(problems, " / ")))
    return joined(parts, " ")


# What a cancelled migration's report says of where the VM stays, as the job's last phase: its sentence without
# its full stop (virt/migrate.py words them), kept here for the catalogs.
UNSTOPPED = (gettext_noop("{vm} stays on {host}"),
             gettext_noop("{vm} is still {state} on {host} with its definition intact"),
             gettext_noop("{vm} is still {state} on {host} with its definition changed"),
             gettext_noop("{vm} runs on {host}"),
             gettext_noop("{vm} is not running on {source} or {target}: check both hosts"))


def _unstopped(words: object) -> Words:
    if isinstance(words, Said) and words.template.endswith("."):
        return Message(words.template[:-1], **words.params)
    return str(words).rstrip(".")


def _where_it_stays(message: object) -> Words:
    """"web-01 stays on kvm-01" of "Cancelled before it started: web-01 stays on kvm-01." (or "Cancelled. ...")."""
    if isinstance(message, Said):
        if message.template == "Cancelled. {state}" and "state" in message.params:
            return _unstopped(message.params["state"])
        if message.template.startswith("Cancelled before it started: "):
            return _unstopped(Message(message.template.removeprefix("Cancelled before it started: "),
                                      **message.params))
    return str(message).removeprefix("Cancelled. ").removeprefix("Cancelled before it started: ").rstrip(".")


def _migrate(handle: Handle) -> str:
    p = handle.params
    source, target = handle.host, Host.objects.filter(pk=p["target"]).first()
    if source is None or target is None:
        raise VirtError(gettext_noop("A host of this migration was removed from the panel."))
    vm = p["vm"]
    locks = _hold_locks(handle, source, target)
    try:
        options = Options(**p["options"])
        migration = Migration(vm, endpoint(source), endpoint(target), options,
                              report=lambda progress, phase: _report(handle, progress, phase),
                              stop=lambda: _stop_asked(handle.job))
        report = migration.run()
        _remember(handle, where=report.vm_host, live=migration.live, name=migration.vm_name,
                  downtime_ms=migration.progress.downtime_ms, libvirt_ms=migration.progress.elapsed_ms)
        if report.vm_host == target.name:
            follow_grants(source, target, vm, options.keep_source)
        if report.outcome == "done":
            return _words(migration, report)
        if report.outcome == "cancelled" and migration.stop_requested:
            handle.progress(phase=_where_it_stays(report.message))
            raise Cancelled
        words = _words(migration, report)
        raise VirtError(words.template, **words.params)
    finally:
        release_locks(vm, locks)


# Where the reconciliation finds a VM (virt.migrate.located), in words.
PLACES = {"running": Term(gettext_noop("running")), "paused": Term(gettext_noop("paused")),
          "shut off": Term(gettext_noop("shut off")), "absent": Term(gettext_noop("absent"))}


def _place(state: str) -> Words:
    return PLACES.get(str(state), str(state))


def _migrate_interrupted(job: Job) -> Words:
    """The worker died: once libvirt's job on the source has ended, say where the VM is, and unlock it."""
    p = job.params
    vm, name = p["vm"], p.get("name") or p["vm"]
    source, target = job.host, Host.objects.filter(pk=p["target"]).first()
    if job.started is None:
        _unlock(job)
        return ""
    if source is None or target is None:
        _unlock(job)
        return Message(gettext_noop("A host of this migration was removed from the panel: check where {name} is."),
                       name=name)
    try:
        if services.call(source, lambda conn: migrating(conn, vm), CALL_TIMEOUT):
            raise StillBusy(Message(gettext_noop("libvirt on {host} is still migrating {name}; the job ends once it "
                                                 "has finished."), host=source.name, name=name))
        on_source = services.call(source, lambda conn: located(conn, vm, resume=True), CALL_TIMEOUT)
        on_target = services.call(target, lambda conn: located(conn, vm), CALL_TIMEOUT)
    except Unreachable as exc:
        raise StillBusy(Message(gettext_noop("A host of this migration does not answer ({error}); where {name} is is "
                                             "checked once it does."), error=exc, name=name)) from None
    except VirtError as exc:
        _unlock(job)
        return Message(gettext_noop("Where {name} is could not be checked: {error}"), name=name, error=exc)
    _unlock(job)
    keep = bool(p.get("options", {}).get("keep_source"))
    moved = on_target in ("running", "paused") or (on_target == "shut off" and (on_source == "absent" or keep))
    if moved and on_source not in ("running", "paused"):
        follow_grants(source, target, vm, keep)
        Job.objects.filter(pk=job.pk).update(params={**p, "where": target.name})
        raise Completed(Message(gettext_noop("{name} is {state} on {host}."), name=name, state=_place(on_target),
                                host=target.name))
    if on_target == "absent":
        return Message(gettext_noop("{name} is {state} on {host}; nothing was moved."), name=name,
                       state=_place(on_source), host=source.name)
    return Message(gettext_noop("{name} is {source_state} on {source} and {target_state} on {target}: check both "
                                "hosts and remove the copy you do not want."), name=name,
                   source_state=_place(on_source), source=source.name, target_state=_place(on_target),
                   target=target.name)


def _vm_page(job: Job) -> str | None:
    where = job.params.get("where") or (job.host.name if job.host else "")
    return reverse("instances:detail", args=[where, job.params["vm"]]) if where else None


MIGRATE = register(Kind("vm.migrate", gettext_noop("Migrate VM"), _migrate, cancellable=True, unit="bytes",
                        link=_vm_page, link_text=gettext_noop("Open the VM"), interrupted=_migrate_interrupted,
                        never_ran=_unlock))


def start_one(request: HttpRequest, op: Operation, plan: Planned, form: forms.Form, *,
              quiet: bool = False) -> Job | None:
    """Take the VM's locks, then start its job, which holds them from then on; None when refused (the
    refusal is audited and said on the form; `quiet`: raised, for the API to answer)."""
    try:
        locks = take_locks(plan.source, plan.target, plan.vm_uuid)
    except VirtError as exc:  # Busy: another action on this VM runs
        refused(request, op, host=plan.source, name=plan.vm_name, reason=str(exc))
        if quiet:
            raise
        form.add_error(None, gettext("%(action)s: not started: %(reason)s") % {"action": label_of(op),
                                                                               "reason": said(exc)})
        return None
    try:
        job: Job | None = start_job(request, op, host=plan.source, name=plan.vm_name, params=plan.params(locks),
                                    summary=plan.summary, form=form, quiet=quiet)
    except BaseException:
        release_locks(plan.vm_uuid, locks)
        raise
    if job is None:
        release_locks(plan.vm_uuid, locks)
    return job


# --- several VMs: a parent job and its steps ------------------------------------------------------------


# The steps' states in the tally of a parent job ("2 done, 1 not begun").
TALLY: dict[str, str] = {
    JobState.QUEUED: gettext_noop("{count} not begun"), JobState.RUNNING: gettext_noop("{count} running"),
    JobState.DONE: gettext_noop("{count} done"), JobState.FAILED: gettext_noop("{count} failed"),
    JobState.CANCELLED: gettext_noop("{count} cancelled"), JobState.INTERRUPTED: gettext_noop("{count} interrupted")}
# A step's state where its parent says why it was not moved ("web-01 (failed: ...)").
STATES: dict[str, Term] = {
    JobState.QUEUED: Term(gettext_noop("queued")), JobState.RUNNING: Term(gettext_noop("running")),
    JobState.FAILED: Term(gettext_noop("failed")), JobState.CANCELLED: Term(gettext_noop("cancelled")),
    JobState.INTERRUPTED: Term(gettext_noop("interrupted"))}


def _tally(children: list[Job]) -> Words:
    counts: dict[str, int] = {}
    for child in children:
        counts[child.state] = counts.get(child.state, 0) + 1
    parts = [Text(TALLY[state], count=n) if state in TALLY else Text("{count} {state}", count=n, state=state)
             for state, n in sorted(counts.items())]
    return joined(parts, ", ") if parts else ""


def _not_moved(children: list[Job]) -> Text:
    words = []
    for child in children:
        if child.state == JobState.DONE:
            continue
        kept = (child.words or {}).get("result")
        result = loaded(kept) if kept is not None and len(child.result) <= RESULT_WORDS else child.result[:RESULT_WORDS]
        state = STATES.get(child.state, child.state)
        if result:
            words.append(Text("{name} ({state}: {result})", name=child.target_name, state=state, result=result))
        else:
            words.append(Text("{name} ({state})", name=child.target_name, state=state))
    return joined(words, "; ") if words else Text("")


def _cancel_waiting(parent: Job, state: str, words: Words) -> None:
    for child in Job.objects.filter(parent=parent, state=JobState.QUEUED):
        runner.finish(child.pk, (JobState.QUEUED,), state, words)


def _steps(handle: Handle) -> Words:
    parent = handle.job
    children = list(Job.objects.filter(parent=parent).order_by("pk"))
    total = len(children)
    for index, child in enumerate(children):
        if handle.cancel_requested():
            break
        handle.progress(index, total, Message(gettext_noop("{number} of {total}: {name}"), number=index + 1,
                                              total=total, name=child.target_name))
        runner.execute(child.pk)  # runs it here, unless it was cancelled meanwhile
    stopped = handle.cancel_requested()
    if stopped:
        _cancel_waiting(parent, JobState.CANCELLED, Message(gettext_noop(
            "Cancelled with its parent job {job} before its turn: nothing was moved."), job=parent.pk))
    children = list(Job.objects.filter(parent=parent).order_by("pk"))
    moved = [c for c in children if c.state == JobState.DONE]
    handle.progress(done=len(moved), phase=_tally(children))  # done: moved, of all
    if len(moved) == total:
        return Message(gettext_noop("All {total} VM(s) moved: {names}."), total=total,
                       names=", ".join(c.target_name for c in moved))
    if stopped:
        raise Cancelled
    raise VirtError(gettext_noop("{moved} of {total} VM(s) moved. Not moved: {names}."), moved=len(moved), total=total,
                    names=_not_moved(children))


def _steps_interrupted(job: Job) -> Words:
    """The parent's worker died: its running step is reconciled first (libvirt may still migrate it); the
    steps not begun are ended without being run."""
    running = [c.target_name for c in Job.objects.filter(parent=job, state=JobState.RUNNING)]
    if running:
        raise StillBusy(Message(gettext_noop("Waiting until the migration of {names} has been ended."),
                                names=", ".join(running)))
    _cancel_waiting(job, JobState.INTERRUPTED, Message(gettext_noop(
        "Interrupted: its parent job {job} ended before its turn; nothing was moved."), job=job.pk))
    children = list(Job.objects.filter(parent=job))
    return Message(gettext_noop("Its migrations: {tally}."), tally=_tally(children)) if children else ""


def _cancel_steps(job: Job) -> None:
    """Cancelled before it began: so are its steps."""
    _cancel_waiting(job, JobState.CANCELLED, Message(gettext_noop(
        "Cancelled with its parent job {job} before it began: nothing was moved."), job=job.pk))


def _host_page(job: Job) -> str | None:
    return reverse("instances:host", args=[job.host.name]) if job.host else None


EVACUATE = register(Kind("host.evacuate", gettext_noop("Evacuate host"), _steps, cancellable=True, link=_host_page,
                         link_text=gettext_noop("Show the host's VMs"), interrupted=_steps_interrupted,
                         never_ran=_cancel_steps))
MIGRATE_MANY = register(Kind("vm.migrate-many", gettext_noop("Migrate VMs"), _steps, cancellable=True, link=_host_page,
                             link_text=gettext_noop("Show the target's VMs"), interrupted=_steps_interrupted,
                             never_ran=_cancel_steps))


def start_steps(request: HttpRequest, op: Operation, host: Host, name: str, plans: list[Planned], summary: Words,
                form: forms.Form, *, quiet: bool = False) -> Job | None:
    """Start the parent job `op` and make its vm.migrate steps, each taking its VM's locks when its turn
    comes; None when refused (audited and said on the form; `quiet`: raised, for the API to answer)."""
    user = request.user if request.user.is_authenticated else None
    with transaction.atomic():  # the parent begins only once its steps are written
        parent: Job | None = start_job(request, op, host=host, name=name, params={"count": len(plans)},
                                       summary=summary, form=form, quiet=quiet)
        if parent is None:
            return None
        asked = runner.origin(request)  # each step's audit record says how it was asked too
        Job.objects.bulk_create([
            Job(kind=MIGRATE.name, host=plan.source, target_type="vm", target_name=plan.vm_name[:255],
                summary=str(plan.summary)[:255], words={"summary": stored(plan.summary)},
                params={**plan.params([]), **asked}, owner=user,
                remote_addr=parent.remote_addr, parent=parent)
            for plan in plans])
    return parent

