"""Actions on one VM: power, autostart, rename, title and description.

Each goes through the one permission check, is serialised per VM (a second one gets
"busy"), writes exactly one audit record and reports libvirt's failure in words.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import libvirt
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from instances.lookup import VMRef, vm_or_404
from virt import lifecycle
from virt.errors import VirtError
from webkvm import audit
from webkvm.models import AuditResult


def _back(request: HttpRequest, ref: VMRef) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(reverse("instances:detail", args=[ref.host.name, ref.uuid]))


def _run(request: HttpRequest, ref: VMRef, action: str, fn: Callable[[libvirt.virDomain], str],
         done: str, timeout: float | None = None) -> HttpResponse:
    """Run fn(domain) -> VM name under the VM's lock; message, audit and redirect back."""
    name = ref.uuid
    try:
        name = ref.call_locked(fn, timeout)
    except VirtError as exc:
        messages.error(request, f"{action}: {exc}")
        audit.record(request, f"vm.{action}", object_type="vm", object_name=name, host_name=ref.host.name,
                     result=AuditResult.FAILED, detail=f"{ref.uuid}: {exc}")
    else:
        messages.success(request, f"{name}: {done}")
        audit.record(request, f"vm.{action}", object_type="vm", object_name=name, host_name=ref.host.name,
                     detail=ref.uuid)
    return _back(request, ref)


@require_POST
def action(request: HttpRequest, host: str, vm: uuid.UUID, action: str) -> HttpResponse:
    chosen = lifecycle.ACTIONS.get(action)
    if chosen is None:
        raise Http404("No such action.")
    ref = vm_or_404(request, host, vm, chosen.permission)
    if chosen.confirm and request.POST.get("confirm") != "yes":
        try:
            name = ref.call(lambda dom: dom.name())
        except VirtError as exc:
            messages.error(request, str(exc))
            return _back(request, ref)
        return render(request, "instances/confirm.html", {
            "ref": ref, "action": chosen, "name": name, "next": request.POST.get("next", ""),
        })

    def run(dom: libvirt.virDomain) -> str:
        lifecycle.perform(dom, action)
        return str(dom.name())

    return _run(request, ref, action, run, f"{chosen.label.lower()}: done.", chosen.timeout)


@require_POST
def rename(request: HttpRequest, host: str, vm: uuid.UUID) -> HttpResponse:
    ref = vm_or_404(request, host, vm, "change")
    new_name = request.POST.get("name", "").strip()

    def run(dom: libvirt.virDomain) -> str:
        old = str(dom.name())
        lifecycle.rename(dom, new_name)
        return f"{old} → {new_name}"

    return _run(request, ref, "rename", run, "renamed.")


@require_POST
def describe(request: HttpRequest, host: str, vm: uuid.UUID) -> HttpResponse:
    ref = vm_or_404(request, host, vm, "change")
    title, description = request.POST.get("title", ""), request.POST.get("description", "")

    def run(dom: libvirt.virDomain) -> str:
        lifecycle.describe(dom, title, description)
        return str(dom.name())

    return _run(request, ref, "describe", run, "title and description saved.")
