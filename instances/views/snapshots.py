"""Snapshots of a VM: the list (view grant), create, revert and delete (change grant; instances/operations.py).

A shut-off VM's snapshot (its disks and definition) is quick and taken in the request, under the VM's lock.
A running VM's writes its whole memory too, which can take minutes: it runs as a durable job
(instances/snapshot_jobs.py) holding the VM's lock until it ends, and the user is sent to its page. Going
back to a snapshot that holds memory (libvirt loads it back) is such a job too; to a disk-only snapshot, and
deleting one, run in the request. Each writes one audit record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import libvirt
from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from hosts import services
from instances import operations as ops
from instances import snapshot_jobs
from instances.lookup import VMRef
from instances.views.config_common import shown
from jobs.models import ACTIVE, Job
from virt import snapshots
from virt.errors import InvalidInput, InvalidState, VirtError, gettext_noop, joined
from virt.xml.domain import Domain
from webkvm.i18n import said
from webkvm.operations import Operation, Outcome, label_of, on_vm, page, refused, told, vm_route
from webkvm.permissions import can, is_admin


class SnapshotForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=63,
                           help_text=gettext_lazy("Letters, digits, '.', '-' and '_'."))
    description = forms.CharField(label=gettext_lazy("Description"), required=False,
                                  max_length=snapshots.MAX_DESCRIPTION, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, taken: set[str], *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"name": time.strftime("snap-%Y%m%d-%H%M%S")})
        super().__init__(*args, **kwargs)
        self.taken = taken

    def clean_name(self) -> str:
        try:
            name, _description = snapshots.validate(self.cleaned_data["name"], "")
        except InvalidInput as exc:
            raise forms.ValidationError(said(exc)) from None
        if name in self.taken:
            raise forms.ValidationError(_("This VM already has a snapshot with this name."))
        return name

    def clean_description(self) -> str:
        try:
            return snapshots.validate("description", self.cleaned_data.get("description") or "")[1]
        except InvalidInput as exc:
            raise forms.ValidationError(said(exc)) from None


def _overview(dom: libvirt.virDomain) -> dict[str, Any]:
    running = bool(dom.isActive())
    return {"name": str(dom.name()), "running": running, "snapshots": snapshots.list_snapshots(dom),
            "blockers": snapshots.blockers(Domain.from_xml(dom.XMLDesc(0)), running)}


def _snapshot_jobs(request: HttpRequest, ref: VMRef) -> list[Job]:
    """This VM's snapshots being taken by jobs the user may follow (their own; every one for admins)."""
    jobs = Job.objects.filter(host=ref.host, kind=snapshot_jobs.SNAPSHOT.name, state__in=ACTIVE)
    if not is_admin(request.user):
        jobs = jobs.filter(owner_id=request.user.pk)
    return [job for job in jobs if job.params.get("vm") == ref.uuid]


def _page(request: HttpRequest, ref: VMRef, form: SnapshotForm | None = None) -> HttpResponse:
    context: dict[str, Any] = {"ref": ref, "can_change": can(request.user, "change", host=ref.host, vm_uuid=ref.uuid)}
    try:
        context.update(ref.call(_overview))
    except VirtError as exc:
        context["error"] = told(request.user, exc)
        return render(request, "instances/config/snapshots.html", context, status=503)
    context["blockers"] = [shown(b) for b in context["blockers"]]
    context["form"] = form or SnapshotForm({s.name for s in context["snapshots"]})
    context["jobs"] = _snapshot_jobs(request, ref) if context["can_change"] else []
    return render(request, "instances/config/snapshots.html", context)


def _to_list(ref: VMRef) -> HttpResponse:
    return redirect("instances:snapshots", ref.host.name, ref.uuid)


@require_GET
@vm_route(page(ops.VIEW))
def snapshot_list(request: HttpRequest, ref: VMRef) -> HttpResponse:
    return _page(request, ref)


def vm_for_snapshot(request: HttpRequest, ref: VMRef) -> dict[str, Any]:
    """The VM's name, state, snapshots and blockers, for the form; a failure to read it is audited as a refused
    snapshot and raised."""
    try:
        found: dict[str, Any] = ref.call(_overview)
    except VirtError as exc:
        refused(request, ops.SNAPSHOT_CREATE, host=ref.host, name=ref.uuid, reason=f"uuid {ref.uuid}: {exc}")
        raise
    return found


