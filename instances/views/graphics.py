"""VNC settings of a VM: password, keymap, listen address.

The password is written into libvirt's definition and nowhere else: not in the database, the
audit log, a message or a page (the form never renders it back).
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import messages
from django.http import HttpRequest, QueryDict
from django.urls import reverse
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from instances import operations as ops
from instances.lookup import VMRef
from instances.views.config_common import sentences, shown, where_applied, words
from virt.errors import InvalidInput
from virt.graphics import (
    DEFAULT_LISTEN,
    KEYMAPS,
    MAX_PASSWORD,
    VncChange,
    VncReport,
    VncSettings,
    read_settings,
    update,
    validate_listen,
    validate_password,
)
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Outcome, on_vm
from webkvm.permissions import is_admin

KEEP, SET, CLEAR = "keep", "set", "clear"
ADMIN_ONLY = ("password_action", "password", "listen")


class VncForm(forms.Form):
    password_action = forms.ChoiceField(label=gettext_lazy("Password"), initial=KEEP, choices=[
        (KEEP, gettext_lazy("keep as it is")), (SET, gettext_lazy("set a new password")),
        (CLEAR, gettext_lazy("remove the password"))])
    password = forms.CharField(label=gettext_lazy("New password"), required=False, strip=False,
                               widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                               help_text=format_lazy(gettext_lazy(
                                   "1 to {count} printable ASCII characters (VNC uses no more)."), count=MAX_PASSWORD))
    # The keymaps' names are codes (data): translate="no" keeps browsers' translators (and the page check) off them.
    keymap = forms.ChoiceField(label=gettext_lazy("Keymap"), required=False,
                               widget=forms.Select(attrs={"translate": "no"}),
                               choices=[("", gettext_lazy("qemu's default (en-us)")), *((k, k) for k in KEYMAPS)])
    listen = forms.CharField(label=gettext_lazy("Listen address"), max_length=45, initial=DEFAULT_LISTEN,
                             help_text=gettext_lazy("127.0.0.1: reachable only through the panel's console "
                                                    "(recommended)."))

    def __init__(self, settings: VncSettings, admin: bool, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"keymap": settings.keymap, "listen": settings.listen or DEFAULT_LISTEN,
                                      "password_action": KEEP})
        super().__init__(*args, **kwargs)
        self.settings, self.admin = settings, admin
        if not admin:
            # A listen address exposes the screen without console tickets or audit; a password locks others
            # out of the panel's console: both are admins' choices.
            for name in ADMIN_ONLY:
                del self.fields[name]

    def clean_listen(self) -> str:
        try:
            return validate_listen(self.cleaned_data["listen"])
        except InvalidInput as exc:
            raise forms.ValidationError(said(exc)) from None

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if not self.admin and any(name in self.data for name in ADMIN_ONLY):
            raise forms.ValidationError(_("Only admins set the VNC password and listen address."))
        if data.get("password_action") == SET:
            try:
                validate_password(data.get("password") or "")
            except InvalidInput as exc:
                self.add_error("password", said(exc))
        return data

    def change(self) -> VncChange:
        keymap = self.cleaned_data.get("keymap") or ""
        if not self.admin:  # the keymap only; password and listen address stay as they are
            return VncChange(password=None, keymap=keymap, listen=self.settings.listen or DEFAULT_LISTEN)
        action = self.cleaned_data["password_action"]
        password = None if action == KEEP else ("" if action == CLEAR else self.cleaned_data["password"])
        return VncChange(password=password, keymap=keymap, listen=self.cleaned_data["listen"])


def _describe(change: VncChange, report: VncReport) -> str:
    # Never the password itself: only what happened to it.
    password = {None: "kept", "": "removed"}.get(change.password, "changed")
    return (f"password {password}; keymap {change.keymap or 'default'}; listen {change.listen}"
            + where_applied(report.live, report.next_boot))


def summary(report: VncReport, running: bool) -> str:
    if not running:
        return _("VNC settings saved; they apply when the VM starts.")
    parts = [_("VNC settings saved.")]
    if report.live:
        parts.append(_("Applied now: {what}.").format(what=words(report.live)))
    if report.next_boot:
        parts.append(_("On next boot: {what}.").format(what=words(report.next_boot)))
    return sentences(parts)


def _settings(call: Call) -> None:
    name, settings = call.ref.call(lambda dom: (str(dom.name()), read_settings(dom)))
    call.context.update(name=name, settings=settings, pending=words(list(settings.pending)))


def _form(call: Call, data: QueryDict | None) -> VncForm:
    """A VM without VNC has nothing to set: its form is never bound, so a POST only shows the page again."""
    settings: VncSettings = call.context["settings"]
    return VncForm(settings, is_admin(call.request.user), data if settings.present else None)


vnc_settings = operation_view(OperationPage(
    ops.VNC, template="instances/config/graphics.html", find=_settings, form=_form,
    run=lambda call: apply(call.request, call.ref, cast(VncForm, call.form)),
    then=lambda call, _outcome: reverse("instances:vnc", args=[call.ref.host.name, call.ref.uuid])))


def apply(request: HttpRequest, ref: VMRef, form: VncForm, *, quiet: bool = False) -> Outcome[VncReport]:
    """Save what a valid form asks for (the page's and the API's one way); its warnings (an exposed screen)
    follow the message unless `quiet` (the API answers them)."""
    change, running = form.change(), form.settings.running
    outcome = on_vm(request, ops.VNC, ref, lambda dom: update(dom, change),
                    done=lambda report: summary(report, running),
                    detail=lambda report: _describe(change, report), form=form, quiet=quiet)
    if outcome.ok and outcome.value is not None and not quiet:
        for warning in outcome.value.warnings:
            messages.warning(request, shown(warning))
    return outcome
