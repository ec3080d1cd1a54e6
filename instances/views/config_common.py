"""What the VM configuration pages (disks, NICs, resize, boot, VNC) share: reading a VM's devices with
its host's choices, small row forms, and the words of what a change did.

Changes themselves run through the declared operations (instances/operations.py) with
webkvm.operations.on_vm: the VM's lock, one audit record, one message or form error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt
from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from hosts import services
from instances.lookup import VMRef
from virt.capabilities import HostOffer, host_offer
from virt.devices import Definitions, definitions
from virt.domains import state_name
from virt.errors import Said, VirtError
from webkvm.i18n import said as say
from webkvm.operations import told
from webkvm.sharing import offer_for


def _english(parts: list[str]) -> str:
    return ", ".join(str(part) for part in parts)


def shown(text: str | Said | Promise) -> str:
    """Words of ours in the user's language: a message of the virt layer (said), or an English msgid
    (a label, a confirmation) marked where it is written."""
    if isinstance(text, Said):
        return say(text)
    return _(str(text)) if text else ""


def words(parts: list[str]) -> str:
    """What a change reached ("password", "keymap"...: the virt layer's words), in the user's language."""
    return pgettext("list separator", ", ").join(shown(part) for part in parts)


# The full-width stop, exclamation and question marks, colon and semicolon.
_FULL_WIDTH_STOPS = ("\u3002", "\uff01", "\uff1f", "\uff1a", "\uff1b")


def sentences(parts: list[str]) -> str:
    """Sentences one after another: a space between them, none after a full-width stop (Chinese)."""
    text = ""
    for part in parts:
        text += (" " if text and not text.endswith(_FULL_WIDTH_STOPS) else "") + part
    return text


def as_said(said: str | Said) -> str:
    """The message of a device change: the virt layer's own words for what it did, in the user's language."""
    return say(said)


def asked(what: str) -> Callable[[str | Said], str]:
    """The audit detail of a device change: what was asked, then what the virt layer said it did (English)."""
    return lambda said: f"{what}: {said}"


def where_applied(live: list[str], next_boot: list[str]) -> str:
    """The audit detail's tail: what a running VM took at once and what waits for its next boot (English)."""
    return ((f"; live: {_english(live)}" if live else "")
            + (f"; at next boot: {_english(next_boot)}" if next_boot else ""))


# ---- disks and NICs: the VM's devices with the host's choices -------------------------------------


@dataclass(frozen=True)
class VMDevices:
    defs: Definitions
    state: str

    @property
    def name(self) -> str:
        return self.defs.name

    @property
    def running(self) -> bool:
        return self.defs.running


def _load(dom: libvirt.virDomain) -> VMDevices:
    return VMDevices(definitions(dom), state_name(int(dom.state()[0])))


def offer(request: HttpRequest, ref: VMRef) -> HostOffer:
    """What the VM's host offers the requesting user (pools, ISOs, networks, bridges): for users who are not
    admins only what an admin opened to them (webkvm/sharing.py)."""
    return offer_for(request.user, ref.host, services.call(ref.host, host_offer))


def load(request: HttpRequest, ref: VMRef) -> tuple[VMDevices, HostOffer]:
    """The VM's two definitions and what its host offers the requesting user."""
    return ref.call(_load), offer(request, ref)


def devices_page(request: HttpRequest, ref: VMRef, template: str,
                 fill: Callable[[VMDevices, HostOffer], dict[str, Any]]) -> HttpResponse:
    """A VM's device page with fill(vm, offer) in its context; when libvirt cannot be asked, the page
    says why (503)."""
    context: dict[str, Any] = {"ref": ref}
    try:
        vm, offered = load(request, ref)
    except VirtError as exc:
        context["error"] = told(request.user, exc)
        return render(request, template, context, status=503)
    context.update(fill(vm, offered))
    return render(request, template, context)


def row_form_valid(request: HttpRequest, form: forms.Form, field: str, label: str) -> bool:
    """A small form of one table row (a drive, a NIC): its errors on `field` come back as messages."""
    if form.is_valid():
        return True
    for error in form.errors.get(field, []):
        messages.error(request, _("{field}: {error}").format(field=label, error=error))
    return False


def set_choices(form: forms.Form, name: str, choices: list[tuple[str, str]]) -> None:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    field.choices = choices