def taken_words(info: snapshots.SnapshotInfo) -> str:
    if info.with_memory:
        return _("snapshot {name} taken with its memory.").format(name=info.name)
    return _("snapshot {name} taken.").format(name=info.name)


@require_http_methods(["GET", "POST"])
@vm_route(ops.SNAPSHOT_CREATE)
def snapshot_create(request: HttpRequest, ref: VMRef) -> HttpResponse:
    if request.method != "POST":  # a reload after a refused form: the form is on the list
        return _to_list(ref)
    try:
        vm = vm_for_snapshot(request, ref)
    except VirtError as exc:
        messages.error(request, _("%(action)s: not done: %(reason)s") % {"action": label_of(ops.SNAPSHOT_CREATE),
                                                                          "reason": told(request.user, exc)})
        return _to_list(ref)
    form = SnapshotForm({s.name for s in vm["snapshots"]}, request.POST)
    if not form.is_valid():
        return _page(request, ref, form)
    try:
        taken = take_snapshot(request, ref, vm, form)
    except VirtError as exc:  # refused before libvirt was asked: audited by take_snapshot
        messages.error(request, refusal_words(request, vm["name"], exc))
        return _to_list(ref)
    return redirect(taken) if isinstance(taken, Job) else _to_list(ref)


def refusal_words(request: HttpRequest, vm_name: str, exc: VirtError) -> str:
    if isinstance(exc, Unsnapshottable):
        return _("No snapshot was taken: {why}").format(why=said(exc))
    failed = _("%(action)s: not started: %(reason)s") % {"action": label_of(ops.SNAPSHOT_CREATE),
                                                         "reason": told(request.user, exc)}
    return _("%(name)s: %(done)s") % {"name": vm_name, "done": failed}


class Unsnapshottable(InvalidState):
    """The panel's own rule refuses the snapshot (a raw disk, a passthrough device...) before libvirt is asked."""


def take_snapshot(request: HttpRequest, ref: VMRef, vm: dict[str, Any], form: SnapshotForm, *,
                  quiet: bool = False) -> Outcome[snapshots.SnapshotInfo] | Job | None:
    """Take the snapshot a valid form describes of the VM read by vm_for_snapshot: a running VM's (its memory
    too) as a job holding the VM's lock; a shut-off VM's in the request (the Outcome; said unless `quiet`).
    A refusal before libvirt is asked (the panel's rule, a busy VM, no job queue) is audited and raised;
    None when start_job refused and said it (not `quiet`)."""
    op = ops.SNAPSHOT_CREATE
    name, description = form.cleaned_data["name"], form.cleaned_data["description"]
    if vm["blockers"]:  # the panel's own rule, checked before libvirt is asked
        refusal = Unsnapshottable(gettext_noop("{name} cannot be snapshotted: {why}"), name=vm["name"],
                                  why=joined(vm["blockers"], " "))
        refused(request, op, host=ref.host, name=vm["name"], reason=f"uuid {ref.uuid}: {refusal}")
        raise refusal
    if vm["running"]:
        return _start_with_memory(request, ref, vm["name"], name, description, quiet=quiet)
    return on_vm(request, op, ref, lambda dom: snapshots.create(dom, name, description), done=taken_words,
                 detail=lambda info: f"snapshot {info.name} ({'with' if info.with_memory else 'without'} memory)",
                 quiet=quiet)


def _start_with_memory(request: HttpRequest, ref: VMRef, vm_name: str, name: str, description: str, *,
                       quiet: bool) -> Job | None:
    """Take the VM's lock (a second change meanwhile is "busy") and hand it to the snapshot job."""
    return _start_locked(request, ops.SNAPSHOT_CREATE, ref, vm_name, lambda token: snapshot_jobs.start_snapshot(
        request, ref.host, ref.uuid, vm_name, name, description, token, quiet=quiet))


def _start_locked(request: HttpRequest, op: Operation, ref: VMRef, vm_name: str,
                  start: Callable[[str], Job | None]) -> Job | None:
    """Take the VM's lock and hand it (its token) to the job start(token) starts; a busy VM is audited as a
    refusal and raised; the lock is let go again when the job did not start."""
    key = str(ref.host.pk)
    try:
        token = services.vm_locks.acquire(key, ref.uuid)
    except VirtError as exc:
        refused(request, op, host=ref.host, name=vm_name, reason=f"uuid {ref.uuid}: {exc}")
        raise
    try:
        job = start(token)
    except BaseException:
        services.vm_locks.release_token(key, ref.uuid, token)
        raise
    if job is None:  # refused (a limit, or no job queue): audited and said by start_job
        services.vm_locks.release_token(key, ref.uuid, token)
    return job


