"""Snapshots of a VM: the list (view grant), create, revert and delete (change grant)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import libvirt
from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from instances.lookup import VMRef, vm_or_404
from instances.views.config_common import locked_change, say
from virt import snapshots
from virt.errors import InvalidInput, VirtError
from virt.xml.domain import Domain
from webkvm.permissions import can

# A snapshot of a running VM writes its whole memory into the disk; reverting reads it back.
SNAPSHOT_TIMEOUT = 300.0


class SnapshotForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Letters, digits, '.', '-' and '_'.")
    description = forms.CharField(required=False, max_length=snapshots.MAX_DESCRIPTION,
                                  widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, taken: set[str], *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"name": time.strftime("snap-%Y%m%d-%H%M%S")})
        super().__init__(*args, **kwargs)
        self.taken = taken

    def clean_name(self) -> str:
        try:
            name, _ = snapshots.validate(self.cleaned_data["name"], "")
        except InvalidInput as exc:
            raise forms.ValidationError(str(exc)) from None
        if name in self.taken:
            raise forms.ValidationError("This VM already has a snapshot with this name.")
        return name

    def clean_description(self) -> str:
        try:
            return snapshots.validate("description", self.cleaned_data.get("description") or "")[1]
        except InvalidInput as exc:
            raise forms.ValidationError(str(exc)) from None


def _overview(dom: libvirt.virDomain) -> dict[str, Any]:
    running = bool(dom.isActive())
    return {"name": str(dom.name()), "running": running, "snapshots": snapshots.list_snapshots(dom),
            "blockers": snapshots.blockers(Domain.from_xml(dom.XMLDesc(0)), running)}


def _page(request: HttpRequest, ref: VMRef, form: SnapshotForm | None = None) -> HttpResponse:
    context: dict[str, Any] = {"ref": ref, "can_change": can(request.user, "change", host=ref.host, vm_uuid=ref.uuid)}
    try:
        context.update(ref.call(_overview))
    except VirtError as exc:
        context["error"] = str(exc)
        return render(request, "instances/config/snapshots.html", context, status=503)
    context["form"] = form or SnapshotForm({s.name for s in context["snapshots"]})
    return render(request, "instances/config/snapshots.html", context)


@require_GET
def snapshot_list(request: HttpRequest, host: str, vm: uuid.UUID) -> HttpResponse:
    return _page(request, vm_or_404(request, host, vm, "view"))


@require_POST
def snapshot_create(request: HttpRequest, host: str, vm: uuid.UUID) -> HttpResponse:
    ref = vm_or_404(request, host, vm, "change")
    try:
        taken = ref.call(lambda dom: {str(s.getName()) for s in dom.listAllSnapshots(0)})
    except VirtError as exc:
        messages.error(request, f"Snapshot: {exc}")
        return redirect("instances:snapshots", ref.host.name, ref.uuid)
    form = SnapshotForm(taken, request.POST)
    if not form.is_valid():
        return _page(request, ref, form)
    name, description = form.cleaned_data["name"], form.cleaned_data["description"]
    outcome = locked_change(request, ref, "snapshot.create", lambda dom: snapshots.create(dom, name, description),
                            lambda info: f"snapshot {info.name} ({'with' if info.with_memory else 'without'} memory)",
                            SNAPSHOT_TIMEOUT)
    say(request, outcome, "No snapshot was taken",
        lambda info: f"snapshot {name} taken{' with its memory' if info.with_memory else ''}.")
    return redirect("instances:snapshots", ref.host.name, ref.uuid)


CONFIRM = {
    "revert": "The VM goes back to this snapshot: its disks, its definition and, for a snapshot of a running VM, "
              "its memory. Whatever changed since the snapshot is lost.",
    "delete": "The snapshot is deleted; the VM's current state is not touched.",
}


def _act(request: HttpRequest, host: str, vm: uuid.UUID, action: str) -> HttpResponse:
    ref = vm_or_404(request, host, vm, "change")
    name = request.POST.get("snapshot", "")
    if not name or len(name) > 255:
        messages.error(request, "Choose a snapshot.")
        return redirect("instances:snapshots", ref.host.name, ref.uuid)
    if request.POST.get("confirm") != "yes":
        return render(request, "instances/config/snapshots_confirm.html",
                      {"ref": ref, "snapshot": name, "action": action, "sentence": CONFIRM[action]})
    if action == "revert":
        outcome = locked_change(request, ref, "snapshot.revert", lambda dom: snapshots.revert(dom, name).state,
                                lambda state: f"reverted to snapshot {name} ({state})", SNAPSHOT_TIMEOUT)
        done = f"back to snapshot {name}."
    else:
        outcome = locked_change(request, ref, "snapshot.delete", lambda dom: snapshots.delete(dom, name),
                                lambda _name: f"deleted snapshot {name}", SNAPSHOT_TIMEOUT)
        done = f"snapshot {name} deleted."
    say(request, outcome, action.capitalize(), lambda _value: done)
    return redirect("instances:snapshots", ref.host.name, ref.uuid)


@require_POST
def snapshot_revert(request: HttpRequest, host: str, vm: uuid.UUID) -> HttpResponse:
    return _act(request, host, vm, "revert")


@require_POST
def snapshot_delete(request: HttpRequest, host: str, vm: uuid.UUID) -> HttpResponse:
    return _act(request, host, vm, "delete")
