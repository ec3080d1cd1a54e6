"""What an admin opens of a host to users who are not admins: networks and bridges for their NICs, pools for
their new volumes, ISO libraries for their CD-ROMs (webkvm.models.SharedResource; the rules that use them
are in webkvm/sharing.py). Only names the host really has can be opened."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from hosts import operations as ops
from hosts import services
from hosts.models import Host
from virt.capabilities import HostOffer, host_offer
from virt.errors import VirtError
from webkvm.models import SharedKind, SharedResource
from webkvm.operations import Outcome, perform, route
from webkvm.views_base import host_unavailable

TEMPLATE = "hosts/share.html"


class ShareForm(forms.Form):
    kind = forms.ChoiceField(label=gettext_lazy("Open"), choices=SharedKind.choices, initial=SharedKind.NETWORK)
    name = forms.CharField(label=gettext_lazy("Named"), max_length=255)  # as the host names it

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
            self.add_error("name", _("%(host)s has no %(kind)s named %(name)s.")
                           % {"host": self.host.name, "kind": label, "name": name})
        elif SharedResource.objects.filter(host=self.host, kind=kind, name=name).exists():
            self.add_error("name", _("%(name)s is already open to users as %(kind)s.") % {"name": name, "kind": label})
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
    outcome = open_to_users(request, host, form)
    return redirect("hosts:detail", name=host.name) if outcome.ok else _page(request, host, form)


def open_to_users(request: HttpRequest, host: Host, form: ShareForm, *,
                  quiet: bool = False) -> Outcome[SharedResource]:
    """host.share of a valid form (page and API)."""
    kind, thing = SharedKind(form.cleaned_data["kind"]), form.cleaned_data["name"]
    return perform(request, ops.SHARE, host=host, name=f"{kind.value} {thing}",
                   work=lambda: SharedResource.objects.create(host=host, kind=kind, name=thing),
                   done=lambda opened: opened_words(host, opened),
                   detail=lambda opened: (f"{opened.name} is open to users of {host.name} as "
                                          f"{SharedKind(opened.kind).label}."),
                   quiet=quiet)


def opened_words(host: Host, opened: SharedResource) -> str:
    return _("%(name)s is open to users of %(host)s as %(kind)s.") % {
        "name": opened.name, "host": host.name, "kind": SharedKind(opened.kind).label}


def close_to_users(request: HttpRequest, host: Host, opened: SharedResource, *, quiet: bool = False) -> Outcome[Any]:
    """host.unshare (page and API): what users already attached stays."""
    kind = SharedKind(opened.kind)
    return perform(request, ops.UNSHARE, host=host, name=f"{kind.value} {opened.name}", work=opened.delete,
                   done=closed_words(host, opened),
                   detail=(f"{opened.name} ({kind.label}) is closed to users of {host.name}; "
                           "what they attached stays."), quiet=quiet)


def closed_words(host: Host, opened: SharedResource) -> str:
    return _("%(name)s (%(kind)s) is closed to users of %(host)s; what they attached stays.") % {
        "name": opened.name, "kind": SharedKind(opened.kind).label, "host": host.name}


@require_POST
@route(ops.UNSHARE)
def unshare(request: HttpRequest, name: str, pk: int) -> HttpResponse:
    host = get_object_or_404(Host, name=name)
    close_to_users(request, host, get_object_or_404(SharedResource, pk=pk, host=host))
    return redirect("hosts:detail", name=host.name)
