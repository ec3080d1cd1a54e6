"""Actions on one VM: power, autostart, rename, title and description (instances/operations.py).

GET of an action that can lose data shows its confirmation (so a reload never ends on a bare 405);
POST runs it through the declared operation: its check, the VM's lock, one audit record, one message.
"""

from __future__ import annotations

import libvirt
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from instances import operations as ops
from instances.lookup import VMRef
from virt import lifecycle
from virt.errors import VirtError
from webkvm.operations import on_vm, told, vm_route


def _back(request: HttpRequest, ref: VMRef) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(reverse("instances:detail", args=[ref.host.name, ref.uuid]))


@require_http_methods(["GET", "POST"])
@vm_route(ops.ACTION)
def action(request: HttpRequest, ref: VMRef, action: str) -> HttpResponse:
    chosen = lifecycle.ACTIONS[action]
    if request.method == "GET" and not chosen.confirm:
        return redirect(reverse("instances:detail", args=[ref.host.name, ref.uuid]))
    if chosen.confirm and request.POST.get("confirm") != "yes":
        try:
            name = ref.call(lambda dom: dom.name())
        except VirtError as exc:
            messages.error(request, told(request.user, exc))
            return _back(request, ref)
        return render(request, "instances/confirm.html", {
            "ref": ref, "action": chosen, "name": name, "next": request.POST.get("next", ""),
        })
    on_vm(request, ops.ACTIONS[action], ref, lambda dom: lifecycle.perform(dom, action),
          done=f"{chosen.label.lower()}: done.")
    return _back(request, ref)


@require_POST
@vm_route(ops.RENAME)
def rename(request: HttpRequest, ref: VMRef) -> HttpResponse:
    new_name = request.POST.get("name", "").strip()

    def run(dom: libvirt.virDomain) -> str:
        old = str(dom.name())
        lifecycle.rename(dom, new_name)
        return old

    on_vm(request, ops.RENAME, ref, run, done=f"renamed to {new_name}.", detail=lambda old: f"{old} → {new_name}")
    return _back(request, ref)


@require_POST
@vm_route(ops.DESCRIBE)
def describe(request: HttpRequest, ref: VMRef) -> HttpResponse:
    title, description = request.POST.get("title", ""), request.POST.get("description", "")
    on_vm(request, ops.DESCRIBE, ref, lambda dom: lifecycle.describe(dom, title, description),
          done="title and description saved.")
    return _back(request, ref)
