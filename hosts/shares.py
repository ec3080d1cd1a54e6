"""What an admin opens of a host to users who are not admins: networks and bridges for their NICs, pools for
their new volumes, ISO libraries for their CD-ROMs (webkvm.models.SharedResource; the rules that use them
are in webkvm/sharing.py). Only names the host really has can be opened."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from hosts import operations as ops
from hosts import services
from hosts.models import Host
from virt.capabilities import HostOffer, host_offer
from virt.errors import VirtError
from webkvm.models import SharedKind, SharedResource
from webkvm.operations import perform, route
from webkvm.views_base import host_unavailable

TEMPLATE = "hosts/share.html"


class ShareForm(forms.Form):
    kind = forms.ChoiceField(label="Open", choices=SharedKind.choices, initial=SharedKind.NETWORK)
    name = forms.CharField(label="Named", max_length=255)  # as the host names it

    def __init__(self, host: Host, offer: HostOffer | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host, self.offer = host, offer

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        kind, name = data.get("kind"), data.get("name")
        if not kind or not name or self.offer is None:
            return data
        pools = [p.name for p in self.offer.pools]
        has = {SharedKind.NETWORK: self.offer.networks, SharedKind.BRIDGE: self.offer.bridges,
               SharedKind.POOL: pools, SharedKind.ISO_LIBRARY: pools}[SharedKind(kind)]
        label = SharedKind(kind).label
        if name not in has:
            self.add_error("name", f"{self.host.name} has no {label} named {name}.")
        elif SharedResource.objects.filter(host=self.host, kind=kind, name=name).exists():
            self.add_error("name", f"{name} is already open to users as {label}.")
        return data


def listed(host: Host) -> list[SharedResource]:
    return list(SharedResource.objects.filter(host=host))


def _page(request: HttpRequest, host: Host, form: ShareForm) -> HttpResponse:
    return render(request, TEMPLATE, {"host": host, "form": form, "shared": listed(host)})


@require_http_methods(["GET", "POST"])
@route(ops.SHARE)
def share(request: HttpRequest, name: str) -> HttpResponse:
    host = get_object_or_404(Host, name=name)
    if request.method != "POST":
        return _page(request, host, ShareForm(host))
    try:
        offer = services.call(host, host_offer)
    except VirtError as exc:
        context = {"host": host, "form": ShareForm(host, None, request.POST), "shared": listed(host)}
        return host_unavailable(request, ops.SHARE, TEMPLATE, context, host.name, exc)
    form = ShareForm(host, offer, request.POST)
    if not form.is_valid():
        return _page(request, host, form)
    kind, thing = SharedKind(form.cleaned_data["kind"]), form.cleaned_data["name"]
    outcome = perform(request, ops.SHARE, host=host, name=f"{kind.value} {thing}",
                      work=lambda: SharedResource.objects.create(host=host, kind=kind, name=thing),
                      done=f"{thing} is open to users of {host.name} as {kind.label}.")
    return redirect("hosts:detail", name=host.name) if outcome.ok else _page(request, host, form)


@require_POST
@route(ops.UNSHARE)
def unshare(request: HttpRequest, name: str, pk: int) -> HttpResponse:
    host = get_object_or_404(Host, name=name)
    opened = get_object_or_404(SharedResource, pk=pk, host=host)
    kind = SharedKind(opened.kind)
    perform(request, ops.UNSHARE, host=host, name=f"{kind.value} {opened.name}", work=opened.delete,
            done=f"{opened.name} ({kind.label}) is closed to users of {host.name}; what they attached stays.")
    return redirect("hosts:detail", name=host.name)
