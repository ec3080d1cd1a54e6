"""Create a VM from a cloud image (instances/forms_image.py): by an admin on any host (`create_image`), or by a
user within their quota (`create_own`: the hosts, images, flavors, pools and networks the quota allows).

The request checks the form, chooses the VM's UUID, disk volume name and MAC, builds the cloud-init seed and, for
a user, reserves the quota (instances/quotas.reserve: check and reservation in one transaction); the creation
itself is a job (instances/image_jobs.py) whose page the user is sent to. The API (api/vm_life.py) runs the
same functions.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from hosts import services
from hosts.models import Host
from instances import image_jobs, quotas
from instances import operations as ops
from instances.forms_image import ImageCreateForm
from instances.models import Flavor
from jobs.models import Job
from storage.images import available_images
from virt import cloudinit
from virt.capabilities import HostOffer, host_offer
from virt.devices import FieldProblem
from virt.errors import VirtError
from virt.image_create import disk_volume_name
from virt.macs import random_mac
from webkvm.i18n import said
from webkvm.models import SharedKind
from webkvm.operations import Operation, host_or_404, refused, route, told
from webkvm.permissions import is_admin


def offer_of(host: Host) -> HostOffer:
    offer: HostOffer = services.call(host, host_offer)
    return offer


def image_form(request: HttpRequest, host: Host, offer: HostOffer, data: Any = None, *, own: bool,
               initial: dict[str, Any] | None = None) -> ImageCreateForm:
    """The form of `host`: everything for an admin's page; for a user's own VM, only what their quota allows
    (images, flavors, sizes of their own only when a quota of theirs allows them, and of what admins opened to
    users the pools and networks the quota lists)."""
    if not own:
        return ImageCreateForm(offer, data, images=available_images(host), flavors=list(Flavor.objects.all()),
                               initial=initial)
    allowed = quotas.allowed(request.user)
    shared = list(allowed.pools.filter(host=host).values_list("name", flat=True))
    nets = list(allowed.networks.filter(host=host).values_list("kind", "name"))
    mine = offer.only(pools=shared, iso_pools=(), networks=[n for k, n in nets if k == SharedKind.NETWORK],
                      bridges=[n for k, n in nets if k == SharedKind.BRIDGE])
    return ImageCreateForm(mine, data, images=list(allowed.images.filter(host=host)),
                           flavors=list(allowed.flavors), custom_sizes=allowed.custom_sizes, initial=initial)


def run_create_image(request: HttpRequest, host: Host, form: ImageCreateForm, op: Operation, *,
                     quiet: bool = False) -> Job | None:
    """Start the creation a valid form describes (the user's own VM for CREATE_OWN: the quota is reserved
    first). None when it did not start: why is on the form (a seed's or the quota's refusal; `quiet`: a job
    queue's refusal is raised for the API)."""
    vm_uuid, mac = str(uuid.uuid4()), random_mac(())
    pool = form.offer.pool(form.cleaned_data["disk_pool"])
    disk = disk_volume_name(set(pool.volumes if pool else ()), form.cleaned_data["name"])
    spec = form.to_spec(vm_uuid=vm_uuid, disk_volume=disk, mac=mac)
    try:
        seed = cloudinit.build_seed(form.seed_spec(mac), vm_uuid)
    except FieldProblem as exc:
        form.add_error(exc.field if exc.field in form.fields else None, said(exc))
        return None
    owned = None
    if op == ops.CREATE_OWN:
        try:
            owned = quotas.reserve(request.user, host, spec.name, spec.vcpus, spec.memory_mib, spec.disk_bytes)
        except quotas.QuotaExceeded as exc:
            refused(request, op, host=host, name=spec.name, reason=str(exc))
            form.add_error(None, said(exc))
            return None
    return image_jobs.start_create(request, op, host, spec, seed, owned=owned, form=form, quiet=quiet)


def _page(request: HttpRequest, host: Host | None, op: Operation, *, hosts: list[Host]) -> HttpResponse:
    context: dict[str, Any] = {"host": host, "hosts": hosts, "own": op == ops.CREATE_OWN}
    if host is None:
        return render(request, "instances/create_image.html", context)
    try:
        offer = offer_of(host)
    except VirtError as exc:
        context["error"] = _("{host} could not be asked what it offers: {error}").format(
            host=host.name, error=told(request.user, exc))
        return render(request, "instances/create_image.html", context, status=503)
    posted = request.method == "POST"
    form = image_form(request, host, offer, request.POST if posted else None, own=op == ops.CREATE_OWN)
    context["form"] = form
    if op == ops.CREATE_OWN:
        context["left"] = said(quotas.left(request.user))
    if not posted or not form.is_valid():
        return render(request, "instances/create_image.html", context)
    job = run_create_image(request, host, form, op)
    if job is None:
        return render(request, "instances/create_image.html", context)
    return redirect(job)


@require_http_methods(["GET", "POST"])
@route(ops.CREATE_FROM_IMAGE)
def create_image(request: HttpRequest, host: str) -> HttpResponse:
    target = host_or_404(host)
    return _page(request, target, ops.CREATE_FROM_IMAGE, hosts=list(Host.objects.order_by("name")))


@require_http_methods(["GET", "POST"])
@route(ops.CREATE_OWN)
def create_own(request: HttpRequest) -> HttpResponse:
    """A user's own VM within their quota, on one of the hosts it allows (?host=NAME; the first by default).
    Without a quota the page says so (and makes nothing); a host the quota does not list is not offered."""
    if quotas.limits_for(request.user) is None:
        return render(request, "instances/create_image.html", {
            "own": True, "no_quota": True, "admin": is_admin(request.user)})
    hosts = list(quotas.allowed(request.user).hosts.order_by("name"))
    asked = request.GET.get("host", "")
    host = next((h for h in hosts if h.name == asked), hosts[0] if hosts else None)
    return _page(request, host, ops.CREATE_OWN, hosts=hosts)
