"""Create a VM on a chosen host (admin only), optionally pre-filled from a flavor."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import libvirt
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from hosts import services
from hosts.models import Host
from instances.forms_create import CreateVMForm
from instances.models import Flavor
from virt.capabilities import HostOffer, host_offer
from virt.create import NewVM, NewVolume, PoolVolume, create_vm
from virt.errors import VirtError
from virt.sharing import VolumeInUse, volume_users
from webkvm import audit
from webkvm.models import AuditResult
from webkvm.views_base import admin_required

# Making a volume and defining a VM are a handful of calls, but a busy storage backend can be slow.
CREATE_TIMEOUT = 60.0


def _flavor(raw: str | None) -> Flavor | None:
    """The flavor a link names; a junk or stale id simply pre-fills nothing."""
    if not raw or not raw.isdigit():
        return None
    return Flavor.objects.filter(pk=int(raw)).first()


def _initial(flavor: Flavor | None) -> dict[str, Any]:
    if flavor is None:
        return {"vcpus": 1, "memory_mib": 1024, "disk_size_gib": 10}
    return {"vcpus": flavor.vcpus, "memory_mib": flavor.memory_mib, "disk_size_gib": flavor.disk_gib}


def _pick_host(request: HttpRequest, flavor: Flavor | None) -> HttpResponse:
    hosts = list(Host.objects.all())
    query = {"flavor": flavor.pk} if flavor else {}
    if len(hosts) == 1:  # nothing to choose: straight to the form
        return redirect(f"{reverse('instances:create')}?{urlencode({'host': hosts[0].name, **query})}")
    links = [(host, f"?{urlencode({'host': host.name, **query})}") for host in hosts]
    return render(request, "instances/create.html", {"pick_host": True, "host_links": links, "flavor": flavor})


def _describe(spec: NewVM, vm_uuid: str, start: bool) -> str:
    if isinstance(spec.disk, NewVolume):
        disk = f"new {spec.disk.format} volume of {spec.disk.size_mib} MiB in pool {spec.disk.pool}"
    else:
        disk = f"volume {spec.disk.pool}/{spec.disk.volume}"
    nics = ", ".join(nic.network or f"bridge {nic.bridge}" for nic in spec.nics) or "none"
    return (f"uuid {vm_uuid}; {spec.vcpus} vCPU, {spec.memory_mib} MiB, {spec.firmware}; boot disk: {disk}; "
            f"ISO: {f'{spec.iso.pool}/{spec.iso.volume}' if spec.iso else 'none'}; networks: {nics}"
            f"{'; started' if start else ''}")


def _create_unshared(conn: libvirt.virConnect, spec: NewVM, start: bool) -> str:
    """create_vm, refusing an existing boot volume another VM uses (ISOs on CD-ROMs stay free to share)."""
    if isinstance(spec.disk, PoolVolume):
        users = volume_users(conn, spec.disk.pool, spec.disk.volume)
        if users:
            raise VolumeInUse(spec.disk.pool, spec.disk.volume, users)
    return str(create_vm(conn, spec, start=start).UUIDString())


@require_http_methods(["GET", "POST"])
@admin_required
def create(request: HttpRequest) -> HttpResponse:
    flavor = _flavor(request.GET.get("flavor"))
    host_name = request.GET.get("host", "")
    if not host_name:
        return _pick_host(request, flavor)
    host = get_object_or_404(Host, name=host_name)
    context: dict[str, Any] = {"host": host, "flavor": flavor, "flavors": Flavor.objects.all()}
    try:
        offer: HostOffer = services.call(host, host_offer)
    except VirtError as exc:
        if request.method == "POST":
            audit.record(request, "vm.create", object_type="vm", object_name=request.POST.get("name", ""),
                         host_name=host.name, result=AuditResult.FAILED, detail=str(exc))
        context["error"] = f"{host.name} could not be asked what it offers: {exc}"
        return render(request, "instances/create.html", context, status=503)
    form = CreateVMForm(offer, request.POST if request.method == "POST" else None, initial=_initial(flavor))
    context["form"] = form
    if request.method != "POST" or not form.is_valid():
        return render(request, "instances/create.html", context)
    spec = form.to_spec()
    start = bool(form.cleaned_data.get("start"))
    try:
        vm_uuid = services.change(host, lambda conn: _create_unshared(conn, spec, start), CREATE_TIMEOUT)
    except VolumeInUse as exc:  # a wrong choice, like any other field error: nothing was made
        form.add_error("existing_volume", str(exc))
        return render(request, "instances/create.html", context)
    except VirtError as exc:
        audit.record(request, "vm.create", object_type="vm", object_name=spec.name, host_name=host.name,
                     result=AuditResult.FAILED, detail=str(exc))
        form.add_error(None, f"{host.name} did not create the VM: {exc}")
        return render(request, "instances/create.html", context)
    audit.record(request, "vm.create", object_type="vm", object_name=spec.name, host_name=host.name,
                 detail=_describe(spec, vm_uuid, start))
    messages.success(request, f"VM {spec.name} created on {host.name}{' and started' if start else ''}.")
    return redirect("instances:detail", host.name, vm_uuid)
