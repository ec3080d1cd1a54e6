"""User management for admins: accounts, the admin flag, and per-VM grants.

The functions doing the work of an operation (create_user, update_user, set_password, give_grant, revoke_grant)
are the pages' and the API's (api/people.py); the operations' pages are generated from the declarations
(webkvm/operation_views.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

import libvirt
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import SetPasswordForm, UserCreationForm
from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from hosts import services
from hosts.models import Host
from virt.errors import NotFound, VirtError
from webkvm import user_operations as ops
from webkvm.i18n import said
from webkvm.models import VMGrant
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import ADMIN, Operation, Outcome, View, page, perform, route

User = get_user_model()


class UserFlagsForm(forms.ModelForm[Any]):
    """What an admin may change of an account (the user's page, PATCH in the API); `editor` is the admin
    making the change, who may not take away their own admin rights."""

    class Meta:
        model = User
        fields = ["is_active", "is_superuser", "email"]
        labels = {"is_superuser": gettext_lazy("Administrator (full access to every host and VM)")}

    def __init__(self, *args: Any, editor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.editor = editor

    def clean_is_superuser(self) -> bool:
        admin = bool(self.cleaned_data.get("is_superuser"))
        if not admin and self.instance.pk is not None and self.instance.pk == self.editor.pk:
            raise forms.ValidationError(_("You cannot take away your own admin rights."))
        return admin


ALLOWED = ("can_console", "can_power", "can_change", "can_delete")  # a grant's switches; view comes with each


class GrantPermissionsForm(forms.Form):
    """What a grant allows, on the user's page and on a VM's "Share…" page alike."""

    can_console = forms.BooleanField(required=False, label=gettext_lazy("console"))
    can_power = forms.BooleanField(required=False, label=gettext_lazy("power"))
    can_change = forms.BooleanField(required=False, label=gettext_lazy("change"))
    can_delete = forms.BooleanField(required=False, label=gettext_lazy("delete"))

    def allowed(self) -> dict[str, bool]:
        return {name: bool(self.cleaned_data.get(name)) for name in ALLOWED}


class GrantForm(GrantPermissionsForm):
    host = forms.ModelChoiceField(queryset=Host.objects.order_by("name"), label=gettext_lazy("Host"))
    vm = forms.CharField(max_length=200, label=gettext_lazy("VM"),
                         help_text=gettext_lazy("Its name (pick from the list) or UUID."))
    field_order = ["host", "vm", *ALLOWED]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hosts = list(self.fields["host"].queryset)  # type: ignore[attr-defined]
        if len(hosts) == 1:
            self.initial.setdefault("host", hosts[0].pk)

    def offer(self, vm_lists: dict[int, list[str]]) -> None:
        """The VM box offers the chosen host's VMs: a <datalist> per host, named "vms-" and the host's key
        (js/grant-picker.js follows the host chosen)."""
        chosen = str((self.data.get("host") if self.is_bound else self.initial.get("host")) or "")
        attrs = self.fields["vm"].widget.attrs
        attrs.update({"autocomplete": "off", "data-vm-list-prefix": "vms-"})
        if chosen.isdigit() and int(chosen) in vm_lists:
            attrs["list"] = f"vms-{chosen}"

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        host, vm = data.get("host"), (data.get("vm") or "").strip()
        if host is None or not vm:
            return data
        try:
            wanted: uuid.UUID | None = uuid.UUID(vm)
        except ValueError:
            wanted = None

        def lookup(conn: libvirt.virConnect) -> tuple[str, str]:
            dom = conn.lookupByUUIDString(str(wanted)) if wanted else conn.lookupByName(vm)
            return dom.UUIDString(), dom.name()

        try:
            data["vm_uuid"], data["vm_name"] = services.call(host, lookup)
        except NotFound:
            names = {"uuid": wanted, "name": vm, "host": host}
            self.add_error("vm", _("There is no VM with the UUID %(uuid)s on %(host)s.") % names if wanted else
                           _("There is no VM named “%(name)s” on %(host)s.") % names)
        except VirtError as exc:
            self.add_error("vm", _("%(host)s could not be asked for its VMs: %(reason)s") % {"host": host,
                                                                                             "reason": said(exc)})
        return data


class UserGrantForm(GrantForm):
    """The grant form with its user named in the data rather than in the URL, and its host by name (the API,
    where hosts have no other key); the same fields, rules and VM lookup otherwise."""

    user = forms.ModelChoiceField(queryset=User.objects.order_by("username"), label=gettext_lazy("User"))
    host = forms.ModelChoiceField(queryset=Host.objects.order_by("name"), to_field_name="name",
                                  label=gettext_lazy("Host"))
    field_order = ["user", "host", "vm", *ALLOWED]


def vm_lists(hosts: list[Host]) -> tuple[dict[int, list[str]], dict[str, str]]:
    """Each host's VM names for the grant form's picker, from the read the VM list shares (a host that fails
    costs only its own list): ({host pk: names}, {host name: why its list is missing})."""
    from instances.host_rows import host_rows  # instances imports this app

    lists: dict[int, list[str]] = {}
    missing: dict[str, str] = {}
    for outcome in services.each(hosts, host_rows):
        if outcome.value is None:
            missing[outcome.host.name] = outcome.words
        else:
            lists[outcome.host.pk] = sorted(row.name for row in outcome.value.rows)
    return lists, missing


# --- the operations, after validation: one way each for the pages and the API ----------------------------

# What each operation says when it worked: the page's message and the API's answer.
DONE = {ops.USER_CREATE: gettext_lazy("User {user} created."), ops.USER_UPDATE: gettext_lazy("{user} updated."),
        ops.USER_SET_PASSWORD: gettext_lazy("Password of {user} changed."),
        ops.GRANT_SET: gettext_lazy("{user} may now use {vm} on {host}."),
        ops.GRANT_REVOKE: gettext_lazy("Grant removed.")}


def done_words(op: Operation, **names: object) -> str:
    return str(DONE[op]).format(**names)


def create_user(request: HttpRequest, form: UserCreationForm[Any], *, quiet: bool = False) -> Outcome[Any]:
    name = form.cleaned_data["username"]
    return perform(request, ops.USER_CREATE, host=None, name=name, work=form.save,
                   done=done_words(ops.USER_CREATE, user=name), quiet=quiet)


def update_user(request: HttpRequest, target: Any, form: UserFlagsForm, *, quiet: bool = False) -> Outcome[Any]:
    name = target.get_username()
    return perform(request, ops.USER_UPDATE, host=None, name=name, work=form.save,
                   done=done_words(ops.USER_UPDATE, user=name), quiet=quiet,
                   detail=lambda saved: f"active={saved.is_active} admin={saved.is_superuser}")


def set_password(request: HttpRequest, target: Any, form: SetPasswordForm[Any], *,
                 quiet: bool = False) -> Outcome[Any]:
    name = target.get_username()
    return perform(request, ops.USER_SET_PASSWORD, host=None, name=name, work=form.save,
                   done=done_words(ops.USER_SET_PASSWORD, user=name), quiet=quiet)


def revoke_grant(request: HttpRequest, grant: VMGrant, *, quiet: bool = False) -> Outcome[Any]:
    return perform(request, ops.GRANT_REVOKE, host=grant.host, name=grant.vm_name, work=grant.delete,
                   done=done_words(ops.GRANT_REVOKE), detail=f"user={grant.user.get_username()}", quiet=quiet)


def give_grant(request: HttpRequest, target: Any, host: Host, vm_uuid: str, vm_name: str,
               allowed: dict[str, bool], *, quiet: bool = False) -> Outcome[VMGrant]:
    """The one way a grant is made or changed (the user's page, a VM's "Share…"): one per user and VM, one
    audit record."""
    name = target.get_username()

    def work() -> VMGrant:
        grant, _created = VMGrant.objects.update_or_create(
            user=target, host=host, vm_uuid=vm_uuid, defaults={"vm_name": vm_name, **allowed})
        return grant

    return perform(request, ops.GRANT_SET, host=host, name=vm_name, work=work,
                   done=done_words(ops.GRANT_SET, user=name, vm=vm_name, host=host), detail=f"user={name}", quiet=quiet)


@require_GET
@route(page(ADMIN))
def user_list(request: HttpRequest) -> HttpResponse:
    return render(request, "users/list.html", {"users": User.objects.order_by("username")})


# --- the pages of the operations, generated from the declarations (webkvm/operation_views.py) -------


def _detail(call: Call, _result: Any = None) -> str:
    return reverse("users:detail", kwargs={"pk": call.args["pk"]})


def _created(call: Call, outcome: Outcome[Any]) -> str:
    return reverse("users:detail", kwargs={"pk": outcome.value.pk if outcome.value is not None else 0})


user_create = operation_view(OperationPage(
    ops.USER_CREATE, host="", template="users/create.html",
    form=lambda call, data: UserCreationForm(data),
    run=lambda call: create_user(call.request, cast("UserCreationForm[Any]", call.form)), then=_created))


def _detail_page(request: HttpRequest, target: Any, **bound: forms.BaseForm) -> HttpResponse:
    """The user's page: their account, password and grants, each a form of its own (the one posted, `bound`,
    shows its errors; the others are empty)."""
    flags = bound.get("flags") or UserFlagsForm(instance=target, editor=request.user)
    password = bound.get("password") or SetPasswordForm(target)
    grant = cast(GrantForm, bound.get("grant") or GrantForm())
    hosts = list(Host.objects.order_by("name"))
    lists, missing = vm_lists(hosts)
    grant.offer(lists)
    return render(request, "users/detail.html", {
        "target": target, "flags": flags, "password": password, "grant": grant,
        "grants": target.vm_grants.select_related("host"),
        "vm_lists": [(host, lists[host.pk]) for host in hosts if host.pk in lists], "vm_lists_missing": missing,
    })


def _target(call: Call) -> None:
    call.context["target"] = get_object_or_404(User, pk=call.args["pk"])


def _posted(which: str, op: Operation, form: Callable[[Call, QueryDict | None], forms.BaseForm],
            run: Callable[[Call, Any], Outcome[Any]]) -> View:
    """The generated view of one form of the user's page (`which`: its hidden field "form"); a field error
    shows the whole page again with that form's errors."""
    return operation_view(OperationPage(
        op, host="", template="users/detail.html", find=_target, form=form,
        run=lambda call: run(call, call.context["target"]), then=_detail,
        again=lambda call: _detail_page(call.request, call.context["target"], **{which: cast(Any, call.form)})))


