"""Boot order, boot menu and autostart of a VM."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from instances import operations as ops
from instances.lookup import VMRef
from instances.views.config_common import sentences
from virt.boot import BootReport, BootSettings, read_settings, update
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Outcome, on_vm


class BootForm(forms.Form):
    """One order field per bootable device (empty: never boot from it), plus menu and autostart."""

    bootmenu = forms.BooleanField(label=gettext_lazy("Show the boot menu (press Esc or F12 at start)"), required=False)
    autostart = forms.BooleanField(label=gettext_lazy("Start the VM when the host starts"), required=False)

    def __init__(self, settings: BootSettings, *args: Any, **kwargs: Any) -> None:
        initial: dict[str, bool | int | None] = {"bootmenu": settings.bootmenu, "autostart": settings.autostart}
        initial.update({f"order_{d.key}": d.order for d in settings.devices})
        kwargs.setdefault("initial", initial)
        super().__init__(*args, **kwargs)
        self.settings = settings
        count = max(1, len(settings.devices))
        for device in settings.devices:
            self.fields[f"order_{device.key}"] = forms.IntegerField(
                label=said(device.label), required=False, min_value=1, max_value=count)

    def device_fields(self) -> list[forms.BoundField]:
        return [self[f"order_{d.key}"] for d in self.settings.devices]

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        chosen = {d.key: data.get(f"order_{d.key}") for d in self.settings.devices}
        numbers = [n for n in chosen.values() if n is not None]
        if not self.errors:
            if not numbers:
                self.add_error(None, _("Choose at least one device to boot from."))
            elif len(set(numbers)) != len(numbers):
                for key, number in chosen.items():
                    if number is not None and numbers.count(number) > 1:
                        self.add_error(f"order_{key}", _("Each place in the order can be used once."))
        return data

    def order(self) -> list[str]:
        chosen = [(self.cleaned_data[f"order_{d.key}"], d.key) for d in self.settings.devices
                  if self.cleaned_data.get(f"order_{d.key}") is not None]
        return [key for _number, key in sorted(chosen)]


def summary(report: BootReport) -> str:
    if not report.changed_definition and not report.autostart_changed:
        return _("nothing changed.")
    parts = []
    if report.changed_definition:
        parts.append(_("boot order and menu saved; they apply at the next boot.") if report.running
                     else _("boot order and menu saved."))
    if report.autostart_changed:
        parts.append(_("Autostart changed."))
    return sentences(parts)


def _settings(call: Call) -> None:
    name, settings = call.ref.call(lambda dom: (str(dom.name()), read_settings(dom)))
    call.context.update(name=name, settings=settings)


boot_settings = operation_view(OperationPage(
    ops.BOOT, template="instances/config/boot.html", find=_settings,
    form=lambda call, data: BootForm(call.context["settings"], data),
    run=lambda call: apply(call.request, call.ref, cast(BootForm, call.form)),
    then=lambda call, _outcome: reverse("instances:boot", args=[call.ref.host.name, call.ref.uuid])))


def apply(request: HttpRequest, ref: VMRef, form: BootForm, *, quiet: bool = False) -> Outcome[BootReport]:
    """Save the order, menu and autostart a valid form asks for (the page's and the API's one way)."""
    order, bootmenu, autostart = form.order(), form.cleaned_data["bootmenu"], form.cleaned_data["autostart"]
    asked = (f"boot order {', '.join(order)}; boot menu {'on' if bootmenu else 'off'}; "
             f"autostart {'on' if autostart else 'off'}")
    return on_vm(request, ops.BOOT, ref, lambda dom: update(dom, order, bootmenu, autostart), done=summary,
                 detail=asked, form=form, quiet=quiet)