CONFIRM = {
    "revert": gettext_lazy("The VM goes back to this snapshot: its disks, its definition and, for a snapshot of a "
                           "running VM, its memory. Whatever changed since the snapshot is lost."),
    "delete": gettext_lazy("The snapshot is deleted; the VM's current state is not touched."),
}


def _act(request: HttpRequest, ref: VMRef, action: str) -> HttpResponse:
    """POST: confirm, then run; GET (a reloaded confirmation, a link): the confirmation, or the list when it
    names no snapshot. Nothing runs without a POSTed confirmation."""
    asked = request.POST if request.method == "POST" else request.GET
    name = asked.get("snapshot", "")
    if not name or len(name) > 255:
        if request.method == "POST":
            messages.error(request, _("Choose a snapshot."))
        return _to_list(ref)
    if request.method != "POST" or request.POST.get("confirm") != "yes":
        return render(request, "instances/config/snapshots_confirm.html",
                      {"ref": ref, "snapshot": name, "action": action, "sentence": CONFIRM[action]})
    if action == "delete":
        delete_snapshot(request, ref, name)
        return _to_list(ref)
    try:
        reverted = revert_snapshot(request, ref, name)
    except VirtError as exc:  # refused before libvirt was asked to revert: audited by revert_snapshot
        failed = _("%(action)s: not started: %(reason)s") % {"action": label_of(ops.SNAPSHOT_REVERT),
                                                             "reason": told(request.user, exc)}
        messages.error(request, failed)
        return _to_list(ref)
    return redirect(reverted) if isinstance(reverted, Job) else _to_list(ref)


def revert_snapshot(request: HttpRequest, ref: VMRef, name: str, *,
                    quiet: bool = False) -> Outcome[str] | Job | None:
    """Back to snapshot `name`. One that holds memory (libvirt loads it back, which can take minutes) as a job
    holding the VM's lock; a disk-only one in the request (the Outcome, its value the VM's state afterwards;
    said unless `quiet`). A refusal before libvirt is asked to revert (its snapshots could not be read, a busy
    VM, no job queue) is audited and raised; None when start_job refused and said it (not `quiet`)."""
    op = ops.SNAPSHOT_REVERT
    try:
        vm_name, found = ref.call(lambda dom: (str(dom.name()), snapshots.list_snapshots(dom)))
    except VirtError as exc:
        refused(request, op, host=ref.host, name=ref.uuid, reason=f"uuid {ref.uuid}: {exc}")
        raise
    chosen = next((s for s in found if s.name == name), None)
    if chosen is not None and chosen.with_memory:
        return _start_locked(request, op, ref, vm_name, lambda token: snapshot_jobs.start_revert(
            request, ref.host, ref.uuid, vm_name, chosen, token, quiet=quiet))
    # A disk-only snapshot, or a name the VM does not have (libvirt's layer says so, audited as failed).
    return on_vm(request, op, ref, lambda dom: snapshots.revert(dom, name).state,
                 done=_("back to snapshot {name}.").format(name=name),
                 detail=lambda state: f"reverted to snapshot {name} ({state})", quiet=quiet)


def delete_snapshot(request: HttpRequest, ref: VMRef, name: str, *, quiet: bool = False) -> Outcome[str]:
    return on_vm(request, ops.SNAPSHOT_DELETE, ref, lambda dom: snapshots.delete(dom, name),
                 done=_("snapshot {name} deleted.").format(name=name), detail=f"deleted snapshot {name}", quiet=quiet)


@require_http_methods(["GET", "POST"])
@vm_route(ops.SNAPSHOT_REVERT)
def snapshot_revert(request: HttpRequest, ref: VMRef) -> HttpResponse:
    return _act(request, ref, "revert")


@require_http_methods(["GET", "POST"])
@vm_route(ops.SNAPSHOT_DELETE)
def snapshot_delete(request: HttpRequest, ref: VMRef) -> HttpResponse:
    return _act(request, ref, "delete")
