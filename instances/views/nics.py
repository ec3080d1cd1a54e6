"""A VM's network interfaces: add (virtual network or host bridge, model, MAC generated or given),
remove, change source, link up/down. Networks and bridges come from the VM's host. The changes' routes are
generated from their declarations (webkvm/operation_views.py); the page and the API share their work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from instances import operations as ops
from instances.lookup import VMRef
from instances.views.config_common import (
    VMDevices,
    as_said,
    asked,
    devices_page,
    row_form_valid,
    set_choices,
)
from instances.views.disks import offer_unreadable, read_offer
from virt import nics
from virt.capabilities import HostOffer
from virt.create import NIC_MODELS
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Operation, Outcome, View, on_vm, page, vm_route
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


# --- the POST routes of the page, generated from the declarations (webkvm/operation_views.py) ------
# Their forms are on the NICs page: a GET goes there; a failed form shows that page again with its errors.


def _page_url(call: Call, _result: Any = None) -> str:
    return reverse("instances:nics", args=[call.ref.host.name, call.ref.uuid])


def _row_again(call: Call) -> HttpResponse:
    """A NIC's row form: its errors come back as messages, on the page (a failed move said so in one)."""
    assert call.form is not None
    row_form_valid(call.request, cast(forms.Form, call.form), "source", _("Network or bridge"))
    return redirect(_page_url(call))


def _link(call: Call) -> Outcome[str] | None:
    state = call.request.POST.get("state", "")
    if state not in ("up", "down"):
        messages.error(call.request, _("Link state: up or down."))
        return None
    return link(call.request, call.ref, _mac(call.request), state == "up")


def _offering(op: Operation, *, form: Callable[[Call, QueryDict | None], forms.BaseForm],
              again: Callable[[Call], HttpResponse], run: Callable[[Call], Any]) -> View:
    return operation_view(OperationPage(
        op, template="instances/config/nics.html", elsewhere=_page_url, find=read_offer,
        unreadable=offer_unreadable(_page_url),
        form=form, again=again, run=run, then=_page_url))


nic_add = _offering(
    ops.NIC_ADD, form=lambda call, data: AddNicForm(call.context["offer"], is_admin(call.request.user), data),
    again=lambda call: _page(call.request, call.ref, add=cast(AddNicForm, call.form)),
    run=lambda call: add(call.request, call.ref, cast(AddNicForm, call.form)))
nic_source = _offering(
    ops.NIC_SOURCE, form=lambda call, data: ChangeSourceForm(call.context["offer"], data), again=_row_again,
    run=lambda call: move(call.request, call.ref, _mac(call.request), cast(ChangeSourceForm, call.form)))
nic_remove = operation_view(OperationPage(
    ops.NIC_REMOVE, elsewhere=_page_url, then=_page_url,
    run=lambda call: remove(call.request, call.ref, _mac(call.request))))
nic_link = operation_view(OperationPage(ops.NIC_LINK, elsewhere=_page_url, then=_page_url, run=_link))
