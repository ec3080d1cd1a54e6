"""Delete a VM: a confirmation page listing its volumes, then undefine (and delete the chosen volumes)."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from instances.lookup import VMRef, vm_or_404
from virt.delete import DeletePlan, DeleteReport, VolumeChoiceError, delete_plan, delete_vm
from virt.errors import Busy, VirtError
from webkvm import audit
from webkvm.models import AuditResult, VMGrant

# Destroying a VM and deleting large raw volumes can take a while on a real host.
DELETE_TIMEOUT = 60.0


def _confirmation(request: HttpRequest, ref: VMRef) -> HttpResponse:
    try:
        plan = ref.call(delete_plan)
    except VirtError as exc:
        context: dict[str, object] = {"host": ref.host, "vm_uuid": ref.uuid, "error": str(exc)}
        return render(request, "instances/delete.html", context, status=503)
    return _page(request, ref, plan)


def _page(request: HttpRequest, ref: VMRef, plan: DeletePlan, volume_error: str = "",
          chosen: Collection[str] = (), force_off: bool = False) -> HttpResponse:
    """The confirmation page; after a refused choice of volumes, its field error and the ticks kept."""
    return render(request, "instances/delete.html", {
        "host": ref.host, "vm_uuid": ref.uuid, "name": plan.name, "running": plan.running,
        "deletable": plan.deletable, "kept": plan.kept, "volume_error": volume_error, "chosen": set(chosen),
        "force_off": force_off})


def _report_text(report: DeleteReport) -> str:
    text = f"VM {report.name} deleted"
    if report.deleted:
        text += f" with its volumes {', '.join(report.deleted)}"
    return text + "."


@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, host: str, vm: uuid.UUID) -> HttpResponse:
    ref = vm_or_404(request, host, vm, "delete")
    if request.method != "POST":
        return _confirmation(request, ref)
    keys = request.POST.getlist("volume")
    force_off = request.POST.get("force_off") == "1"
    try:
        report = ref.call_locked(lambda dom: delete_vm(dom, keys, force_off=force_off), DELETE_TIMEOUT)
    except Busy as exc:
        audit.record(request, "vm.delete", object_type="vm", object_name=ref.uuid, host_name=ref.host.name,
                     result=AuditResult.FAILED, detail=f"busy: {exc}")
        messages.error(request, f"Busy: {exc}")
        return redirect("instances:delete", ref.host.name, ref.uuid)
    except VolumeChoiceError as exc:  # nothing changed: the page again, with the refusal on the volume field
        audit.record(request, "vm.delete", object_type="vm", object_name=exc.plan.name, host_name=ref.host.name,
                     result=AuditResult.FAILED, detail=f"uuid {ref.uuid}; {exc}")
        return _page(request, ref, exc.plan, str(exc), keys, force_off)
    except VirtError as exc:
        audit.record(request, "vm.delete", object_type="vm", object_name=ref.uuid, host_name=ref.host.name,
                     result=AuditResult.FAILED, detail=str(exc))
        messages.error(request, f"The VM was not deleted: {exc}")
        return redirect("instances:delete", ref.host.name, ref.uuid)
    # Grants name the VM by UUID: one left behind would point at nothing (or at a reused UUID).
    VMGrant.objects.filter(host=ref.host, vm_uuid=ref.uuid).delete()
    detail = f"uuid {ref.uuid}; volumes deleted: {', '.join(report.deleted) or 'none'}"
    if report.forced_off:
        detail += "; it was running and was forced off first"
    if report.failed:
        detail += "; volumes NOT deleted: " + ", ".join(f"{vol} ({why})" for vol, why in report.failed)
    audit.record(request, "vm.delete", object_type="vm", object_name=report.name, host_name=ref.host.name,
                 detail=detail)
    messages.success(request, _report_text(report))
    for vol, why in report.failed:
        messages.error(request, f"Volume {vol} could not be deleted: {why}")
    return redirect("instances:host", ref.host.name)
