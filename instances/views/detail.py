"""One VM: its detail page and the counters its usage graphs poll."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from hosts import services
from instances import operations as ops
from instances.fleet import meter
from instances.lookup import VMRef
from virt import lifecycle
from virt.domains import domain_detail
from virt.errors import VirtError, host_words
from virt.reads import vm_sample
from webkvm.operations import page, told, vm_route
from webkvm.permissions import can


@require_GET
@vm_route(page(ops.VIEW))
def detail(request: HttpRequest, ref: VMRef) -> HttpResponse:
    try:
        info = ref.call(domain_detail)
    except VirtError as exc:
        words = told(request.user, exc, host_words(exc))
        return render(request, "instances/detail.html", {"ref": ref, "error": words}, status=503)
    since = meter.state_since(str(ref.host.pk), info.uuid, info.state)
    allowed = {p: can(request.user, p, host=ref.host, vm_uuid=ref.uuid)
               for p in ("power", "change", "delete", "console")}
    actions = [a for a in lifecycle.available(info.state_code, info.managed_save) if allowed[a.permission]]
    return render(request, "instances/detail.html", {
        "ref": ref, "vm": info, "actions": actions, "allowed": allowed, "since": since,
    })


@require_GET
@vm_route(page(ops.VIEW, polled=True))
def stats(request: HttpRequest, ref: VMRef) -> HttpResponse:
    try:
        sample = services.read(ref.host, vm_sample(ref.uuid))
    except VirtError as exc:
        words = told(request.user, exc, host_words(exc))
        return JsonResponse({"error": words}, status=503)
    return JsonResponse(sample.as_dict())
