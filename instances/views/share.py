"""Share… on a VM's page (admins): give a user access to this VM. The grant is made by the same function as on
the user's page (webkvm.users.give_grant): one grant per user and VM, one audit record (grant.set).
The page is generated from the declaration (webkvm/operation_views.py)."""

from __future__ import annotations

from typing import cast

import libvirt
from django import forms
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils.translation import gettext_lazy

from instances import operations as ops
from webkvm.i18n import said
from webkvm.models import VMGrant
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Outcome
from webkvm.users import ALLOWED, GrantPermissionsForm, give_grant


class ShareForm(GrantPermissionsForm):
    # Admins may use every VM already: only the others need a grant.
    user = forms.ModelChoiceField(queryset=get_user_model().objects.filter(is_superuser=False, is_active=True)
                                  .order_by("username"), label=gettext_lazy("User"),
                                  empty_label=gettext_lazy("choose a user"))
    field_order = ["user", *ALLOWED]


def _name(dom: libvirt.virDomain) -> str:
    return str(dom.name())


def _find(call: Call) -> None:
    ref = call.ref
    call.context["grants"] = (VMGrant.objects.filter(host=ref.host, vm_uuid=ref.uuid).select_related("user")
                              .order_by("user__username"))
    call.context["vm_name"] = ref.call(_name)


def _give(call: Call) -> Outcome[VMGrant]:
    form = cast(ShareForm, call.form)
    return give_grant(call.request, form.cleaned_data["user"], call.ref.host, call.ref.uuid, call.context["vm_name"],
                      form.allowed())


share = operation_view(OperationPage(
    ops.SHARE, names_vm=True, template="instances/share.html", find=_find, unavailable=lambda call, exc: said(exc),
    form=lambda call, data: ShareForm(data), run=_give,
    then=lambda call, _outcome: reverse("instances:detail", args=[call.ref.host.name, call.ref.uuid])))