def _give(call: Call, target: Any) -> Outcome[Any]:
    form = cast(GrantForm, call.form)
    data = form.cleaned_data
    return give_grant(call.request, target, data["host"], data["vm_uuid"], data["vm_name"], form.allowed())


# Each form of the user's page posts one operation (user.update, user.set_password, grant.set).
POSTED: dict[str, View] = {
    "flags": _posted("flags", ops.USER_UPDATE,
                     lambda call, data: UserFlagsForm(data, instance=call.context["target"], editor=call.request.user),
                     lambda call, target: update_user(call.request, target, cast(UserFlagsForm, call.form))),
    "password": _posted("password", ops.USER_SET_PASSWORD,
                        lambda call, data: SetPasswordForm(call.context["target"], data),
                        lambda call, target: set_password(call.request, target,
                                                          cast("SetPasswordForm[Any]", call.form))),
    "grant": _posted("grant", ops.GRANT_SET, lambda call, data: GrantForm(data), _give),
}


@require_http_methods(["GET", "POST"])
@route(page(ADMIN))  # each form posts one of user.update, user.set_password, grant.set (all admin): POSTED
def user_detail(request: HttpRequest, pk: int) -> HttpResponseBase:
    posted = POSTED.get(request.POST.get("form", "")) if request.method == "POST" else None
    if posted is not None:
        return posted(request, pk=pk)
    return _detail_page(request, get_object_or_404(User, pk=pk))


def _revoke(call: Call) -> Outcome[Any]:
    return revoke_grant(call.request, get_object_or_404(VMGrant, pk=call.args["grant_id"], user_id=call.args["pk"]))


grant_delete = operation_view(OperationPage(ops.GRANT_REVOKE, host="", run=_revoke, then=_detail))
