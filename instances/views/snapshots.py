"""Snapshots of a VM: the list (view grant), create, revert and delete (change grant; instances/operations.py).

A shut-off VM's snapshot (its disks and definition) is quick and taken in the request, under the VM's lock.
A running VM's writes its whole memory too, which can take minutes: it runs as a durable job
(instances/snapshot_jobs.py) holding the VM's lock until it ends, and the user is sent to its page. Going
back to a snapshot that holds memory (libvirt loads it back) is such a job too; to a disk-only snapshot, and
deleting one, run in the request. Each writes one audit record. Create, revert and delete are pages generated
from their declarations (webkvm/operation_views.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import libvirt
from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

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
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Operation, Outcome, View, label_of, on_vm, page, refused, told, vm_route
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
    """This VM's snapshots being taken, or gone back to, by jobs the user may follow (their own; every one for
    admins)."""
    jobs = Job.objects.filter(host=ref.host, kind__in=(snapshot_jobs.SNAPSHOT.name, snapshot_jobs.REVERT.name),
                              state__in=ACTIVE)
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
    context["revert_kind"] = snapshot_jobs.REVERT.name
    return render(request, "instances/config/snapshots.html", context)


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


# --- the pages, generated from the declarations (webkvm/operation_views.py) ------------------------


def _list_url(call: Call, _result: Any = None) -> str:
    return reverse("instances:snapshots", args=[call.ref.host.name, call.ref.uuid])


def _to_job_or_list(call: Call, result: Any) -> HttpResponse:
    """A job (a running VM's snapshot, a revert to one with memory) to its page; anything else to the list."""
    return redirect(result) if isinstance(result, Job) else redirect(_list_url(call))


def _vm(call: Call) -> None:
    call.context["vm"] = vm_for_snapshot(call.request, call.ref)


def _unreadable(call: Call, exc: VirtError) -> HttpResponse:
    messages.error(call.request, _("%(action)s: not done: %(reason)s") % {
        "action": label_of(ops.SNAPSHOT_CREATE), "reason": told(call.request.user, exc)})
    return redirect(_list_url(call))


def _take(call: Call) -> Outcome[snapshots.SnapshotInfo] | Job | None:
    vm = call.context["vm"]
    try:
        return take_snapshot(call.request, call.ref, vm, cast(SnapshotForm, call.form))
    except VirtError as exc:  # refused before libvirt was asked: audited by take_snapshot
        messages.error(call.request, refusal_words(call.request, vm["name"], exc))
        return None


# The form is on the list (a GET goes there); a refused form shows the list again with its errors.
snapshot_create = operation_view(OperationPage(
    ops.SNAPSHOT_CREATE, template="instances/config/snapshots.html", elsewhere=_list_url, find=_vm,
    unreadable=_unreadable, form=lambda call, data: SnapshotForm({s.name for s in call.context["vm"]["snapshots"]},
                                                                 data),
    again=lambda call: _page(call.request, call.ref, cast(SnapshotForm, call.form)), run=_take,
    answer=_to_job_or_list, then=_list_url))


def _named(call: Call) -> str:
    """The snapshot the request names ("" when none, or not a name)."""
    name = (call.request.POST if call.posted else call.request.GET).get("snapshot", "")
    return name if len(name) <= 255 else ""


def _asked(action: str) -> Callable[[Call], None]:
    def find(call: Call) -> None:
        call.context.update(snapshot=_named(call), action=action, sentence=CONFIRM[action])
    return find


def _chosen(run: Callable[[Call, str], Any]) -> Callable[[Call], Any]:
    """Nothing runs without a snapshot named (a POST without one says so and goes to the list)."""
    def chosen(call: Call) -> Any:
        if not _named(call):
            messages.error(call.request, _("Choose a snapshot."))
            return None
        return run(call, _named(call))
    return chosen


def _revert(call: Call, name: str) -> Outcome[str] | Job | None:
    try:
        return revert_snapshot(call.request, call.ref, name)
    except VirtError as exc:  # refused before libvirt was asked to revert: audited by revert_snapshot
        messages.error(call.request, _("%(action)s: not started: %(reason)s") % {
            "action": label_of(ops.SNAPSHOT_REVERT), "reason": told(call.request.user, exc)})
        return None


def _acting(op: Operation, action: str, run: Callable[[Call, str], Any]) -> View:
    """Revert or delete: a GET naming a snapshot (a reloaded confirmation, a link) shows the confirmation, one
    naming none the list; a POST runs only with the confirmation."""
    return operation_view(OperationPage(
        op, template="instances/config/snapshots_confirm.html", find=_asked(action),
        elsewhere=lambda call: "" if _named(call) else _list_url(call),
        confirm_field="confirm", confirm_when=lambda call: bool(_named(call)), run=_chosen(run),
        answer=_to_job_or_list, then=_list_url))


snapshot_revert = _acting(ops.SNAPSHOT_REVERT, "revert", _revert)
snapshot_delete = _acting(ops.SNAPSHOT_DELETE, "delete",
                          lambda call, name: delete_snapshot(call.request, call.ref, name))
