"""Create a VM on a chosen host (admin only; instances/operations.py CREATE), optionally pre-filled from a flavor.

A creation that allocates its new disk in full up front can take minutes: it runs as a durable job
(instances/create_jobs.py) and the user is sent to its page. Any other creation is a handful of calls,
made in the request, which then leads to the new VM's page. Either writes one audit record (vm.create).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any
from urllib.parse import urlencode

import libvirt
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from hosts import services
from hosts.models import Host
from instances import create_jobs
from instances import operations as ops
from instances.forms_create import CreateVMForm
from instances.models import Flavor
from virt.capabilities import HostOffer, host_offer
from virt.create import NewVM, NewVolume, PoolVolume, create_vm, volume_name
from virt.devices import FieldProblem
from virt.errors import NotFound, VirtError
from virt.sharing import VolumeInUse, volume_users
from webkvm.operations import host_or_404, perform, refused, route


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


def _named(spec: NewVM, offer: HostOffer) -> NewVM:
    """The spec with the new VM's UUID and its new volume's name chosen now, for a job to record."""
    disk = spec.disk
    if isinstance(disk, NewVolume) and not disk.name:
        pool = offer.pool(disk.pool)
        disk = dataclasses.replace(disk, name=volume_name(set(pool.volumes if pool else ()), spec.name, disk.format))
    return dataclasses.replace(spec, disk=disk, uuid=spec.uuid or str(uuid.uuid4()))


@require_http_methods(["GET", "POST"])
@route(ops.CREATE)
def create(request: HttpRequest) -> HttpResponse:
    flavor = _flavor(request.GET.get("flavor"))
    host_name = request.GET.get("host", "")
    if not host_name:
        return _pick_host(request, flavor)
    host = host_or_404(host_name)
    context: dict[str, Any] = {"host": host, "flavor": flavor, "flavors": Flavor.objects.all()}
    try:
        offer: HostOffer = services.call(host, host_offer)
    except VirtError as exc:
        if request.method == "POST":
            refused(request, ops.CREATE, host=host, name=request.POST.get("name", ""),
                    reason=f"{host.name} could not be asked what it offers: {exc}")
        context["error"] = f"{host.name} could not be asked what it offers: {exc}"
        return render(request, "instances/create.html", context, status=503)
    form = CreateVMForm(offer, request.POST if request.method == "POST" else None, initial=_initial(flavor))
    context["form"] = form
    if request.method != "POST" or not form.is_valid():
        return render(request, "instances/create.html", context)
    spec = form.to_spec()
    start = bool(form.cleaned_data.get("start"))
    if form.allocates():
        job = create_jobs.start_create(request, host, _named(spec, offer), start, form=form)
        return redirect(job) if job is not None else render(request, "instances/create.html", context)

    def work() -> str:
        try:
            return services.change(host, lambda conn: _create_unshared(conn, spec, start), ops.CREATE.timeout)
        except VolumeInUse as exc:  # a wrong choice, like any other field error: nothing was made
            raise FieldProblem("existing_volume", str(exc)) from None
        except NotFound as exc:  # a chosen pool or volume vanished meanwhile: words, not a 404
            raise VirtError(str(exc)) from None

    outcome = perform(request, ops.CREATE, host=host, name=spec.name, work=work, done="",
                      detail=lambda vm_uuid: _describe(spec, vm_uuid, start), quiet=True)
    if outcome.field_problem:
        form.add_error("existing_volume", outcome.error)
    elif not outcome.ok:
        form.add_error(None, f"{host.name} did not create the VM: {outcome.error}")
    if not outcome.ok or outcome.value is None:
        return render(request, "instances/create.html", context)
    messages.success(request, f"VM {spec.name} created on {host.name}{' and started' if start else ''}.")
    return redirect("instances:detail", host.name, outcome.value)
