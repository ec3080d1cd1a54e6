"""What the VM configuration pages (disks, NICs, snapshots, resize, boot, VNC) share.

One change = the VM's lock for the whole libvirt work, and exactly one audit record whatever
the outcome; libvirt's refusal is shown in words. Input that only the host can judge (a MAC in
use, a taken volume name) comes back as a field error of the form and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import libvirt
from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hosts import services
from instances.lookup import VMRef
from virt.capabilities import HostOffer, host_offer
from virt.devices import Definitions, FieldProblem, definitions
from virt.domains import state_name
from virt.errors import VirtError
from webkvm import audit
from webkvm.models import AuditResult

T = TypeVar("T")

# A live detach waits up to 5 s for the guest; making a large raw volume takes longer still.
CHANGE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Outcome(Generic[T]):
    name: str  # the VM's name (its uuid when libvirt could not be asked)
    value: T | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def _audited(request: HttpRequest, ref: VMRef, action: str, fn: Callable[[libvirt.virDomain], T],
             timeout: float | None, done: Callable[[T], str], failed: Callable[[VirtError], str]) -> Outcome[T]:
    """fn(domain) under the VM's lock, then one audit record `action`: done(result) or failed(error).

    A FieldProblem passes through unaudited: nothing was changed."""

    def run(dom: libvirt.virDomain) -> tuple[str, T]:
        name = str(dom.name())
        return name, fn(dom)

    try:
        name, value = ref.call_locked(run, timeout)
    except FieldProblem:
        raise
    except VirtError as exc:
        audit.record(request, action, object_type="vm", object_name=ref.uuid, host_name=ref.host.name,
                     result=AuditResult.FAILED, detail=failed(exc))
        return Outcome(ref.uuid, error=str(exc))
    audit.record(request, action, object_type="vm", object_name=name, host_name=ref.host.name, detail=done(value))
    return Outcome(name, value)


def locked_change(request: HttpRequest, ref: VMRef, action: str, fn: Callable[[libvirt.virDomain], T],
                  describe: Callable[[T], str], timeout: float | None = None) -> Outcome[T]:
    """fn(domain) under the VM's lock; audit `vm.<action>` with describe(result) or the failure."""
    return _audited(request, ref, f"vm.{action}", fn, timeout, done=lambda value: f"uuid {ref.uuid}; {describe(value)}",
                    failed=lambda exc: f"uuid {ref.uuid}: {exc}")


def say(request: HttpRequest, outcome: Outcome[T], failed: str, done: Callable[[T], str]) -> T | None:
    """The outcome as one message: `failed: <libvirt's words>`, or `<VM name>: done(result)`.
    Returns the result when the change worked."""
    if not outcome.ok:
        messages.error(request, f"{failed}: {outcome.error}")
        return None
    value = cast(T, outcome.value)
    messages.success(request, f"{outcome.name}: {done(value)}")
    return value


def words(parts: list[str]) -> str:
    return ", ".join(parts)


def where_applied(live: list[str], next_boot: list[str]) -> str:
    """The audit detail's tail: what a running VM took at once and what waits for its next boot."""
    return (f"; live: {words(live)}" if live else "") + (f"; at next boot: {words(next_boot)}" if next_boot else "")


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


def load(ref: VMRef) -> tuple[VMDevices, HostOffer]:
    """The VM's two definitions and what its host offers (pools, ISOs, networks, bridges)."""
    return ref.call(_load), services.call(ref.host, host_offer)


def devices_page(request: HttpRequest, ref: VMRef, template: str,
                 fill: Callable[[VMDevices, HostOffer], dict[str, Any]]) -> HttpResponse:
    """A VM's device page with fill(vm, offer) in its context; when libvirt cannot be asked, the page
    says why (503)."""
    context: dict[str, Any] = {"ref": ref}
    try:
        vm, offer = load(ref)
    except VirtError as exc:
        context["error"] = str(exc)
        return render(request, template, context, status=503)
    context.update(fill(vm, offer))
    return render(request, template, context)


def row_form_valid(request: HttpRequest, form: forms.Form, field: str, label: str) -> bool:
    """A small form of one table row (a drive, a NIC): its errors on `field` come back as messages."""
    if form.is_valid():
        return True
    for error in form.errors.get(field, []):
        messages.error(request, f"{label}: {error}")
    return False


def offer_or_message(request: HttpRequest, ref: VMRef) -> HostOffer | None:
    try:
        offer: HostOffer = services.call(ref.host, host_offer)
    except VirtError as exc:
        messages.error(request, f"{ref.host.name} could not be asked what it offers: {exc}")
        return None
    return offer


def set_choices(form: forms.Form, name: str, choices: list[tuple[str, str]]) -> None:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    field.choices = choices


def perform(request: HttpRequest, ref: VMRef, action: str, fn: Callable[[libvirt.virDomain], str], *,
            detail: str, form: forms.Form | None = None) -> bool:
    """Run fn(domain) -> message under the VM's lock; audit and report it. True when it worked.

    A FieldProblem becomes an error of `form` (nothing was changed, so nothing is audited);
    any other failure is audited and shown: on the form when there is one, else as a message."""
    try:
        outcome = _audited(request, ref, action, fn, CHANGE_TIMEOUT, done=lambda said: f"{ref.uuid}: {detail}: {said}",
                           failed=lambda exc: f"{ref.uuid}: {detail}: {exc}")
    except FieldProblem as exc:
        if form is not None:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.error(request, str(exc))
        return False
    if not outcome.ok:
        if form is not None:
            form.add_error(None, f"Not done: {outcome.error}")
        else:
            messages.error(request, f"Not done: {outcome.error}")
        return False
    messages.success(request, str(outcome.value))
    return True
