"""Clone a shut-off VM (admins: a clone is a new VM, and creating VMs is theirs), with a progress page.

The source VM's lock is held from the check to the end of the copy, so nobody starts it (through
the panel) while its disks are read. The copy runs in a background job (virt.clone); its one audit
record is written when it ends, with the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django import db, forms
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from hosts import services
from instances.lookup import VMRef, vm_or_404
from virt.clone import JOBS, CloneJob, ClonePreview, plan_clone, preview
from virt.create import NAME_RE
from virt.errors import VirtError
from webkvm import audit
from webkvm.models import AuditResult
from webkvm.permissions import require_admin

PLAN_TIMEOUT = 30.0  # reading every VM's MAC addresses on a large host takes a moment


class CloneForm(forms.Form):
    name = forms.CharField(label="Name of the clone", max_length=63, help_text="Letters, digits, '.', '-' and '_'.")

    def __init__(self, taken: frozenset[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken = taken

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if not NAME_RE.match(name):
            raise forms.ValidationError("Use letters, digits, '.', '-' and '_' (starting with a letter or digit).")
        if name in self.taken:
            raise forms.ValidationError("A VM with this name already exists on this host.")
        return name


def _admin_ref(request: HttpRequest, host: str, vm: uuid.UUID) -> VMRef:
    ref = vm_or_404(request, host, vm, "change")
    require_admin(request, object_name=ref.uuid)
    return ref


def _free_name(base: str, taken: frozenset[str]) -> str:
    candidate, number = f"{base}-clone"[:63], 1
    while candidate in taken:
        number += 1
        candidate = f"{base}-clone-{number}"[:63]
    return candidate


def _finisher(request: HttpRequest, ref: VMRef) -> Callable[[CloneJob], None]:
    """What runs in the job's thread when it ends: the audit record, then the VM's lock is released."""
    user: AbstractBaseUser | AnonymousUser = request.user
    remote_addr = request.META.get("REMOTE_ADDR")
    host_name, host_key = ref.host.name, str(ref.host.pk)

    def done(job: CloneJob) -> None:
        try:
            plan = job.plan
            ok = job.state == "done"
            detail = (f"uuid {plan.source_uuid} -> {plan.new_name} ({job.new_uuid or 'not defined'}); disks: "
                      + (", ".join(f"{d.pool}/{d.source_volume} -> {d.new_volume}" for d in plan.disks) or "none"))
            audit.record(None, "vm.clone", object_type="vm", object_name=plan.source_name, host_name=host_name,
                         result=AuditResult.OK if ok else AuditResult.FAILED,
                         detail=detail if ok else f"{detail}; {job.message}", user=user, remote_addr=remote_addr)
        finally:
            services.vm_locks.release(host_key, ref.uuid)
            db.connection.close()  # this thread's own database connection

    return done


def _start(request: HttpRequest, ref: VMRef, new_name: str) -> CloneJob:
    """Take the VM's lock, plan (raises VirtError, changing nothing) and start the copy."""
    key = str(ref.host.pk)
    services.vm_locks.acquire(key, ref.uuid)
    try:
        plan = ref.call(lambda dom: plan_clone(dom, new_name), PLAN_TIMEOUT)
        job = CloneJob(plan, key)
        JOBS.start(job, lambda fn, timeout: services.change(ref.host, fn, timeout), _finisher(request, ref))
    except BaseException:
        services.vm_locks.release(key, ref.uuid)
        raise
    return job


@require_http_methods(["GET", "POST"])
def clone_start(request: HttpRequest, host: str, vm: uuid.UUID) -> HttpResponse:
    ref = _admin_ref(request, host, vm)
    try:
        info: ClonePreview = ref.call(preview, PLAN_TIMEOUT)
    except VirtError as exc:
        return render(request, "instances/config/clone.html", {"ref": ref, "error": str(exc)}, status=503)
    form = CloneForm(info.taken_names, request.POST if request.method == "POST" else None,
                     initial={"name": _free_name(info.name, info.taken_names)})
    context = {"ref": ref, "info": info, "form": form}
    if request.method != "POST" or not form.is_valid():
        return render(request, "instances/config/clone.html", context)
    new_name = form.cleaned_data["name"]
    try:
        job = _start(request, ref, new_name)
    except VirtError as exc:
        audit.record(request, "vm.clone", object_type="vm", object_name=info.name, host_name=ref.host.name,
                     result=AuditResult.FAILED, detail=f"uuid {ref.uuid} -> {new_name}: {exc}")
        form.add_error(None, f"The clone was not started: {exc}")
        return render(request, "instances/config/clone.html", context)
    return redirect("instances:clone_progress", ref.host.name, ref.uuid, job.id)


def _job(request: HttpRequest, host: str, vm: uuid.UUID, job_id: str) -> tuple[VMRef, CloneJob]:
    ref = _admin_ref(request, host, vm)
    job = JOBS.get(job_id)
    if job is None or not job.belongs_to(str(ref.host.pk), ref.uuid):
        raise Http404("No such clone job (they are kept an hour after they end).")
    return ref, job


def _status(ref: VMRef, job: CloneJob) -> dict[str, Any]:
    status = job.as_dict()
    status["url"] = reverse("instances:detail", args=[ref.host.name, job.new_uuid]) if job.new_uuid else ""
    return status


@require_GET
def clone_progress(request: HttpRequest, host: str, vm: uuid.UUID, job: str) -> HttpResponse:
    ref, clone_job = _job(request, host, vm, job)
    return render(request, "instances/config/clone_progress.html",
                  {"ref": ref, "job": _status(ref, clone_job),
                   "status_url": reverse("instances:clone_status", args=[ref.host.name, ref.uuid, clone_job.id])})


@require_GET
def clone_status(request: HttpRequest, host: str, vm: uuid.UUID, job: str) -> JsonResponse:
    ref, clone_job = _job(request, host, vm, job)
    return JsonResponse(_status(ref, clone_job))
