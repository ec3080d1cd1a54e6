"""Quotas: admins give users (or groups) limits for self-service and see usage against them; each user
sees their own (instances/quotas.py has the rules)."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from instances import quotas
from instances.forms_quota import QuotaForm
from instances.models import OwnedVM, Quota
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import ADMIN, LOGIN, Outcome, page, perform, route
from webkvm.user_operations import QUOTA_DELETE, QUOTA_SET

MEMBERS_SHOWN = 50  # members of a group quota listed with their usage


def describe(quota: Quota) -> str:
    """The quota in words, for the audit record: its limits and choices."""
    def names(rows: Any) -> str:
        return ", ".join(str(r) for r in rows) or "none"

    return (f"{quota.max_vms} VMs, {quota.max_vcpus} vCPUs, {quota.max_memory_mib} MiB memory, "
            f"{quota.max_disk_gib} GiB disk; hosts: {names(h.name for h in quota.hosts.all())}; "
            f"images: {names(quota.images.all())}; flavors: {names(f.name for f in quota.flavors.all())}; "
            f"pools and networks: {names(quota.shared.all())}")


def save_quota(request: HttpRequest, form: QuotaForm, *, quiet: bool = False) -> Outcome[Quota]:
    """quota.set of a valid form (the pages and the API): one audit record with the quota in words."""
    owner = form.cleaned_data.get("user") or form.cleaned_data.get("group")
    return perform(request, QUOTA_SET, host=None, name=str(owner), work=form.save,
                   done=lambda saved: _("Quota of {owner} saved.").format(owner=saved.owner_label), detail=describe,
                   audited_name=lambda saved: saved.owner_words, quiet=quiet)


def delete_quota(request: HttpRequest, quota: Quota, *, quiet: bool = False) -> Outcome[Any]:
    """quota.delete (the pages and the API). The VMs already made stay, and stay their owners'."""
    words, shown = quota.owner_words, quota.owner_label
    return perform(request, QUOTA_DELETE, host=None, name=words, work=quota.delete,
                   done=_("Quota of {owner} deleted.").format(owner=shown), detail=f"Quota of {words} deleted.",
                   quiet=quiet)


def members_usage(quota: Quota) -> list[quotas.UserUsage]:
    """Usage against their limits of the users a quota row concerns: its user, or its group's members."""
    users = [quota.user] if quota.user is not None else list(
        get_user_model().objects.filter(groups=quota.group, is_active=True).order_by("username")[:MEMBERS_SHOWN])
    return quotas.usage_of(users)


@require_GET
@route(page(ADMIN))
def quota_list(request: HttpRequest) -> HttpResponse:
    rows = [(q, members_usage(q)) for q in Quota.objects.select_related("user", "group")]
    return render(request, "instances/quotas.html", {"rows": rows})


# --- the pages, generated from the declarations (webkvm/operation_views.py) ------------------------


def _quota(call: Call) -> None:
    call.context["quota"] = get_object_or_404(Quota, pk=call.args["pk"]) if "pk" in call.args else None


def _to_list(call: Call, _outcome: Any = None) -> str:
    return reverse("instances:quotas")


quota_create = quota_edit = operation_view(OperationPage(
    QUOTA_SET, host="", template="instances/quotas_form.html", find=_quota, then=_to_list,
    form=lambda call, data: QuotaForm(data, instance=call.context["quota"]),
    run=lambda call: save_quota(call.request, cast(QuotaForm, call.form))))
quota_delete = operation_view(OperationPage(
    QUOTA_DELETE, host="", template="instances/quotas_delete.html", find=_quota, then=_to_list,
    run=lambda call: delete_quota(call.request, call.context["quota"])))


@require_GET
@route(page(LOGIN))
def my_quota(request: HttpRequest) -> HttpResponse:
    """The user's own limits, usage, what is left and what they may choose from; their self-service VMs."""
    me: Any = request.user
    limits = quotas.limits_for(me)
    context: dict[str, Any] = {"limits": limits, "left": said(quotas.left(request.user))}
    if limits is not None:
        used = quotas.usage(request.user)
        context.update(used=said(quotas.usage_words(limits, used)), allowed=quotas.allowed(request.user),
                       owned=OwnedVM.objects.filter(user=me).select_related("host"))
    return render(request, "instances/quotas_mine.html", context)
