"""Create a VM (admin only; instances/operations.py CREATE): one page of numbered steps (instances/forms_create.py).

The host is a field of the form (the only host, or the first, preselected); choosing another one, or asking for
every machine type, posts the form with "refresh", which shows it again with that host's choices and creates
nothing (the page's script does that at once; without it, the "Update choices" button).

A creation that allocates its new disk in full up front can take minutes: it runs as a durable job
(instances/create_jobs.py) and the user is sent to its page. Any other creation is a handful of calls,
made in the request, which then leads to the new VM's page. Either writes one audit record (vm.create).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import libvirt
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from hosts import services
from hosts.models import Host
from instances import create_jobs
from instances import operations as ops
from instances.forms_create import CreateVMForm
from instances.models import Flavor
from jobs.models import Job
from virt.capabilities import HostOffer, host_offer
from virt.create import NewVM, NewVolume, PoolVolume, create_vm, volume_name
from virt.devices import FieldProblem
from virt.errors import NotFound, VirtError
from virt.osinfo import catalogue
from virt.sharing import VolumeInUse, volume_users
from webkvm.i18n import said
from webkvm.operations import Outcome, host_or_404, perform, refused, route

REFRESH = "refresh"  # a submit button that re-reads the choices (another host, every machine type) and creates nothing
BOOLEANS = ("start", "all_machines", "disk_allocate")


def _flavor(raw: str | None) -> Flavor | None:
    """The flavor a link names; a junk or stale id simply pre-fills nothing."""
    if not raw or not raw.isdigit():
        return None
    return Flavor.objects.filter(pk=int(raw)).first()


def _initial(request: HttpRequest, host: Host, flavor: Flavor | None) -> dict[str, Any]:
    """What an unbound form shows: the host and flavor of the link, or what a "refresh" posted (a changed host
    or "show every machine type" re-reads the choices without creating anything)."""
    initial: dict[str, Any] = {"host": host.name}
    if flavor is not None:
        initial["size"] = f"flavor:{flavor.pk}"
    if request.method == "POST":
        for name in request.POST:
            if name not in ("csrfmiddlewaretoken", REFRESH, "host"):
                initial[name] = request.POST.get(name)
        for name in BOOLEANS:
            initial[name] = name in request.POST
    return initial


def _host(request: HttpRequest) -> Host | None:
    """The host the form is for: as posted, as the link says, or the first (the only one, usually)."""
    posted = Host.objects.filter(name=request.POST["host"]).first() if request.POST.get("host") else None
    if posted is not None:
        return posted
    name = request.GET.get("host", "")  # an unknown posted host stays a field error of this host's form
    if name:
        return host_or_404(name)
    return Host.objects.order_by("name").first()


def _describe(spec: NewVM, vm_uuid: str, start: bool) -> str:
    if isinstance(spec.disk, NewVolume):
        disk = f"new {spec.disk.format} volume of {spec.disk.size_mib} MiB in pool {spec.disk.pool}"
    elif spec.disk is not None:
        disk = f"volume {spec.disk.pool}/{spec.disk.volume}"
    else:
        disk = "none"
    nics = ", ".join(nic.network or f"bridge {nic.bridge}" for nic in spec.nics) or "none"
    return (f"uuid {vm_uuid}; {spec.domain_type} {spec.machine or 'default machine'}; {spec.vcpus} vCPU, "
            f"{spec.memory_mib} MiB, {spec.firmware}; boot disk: {disk} ({spec.disk_bus}); "
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


def create_form(offer: HostOffer, data: Any = None, *, initial: dict[str, Any] | None = None,
                flavors: list[Flavor] | None = None) -> CreateVMForm:
    """The create form of a host's offer, as the page and the API build it."""
    return CreateVMForm(offer, data, initial=initial, catalogue=catalogue(),
                        hosts=Host.objects.order_by("name").values_list("name", flat=True),
                        flavors=list(Flavor.objects.all()) if flavors is None else flavors)


def offer_of(request: HttpRequest, host: Host, creating: str | None = None) -> HostOffer:
    """What `host` offers. When asked to create a VM (`creating`: its name), a failure to ask is audited as a
    refused creation; raised either way."""
    try:
        offer: HostOffer = services.call(host, host_offer)
    except VirtError as exc:
        if creating is not None:
            refused(request, ops.CREATE, host=host, name=creating,
                    reason=f"{host.name} could not be asked what it offers: {exc}")
        raise
    return offer


def run_create(request: HttpRequest, host: Host, form: CreateVMForm, *, quiet: bool = False
               ) -> Outcome[str] | Job | None:
    """Create the VM a valid form describes: a job when its new disk is allocated in full up front (None when
    it did not start: said on the form, or raised when `quiet`), else in the request (the Outcome: its value is
    the new VM's UUID; a failure is also said on the form). One audit record (vm.create) either way."""
    spec = form.to_spec()
    start = bool(form.cleaned_data.get("start"))
    if form.allocates():
        return create_jobs.start_create(request, host, _named(spec, form.offer), start, form=form, quiet=quiet)

    def work() -> str:
        try:
            return services.change(host, lambda conn: _create_unshared(conn, spec, start), ops.CREATE.timeout)
        except VolumeInUse as exc:  # a wrong choice, like any other field error: nothing was made
            raise FieldProblem.of("existing_volume", exc) from None
        except NotFound as exc:  # a chosen pool or volume vanished meanwhile: words, not a 404
            raise VirtError(exc.template, **exc.params) from None

    outcome = perform(request, ops.CREATE, host=host, name=spec.name, work=work, done="",
                      detail=lambda vm_uuid: _describe(spec, vm_uuid, start), quiet=True)
    error = said(outcome.exception) if outcome.exception is not None else outcome.error
    if outcome.field_problem:
        form.add_error("existing_volume", error)
    elif not outcome.ok:
        form.add_error(None, _("{host} did not create the VM: {error}").format(host=host.name, error=error))
    elif not quiet:
        created = (_("VM {name} created on {host} and started: its console is one click away (Console).") if start
                   else _("VM {name} created on {host}."))
        messages.success(request, created.format(name=spec.name, host=host.name))
    return outcome


@require_http_methods(["GET", "POST"])
@route(ops.CREATE)
def create(request: HttpRequest) -> HttpResponse:
    flavor = _flavor(request.GET.get("flavor"))
    host = _host(request)
    if host is None:
        return render(request, "instances/create.html", {"no_hosts": True})
    flavors = list(Flavor.objects.all())
    context: dict[str, Any] = {"host": host, "flavor": flavor, "flavors": flavors}
    posted = request.method == "POST" and REFRESH not in request.POST
    try:
        offer = offer_of(request, host, request.POST.get("name", "") if posted else None)
    except VirtError as exc:
        context["error"] = _("{host} could not be asked what it offers: {error}").format(host=host.name,
                                                                                        error=said(exc))
        context["hosts"] = list(Host.objects.order_by("name").values_list("name", flat=True))
        return render(request, "instances/create.html", context, status=503)
    form = create_form(offer, request.POST if posted else None, initial=_initial(request, host, flavor),
                       flavors=flavors)
    context["form"] = form
    if not posted or not form.is_valid():
        return render(request, "instances/create.html", context)
    result = run_create(request, host, form)
    if isinstance(result, Job):
        return redirect(result)
    if result is None or not result.ok or result.value is None:
        return render(request, "instances/create.html", context)
    return redirect("instances:detail", host.name, result.value)
