"""Resize a VM: vCPUs and memory, current and maximum, live where possible and saved always."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from instances import operations as ops
from instances import quotas
from instances.lookup import VMRef
from instances.views.config_common import sentences, shown, where_applied, words
from virt.create import MIN_MEMORY_MIB
from virt.resize import ResizeReport, ResizeState, Sizing, read_state
from virt.resize import resize as resize_vm
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Outcome, on_vm
from webkvm.permissions import is_admin


def _mib(kib: int) -> int:
    return -(-kib // 1024)


class ResizeForm(forms.Form):
    vcpus = forms.IntegerField(label=gettext_lazy("vCPUs"), min_value=1)
    max_vcpus = forms.IntegerField(label=gettext_lazy("Maximum vCPUs"), min_value=1)
    memory_mib = forms.IntegerField(label=gettext_lazy("Memory (MiB)"), min_value=MIN_MEMORY_MIB)
    max_memory_mib = forms.IntegerField(label=gettext_lazy("Maximum memory (MiB)"), min_value=MIN_MEMORY_MIB)

    def __init__(self, state: ResizeState, *args: Any, **kwargs: Any) -> None:
        config = state.config
        kwargs.setdefault("initial", {
            "vcpus": config.vcpus, "max_vcpus": config.max_vcpus,
            "memory_mib": _mib(config.memory_kib), "max_memory_mib": _mib(config.max_memory_kib),
        })
        super().__init__(*args, **kwargs)
        self.state = state
        # The host's limits become the fields' own bounds.
        for name in ("vcpus", "max_vcpus"):
            self.fields[name] = forms.IntegerField(label=self.fields[name].label, min_value=1,
                                                   max_value=state.host_max_vcpus)
        for name in ("memory_mib", "max_memory_mib"):
            self.fields[name] = forms.IntegerField(label=self.fields[name].label, min_value=MIN_MEMORY_MIB,
                                                   max_value=state.host_memory_mib)
        self.fields["max_vcpus"].help_text = _("This host allows {count}.").format(count=state.host_max_vcpus)
        self.fields["max_memory_mib"].help_text = _("This host has {size} MiB.").format(size=state.host_memory_mib)

    def _kib(self, field: str, current_kib: int) -> int:
        mib: int = self.cleaned_data[field]
        # An untouched field keeps its exact value (a definition in KiB need not be whole MiB).
        return current_kib if mib == _mib(current_kib) else mib * 1024

    def sizing(self) -> Sizing:
        config = self.state.config
        return Sizing(vcpus=self.cleaned_data["vcpus"], max_vcpus=self.cleaned_data["max_vcpus"],
                      memory_kib=self._kib("memory_mib", config.memory_kib),
                      max_memory_kib=self._kib("max_memory_mib", config.max_memory_kib))

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if not self.errors:
            for field, problem in self.sizing().problems(self.state.host_max_vcpus,
                                                          self.state.host_memory_mib).items():
                self.add_error(field, shown(problem))
        return data


def _describe(old: Sizing, new: Sizing, report: ResizeReport) -> str:
    text = (f"vCPUs {old.vcpus}/{old.max_vcpus} -> {new.vcpus}/{new.max_vcpus}; memory "
            f"{_mib(old.memory_kib)}/{_mib(old.max_memory_kib)} MiB -> {_mib(new.memory_kib)}/"
            f"{_mib(new.max_memory_kib)} MiB")
    said = f"; the host said: {'; '.join(report.host_said)}" if report.host_said else ""
    return text + where_applied(report.live, report.next_boot) + said


def summary(report: ResizeReport, admin: bool) -> str:
    if not report.running:
        return _("saved; the new sizes apply when the VM starts.")
    parts = [_("saved.")]
    if report.live:
        parts.append(_("Applied now: {what}.").format(what=words(report.live)))
    if report.next_boot:
        parts.append(_("Waits for the next boot: {what}.").format(what=words(report.next_boot)))
    if admin and report.host_said:  # libvirt's own words: admins only (webkvm.operations.told)
        parts.append(_("The host said: {words}.").format(words="; ".join(shown(s) for s in report.host_said)))
    return sentences(parts)


def _state(call: Call) -> None:
    state = call.ref.call(read_state)
    call.context.update(state=state, pending=words(state.pending))


def _back(call: Call, _outcome: Any = None) -> str:
    return reverse("instances:resize", args=[call.ref.host.name, call.ref.uuid])


resize = operation_view(OperationPage(
    ops.RESIZE, template="instances/config/resize.html", find=_state, then=_back,
    form=lambda call, data: ResizeForm(call.context["state"], data),
    run=lambda call: apply(call.request, call.ref, cast(ResizeForm, call.form))))


def apply(request: HttpRequest, ref: VMRef, form: ResizeForm, *, quiet: bool = False) -> Outcome[ResizeReport]:
    """Resize to what a valid form asks for (the page's and the API's one way)."""
    wanted, current = form.sizing(), form.state.config
    admin = is_admin(request.user)
    try:  # a VM made through self-service grows only within its owner's quota (its maxima count)
        undo = quotas.grow(request.user, ref.host, ref.uuid, vcpus=wanted.max_vcpus,
                           memory_mib=-(-wanted.max_memory_kib // 1024))
    except quotas.QuotaExceeded as exc:
        form.add_error(None, said(exc))
        return Outcome(ref.uuid, error=str(exc), field_problem=True, exception=exc)
    outcome = on_vm(request, ops.RESIZE, ref, lambda dom: resize_vm(dom, wanted),
                    done=lambda report: summary(report, admin),
                    detail=lambda report: _describe(current, wanted, report), form=form, quiet=quiet)
    if not outcome.ok:
        undo()
    return outcome
