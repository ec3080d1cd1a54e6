"""What an admin opens of a host to users who are not admins: networks and bridges for their NICs, pools for
their new volumes, ISO libraries for their CD-ROMs (webkvm.models.SharedResource; the rules that use them
are in webkvm/sharing.py). Only names the host really has can be opened. Opening and closing run functions
the API shares (api/hosts.py); their pages are generated from the declarations (webkvm/operation_views.py)."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts import operations as ops
from hosts import services
from hosts.models import Host
from virt.capabilities import HostOffer, host_offer
from webkvm.models import SharedKind, SharedResource
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Outcome, perform

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


# --- the pages, generated from the declarations (webkvm/operation_views.py) ------------------------


def _detail(call: Call, _outcome: Any = None) -> str:
    return reverse("hosts:detail", kwargs={"name": call.target.name})


def _offer(call: Call) -> None:
    """What is open already; on a POST, what the host has (the form takes only names it has)."""
    call.context["shared"] = listed(call.target)
    if call.posted:
        call.context["form"] = ShareForm(call.target, None, call.request.POST)  # the page when it cannot be asked
        call.context["offer"] = services.call(call.target, host_offer)


share = operation_view(OperationPage(
    ops.SHARE, host="name", template=TEMPLATE, find=_offer, audit_unreadable=lambda call: call.target.name,
    form=lambda call, data: ShareForm(call.target, call.context.get("offer"), data),
    run=lambda call: open_to_users(call.request, call.target, cast(ShareForm, call.form)), then=_detail))

# POST only: a button on the host's page.
unshare = operation_view(OperationPage(
    ops.UNSHARE, host="name", then=_detail,
    run=lambda call: close_to_users(call.request, call.target,
                                    get_object_or_404(SharedResource, pk=call.args["pk"], host=call.target))))
