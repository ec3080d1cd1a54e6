"""A VM's network interfaces: add (virtual network or host bridge, model, MAC generated or given),
remove, change source, link up/down. Networks and bridges come from the VM's host."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from instances import operations as ops
from instances.lookup import VMRef
from instances.views.config_common import (
    VMDevices,
    as_said,
    asked,
    devices_page,
    offer_or_message,
    row_form_valid,
    set_choices,
)
from virt import nics
from virt.capabilities import HostOffer
from virt.create import NIC_MODELS
from webkvm.i18n import said
from webkvm.operations import Outcome, on_vm, page, vm_route
from webkvm.permissions import is_admin

MAC_MAX = 32


def _sources(offer: HostOffer) -> list[tuple[str, str]]:
    return [*((f"network:{n}", _("network {name}").format(name=n)) for n in offer.networks),
            *((f"bridge:{b}", _("host bridge {name}").format(name=b)) for b in offer.bridges)]


class SourceField(forms.ChoiceField):
    """'network:NAME' or 'bridge:NAME', one of what the host offers; cleaned to (kind, name)."""

    def clean(self, value: Any) -> tuple[str, str]:
        kind, _, name = str(super().clean(value)).partition(":")
        return kind, name


class AddNicForm(forms.Form):
    source = SourceField(label=gettext_lazy("Network or bridge"))
    # The models' names are libvirt's (data): translate="no" keeps browsers' translators (and the page check) off them.
    model = forms.ChoiceField(label=gettext_lazy("Model"), choices=[(m, m) for m in NIC_MODELS], initial="virtio",
                              widget=forms.Select(attrs={"translate": "no"}))
    mac = forms.CharField(label=gettext_lazy("MAC address"), required=False, max_length=MAC_MAX,
                          help_text=gettext_lazy("Empty: a new 52:54:00:… address, unique on this host."))

    def __init__(self, offer: HostOffer, admin: bool, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(self, "source", _sources(offer))
        if not admin:
            del self.fields["mac"]  # users get a generated MAC: a typed one could pose as another machine

    def clean_mac(self) -> str:
        raw: str = self.cleaned_data.get("mac", "").strip()
        if not raw:
            return ""
        try:
            return nics.normalise_mac(raw)
        except ValueError as exc:
            raise forms.ValidationError(said(exc)) from None

    def spec(self) -> nics.NewNIC:
        kind, name = self.cleaned_data["source"]
        return nics.NewNIC(kind, name, self.cleaned_data["model"], self.cleaned_data.get("mac", ""))


class ChangeSourceForm(forms.Form):
    source = SourceField(label=gettext_lazy("Move to"))

    def __init__(self, offer: HostOffer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(self, "source", _sources(offer))


def _mac(request: HttpRequest) -> str:
    return request.POST.get("mac", "").strip()[:MAC_MAX]


def _back(ref: VMRef) -> HttpResponse:
    return redirect("instances:nics", ref.host.name, ref.uuid)


def _page(request: HttpRequest, ref: VMRef, *, add: AddNicForm | None = None) -> HttpResponse:
    def fill(vm: VMDevices, offer: HostOffer) -> dict[str, Any]:
        return {"vm": vm, "nics": nics.nic_rows(vm.defs), "add": add or AddNicForm(offer, is_admin(request.user)),
                "sources": _sources(offer), "has_sources": bool(offer.networks or offer.bridges),
                "admin": is_admin(request.user)}

    return devices_page(request, ref, "instances/config/nics.html", fill)


@require_GET
@vm_route(page(ops.CHANGE))
def nic_page(request: HttpRequest, ref: VMRef) -> HttpResponse:
    return _page(request, ref)


@require_POST
@vm_route(ops.NIC_ADD)
def nic_add(request: HttpRequest, ref: VMRef) -> HttpResponse:
    offer = offer_or_message(request, ref)
    if offer is None:
        return _back(ref)
    form = AddNicForm(offer, is_admin(request.user), request.POST)
    if not form.is_valid():
        return _page(request, ref, add=form)
    outcome = add(request, ref, form)
    return _back(ref) if outcome.ok else _page(request, ref, add=form)


def add(request: HttpRequest, ref: VMRef, form: AddNicForm, *, quiet: bool = False) -> Outcome[str]:
    """Add the NIC a valid form asks for (the page's and the API's one way)."""
    spec = form.spec()
    what = f"add {spec.model} NIC on {spec.kind} {spec.source}, MAC {spec.mac or 'generated'}"
    return on_vm(request, ops.NIC_ADD, ref, lambda dom: nics.add_nic(dom, spec), done=as_said, detail=asked(what),
                 form=form, quiet=quiet)


def remove(request: HttpRequest, ref: VMRef, mac: str, *, quiet: bool = False) -> Outcome[str]:
    return on_vm(request, ops.NIC_REMOVE, ref, lambda dom: nics.remove_nic(dom, mac), done=as_said,
                 detail=asked(f"remove NIC {mac}"), quiet=quiet)


def move(request: HttpRequest, ref: VMRef, mac: str, form: ChangeSourceForm, *, quiet: bool = False) -> Outcome[str]:
    """Move the NIC `mac` to the network or bridge a valid form names."""
    kind, name = form.cleaned_data["source"]
    return on_vm(request, ops.NIC_SOURCE, ref, lambda dom: nics.change_source(dom, mac, kind, name), done=as_said,
                 detail=asked(f"move NIC {mac} to {kind} {name}"), quiet=quiet)


def link(request: HttpRequest, ref: VMRef, mac: str, up: bool, *, quiet: bool = False) -> Outcome[str]:
    return on_vm(request, ops.NIC_LINK, ref, lambda dom: nics.set_link_state(dom, mac, up), done=as_said,
                 detail=asked(f"link of NIC {mac} {'up' if up else 'down'}"), quiet=quiet)


@require_POST
@vm_route(ops.NIC_REMOVE)
def nic_remove(request: HttpRequest, ref: VMRef) -> HttpResponse:
    remove(request, ref, _mac(request))
    return _back(ref)


@require_POST
@vm_route(ops.NIC_SOURCE)
def nic_source(request: HttpRequest, ref: VMRef) -> HttpResponse:
    offer = offer_or_message(request, ref)
    if offer is None:
        return _back(ref)
    mac, form = _mac(request), ChangeSourceForm(offer, request.POST)
    if not row_form_valid(request, form, "source", _("Network or bridge")):
        return _back(ref)
    move(request, ref, mac, form)
    return _back(ref)


@require_POST
@vm_route(ops.NIC_LINK)
def nic_link(request: HttpRequest, ref: VMRef) -> HttpResponse:
    mac, state = _mac(request), request.POST.get("state", "")
    if state not in ("up", "down"):
        messages.error(request, _("Link state: up or down."))
        return _back(ref)
    link(request, ref, mac, state == "up")
    return _back(ref)
