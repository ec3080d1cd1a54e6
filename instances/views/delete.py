"""Delete a VM: a confirmation page listing its volumes, then undefine (and delete the chosen volumes).
The page is generated from the declaration (webkvm/operation_views.py)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import libvirt
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from instances import operations as ops
from instances import quotas
from instances.lookup import VMRef
from instances.models import DomainDefinition
from instances.views.config_common import shown
from virt.delete import DeletePlan, DeleteReport, VolumeChoiceError, delete_plan, delete_vm
from virt.devices import FieldProblem
from webkvm.i18n import said
from webkvm.models import VMGrant
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Outcome, on_vm, refused, told
from webkvm.permissions import is_admin


def _context(request: HttpRequest, plan: DeletePlan, volume_error: str = "", chosen: Collection[str] = (),
             force_off: bool = False) -> dict[str, Any]:
    """The confirmation page's; after a refused choice of volumes, its field error and the ticks kept."""
    return {"name": plan.name, "running": plan.running, "deletable": plan.deletable, "kept": plan.kept,
            "seed": plan.seed_volume, "volume_error": volume_error, "chosen": set(chosen), "force_off": force_off,
            "admin": is_admin(request.user)}


def report_text(report: DeleteReport) -> str:
    if report.deleted:
        volumes = pgettext("list separator", ", ").join(report.deleted)
        return _("VM {name} deleted with its volumes {volumes}.").format(name=report.name, volumes=volumes)
    return _("VM {name} deleted.").format(name=report.name)


def _detail(report: DeleteReport) -> str:
    detail = f"volumes deleted: {', '.join(report.deleted) or 'none'}"
    if report.forced_off:
        detail += "; it was running and was forced off first"
    if report.failed:
        detail += "; volumes NOT deleted: " + ", ".join(f"{vol} ({why})" for vol, why in report.failed)
    return detail


def forget(ref: VMRef) -> None:
    """What the panel keeps of a deleted VM goes with it. Grants name the VM by UUID: one left behind would
    point at nothing (or at a reused UUID). Its XML history goes too: nobody can roll back a VM that is gone.
    What it took of its owner's quota is free again (instances/quotas.py)."""
    VMGrant.objects.filter(host=ref.host, vm_uuid=ref.uuid).delete()
    quotas.forget_vm(ref.host, ref.uuid)
    DomainDefinition.objects.filter(host=ref.host, vm_uuid=ref.uuid).delete()


def delete_vm_and_volumes(request: HttpRequest, ref: VMRef, keys: Collection[str], *, force_off: bool = False,
                          quiet: bool = False) -> Outcome[DeleteReport]:
    """Undefine the VM and delete the chosen volumes (`keys`, from its delete plan); then forget it.

    A refused choice of volumes changes nothing: it is audited as refused and answered as a field problem
    (its `exception` the VolumeChoiceError, which carries the plan; `error` the words this user may read).
    Unless `quiet`, the outcome is said as messages (a refused choice is the page's to show)."""
    choice: list[VolumeChoiceError] = []

    def run(dom: libvirt.virDomain) -> DeleteReport:
        try:
            return delete_vm(dom, keys, force_off=force_off)
        except VolumeChoiceError as exc:  # nothing changed: the page again, the refusal on the volume field
            choice.append(exc)
            raise FieldProblem("volume", str(exc)) from None

    # Said here rather than by on_vm: what was deleted and what was not, or why nothing was.
    outcome = on_vm(request, ops.DELETE_VM, ref, run, done=report_text, detail=_detail, quiet=True)
    if choice:
        refusal = choice[0]
        refused(request, ops.DELETE_VM, host=ref.host, name=refusal.plan.name, reason=f"uuid {ref.uuid}; {refusal}")
        words = said(refusal) if is_admin(request.user) else shown(refusal.plain)
        return Outcome(refusal.plan.name, error=words, field_problem=True, exception=refusal)
    if not outcome.ok or outcome.value is None:
        if not quiet:
            why = told(request.user, outcome.exception) if outcome.exception else outcome.error
            messages.error(request, _("The VM was not deleted: {why}").format(why=why))
        return outcome
    report = outcome.value
    forget(ref)
    if not quiet:
        messages.success(request, report_text(report))
        for vol, why in report.failed:
            messages.error(request, _("Volume {volume} could not be deleted: {why}").format(volume=vol, why=why))
    return outcome


# --- the page, generated from the declaration (webkvm/operation_views.py) --------------------------


def _plan(call: Call) -> None:
    """The confirmation shows the VM's delete plan; a POST reads it again only when its choice is refused."""
    call.context["vm_uuid"] = call.ref.uuid
    if not call.posted:
        call.context.update(_context(call.request, call.ref.call(delete_plan)))


def _delete(call: Call) -> Outcome[DeleteReport]:
    post = call.request.POST
    return delete_vm_and_volumes(call.request, call.ref, post.getlist("volume"), force_off=post.get("force_off") == "1")


def _refused_choice(call: Call, outcome: Outcome[DeleteReport]) -> HttpResponse | None:
    """A refused choice of volumes: the confirmation again, with the refusal on the volume field."""
    if not isinstance(outcome.exception, VolumeChoiceError):
        return None
    post = call.request.POST
    call.context.update(_context(call.request, outcome.exception.plan, outcome.error, post.getlist("volume"),
                                 post.get("force_off") == "1"))
    return render(call.request, "instances/delete.html", call.context)


def _after(call: Call, outcome: Outcome[DeleteReport]) -> str:
    if not outcome.ok:  # said as messages: the confirmation again
        return reverse("instances:delete", args=[call.ref.host.name, call.ref.uuid])
    return reverse("instances:host", args=[call.ref.host.name])


delete = operation_view(OperationPage(
    ops.DELETE_VM, template="instances/delete.html", find=_plan, run=_delete, answer=_refused_choice, then=_after))
