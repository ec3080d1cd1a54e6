"""Delete a VM: a confirmation page listing its volumes, then undefine (and delete the chosen volumes)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from instances.lookup import VMRef, vm_or_404
from virt.delete import DeleteReport, VMVolume, delete_vm, vm_volumes
from virt.errors import Busy, VirtError
from webkvm import audit
from webkvm.models import AuditResult, VMGrant

# Destroying a VM and deleting large raw volumes can take a while on a real host.
DELETE_TIMEOUT = 60.0


def _confirmation(request: HttpRequest, ref: VMRef) -> HttpResponse:
    context: dict[str, object] = {"host": ref.host, "vm_uuid": ref.uuid}
    try:
        name, running, volumes = ref.call(lambda dom: (dom.name(), bool(dom.isActive()), vm_volumes(dom)))
    except VirtError as exc:
        context["error"] = str(exc)
        return render(request, "instances/delete.html", context, status=503)
    deletable: list[VMVolume] = [vol for vol in volumes if vol.deletable]
    context.update({"name": name, "running": running, "deletable": deletable,
                    "kept": [vol for vol in volumes if not vol.deletable]})
    return render(request, "instances/delete.html", context)


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
