"""Share… on a VM's page (admins): give a user access to this VM. The grant is made by the same function as on
the user's page (webkvm.users.give_grant): one grant per user and VM, one audit record (grant.set)."""

from __future__ import annotations

import libvirt
from django import forms
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from instances import operations as ops
from instances.lookup import VMRef
from virt.errors import VirtError
from webkvm.i18n import said
from webkvm.models import VMGrant
from webkvm.operations import vm_route
from webkvm.users import ALLOWED, GrantPermissionsForm, give_grant


class ShareForm(GrantPermissionsForm):
    # Admins may use every VM already: only the others need a grant.
    user = forms.ModelChoiceField(queryset=get_user_model().objects.filter(is_superuser=False, is_active=True)
                                  .order_by("username"), label=gettext_lazy("User"),
                                  empty_label=gettext_lazy("choose a user"))
    field_order = ["user", *ALLOWED]


def _name(dom: libvirt.virDomain) -> str:
    return str(dom.name())


@require_http_methods(["GET", "POST"])
@vm_route(ops.SHARE)
def share(request: HttpRequest, ref: VMRef) -> HttpResponse:
    grants = VMGrant.objects.filter(host=ref.host, vm_uuid=ref.uuid).select_related("user").order_by("user__username")
    context: dict[str, object] = {"ref": ref, "grants": grants}
    try:
        name = ref.call(_name)
    except VirtError as exc:
        return render(request, "instances/share.html", {**context, "error": said(exc)}, status=503)
    form = ShareForm(request.POST if request.method == "POST" else None)
    context.update(vm_name=name, form=form)
    if request.method != "POST" or not form.is_valid():
        return render(request, "instances/share.html", context)
    outcome = give_grant(request, form.cleaned_data["user"], ref.host, ref.uuid, name, form.allowed())
    if not outcome.ok:
        return render(request, "instances/share.html", context)
    return redirect("instances:detail", ref.host.name, ref.uuid)
