"""Quotas: admins create, change and delete them (validated by the pages' own form, instances.forms_quota.
QuotaForm, run by the pages' own functions: instances/views/quotas.py); anybody logged in reads their own
limits, usage and choices, admins everybody's who has limits (/usage/)."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import ApiView, Done, Serializer, answer, data_of, declared, form_schema, valid
from instances import quotas
from instances.forms_quota import QuotaForm
from instances.models import Quota
from instances.views import quotas as pages
from webkvm.i18n import said
from webkvm.operations import ADMIN, LOGIN, by_method, page
from webkvm.permissions import is_admin
from webkvm.user_operations import QUOTA_DELETE, QUOTA_SET


class QuotaOut(Serializer):
    id = serializers.IntegerField()
    user = serializers.CharField(allow_null=True, help_text="user name, or null for a group's quota")
    group = serializers.CharField(allow_null=True)
    max_vms = serializers.IntegerField()
    max_vcpus = serializers.IntegerField()
    max_memory_mib = serializers.IntegerField()
    max_disk_gib = serializers.IntegerField()
    hosts = serializers.ListField(child=serializers.CharField(), help_text="host names")
    images = serializers.ListField(child=serializers.IntegerField(), help_text="image ids")
    flavors = serializers.ListField(child=serializers.CharField(), help_text="flavor names")
    custom_sizes = serializers.BooleanField(help_text="users may choose their own vCPUs and memory (besides the "
                                            "flavors)")
    shared = serializers.ListField(child=serializers.IntegerField(), help_text="ids of opened pools and networks")
    usage = serializers.ListField(child=serializers.DictField(), help_text="its user's (members') usage")
    url = serializers.URLField()


class QuotaSaved(Done, QuotaOut):
    pass


class QuotaPage(Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = QuotaOut(many=True)


class QuotaUsageOut(Serializer):
    user = serializers.CharField()
    limits = serializers.DictField(help_text="max_vms, max_vcpus, max_memory_mib, max_disk_gib, source")
    usage = serializers.DictField(help_text="vms, vcpus, memory_mib, disk_bytes")
    words = serializers.CharField(help_text="usage against the limits, in words")
    left = serializers.CharField(help_text="what is left, in words")
    allowed = serializers.DictField(required=False, help_text="the caller's own choices (their own entry only)")


class QuotaUsageList(Serializer):
    results = QuotaUsageOut(many=True)


AS_FORM = cast("type[forms.Form]", QuotaForm)
SCHEMA = form_schema(
    AS_FORM, "QuotaForm",
    hosts=serializers.ListField(child=serializers.CharField(), required=False, help_text="host names"),
    images=serializers.ListField(child=serializers.IntegerField(), required=False, help_text="image ids"),
    flavors=serializers.ListField(child=serializers.CharField(), required=False, help_text="flavor names"),
    shared=serializers.ListField(child=serializers.IntegerField(), required=False,
                                 help_text="ids of the pools and networks opened to users"))


def _usage(entry: quotas.UserUsage) -> dict[str, Any]:
    limits, used = entry.limits, entry.used
    return {"user": entry.user.get_username(),
            "limits": {"max_vms": limits.max_vms, "max_vcpus": limits.max_vcpus,
                       "max_memory_mib": limits.max_memory_mib, "max_disk_gib": limits.max_disk_gib,
                       "source": limits.source},
            "usage": {"vms": used.vms, "vcpus": used.vcpus, "memory_mib": used.memory_mib,
                      "disk_bytes": used.disk_bytes},
            "words": said(entry.words), "left": said(quotas.left_words(limits, used))}


def _quota(request: Request, quota: Quota) -> dict[str, Any]:
    return {"id": quota.pk, "user": quota.user.get_username() if quota.user else None,
            "group": quota.group.name if quota.group else None, "max_vms": quota.max_vms,
            "max_vcpus": quota.max_vcpus, "max_memory_mib": quota.max_memory_mib, "max_disk_gib": quota.max_disk_gib,
            "hosts": [h.name for h in quota.hosts.all()], "images": [i.pk for i in quota.images.all()],
            "flavors": [f.name for f in quota.flavors.all()], "custom_sizes": quota.custom_sizes,
            "shared": [s.pk for s in quota.shared.all()],
            "usage": [_usage(u) for u in pages.members_usage(quota)],
            "url": request.build_absolute_uri(reverse("api:quota", args=[quota.pk]))}


def _form_data(quota: Quota) -> dict[str, Any]:
    """A quota's current values as the form takes them (PATCH: the fields left out keep theirs)."""
    data = {"user": quota.user.get_username() if quota.user else None,
            "group": quota.group.name if quota.group else None, "max_vms": quota.max_vms,
            "max_vcpus": quota.max_vcpus, "max_memory_mib": quota.max_memory_mib, "max_disk_gib": quota.max_disk_gib,
            "hosts": [h.name for h in quota.hosts.all()], "images": [i.pk for i in quota.images.all()],
            "flavors": [f.name for f in quota.flavors.all()], "custom_sizes": quota.custom_sizes,
            "shared": [s.pk for s in quota.shared.all()]}
    return {key: value for key, value in data.items() if value is not None}


def _save(request: Request, form: QuotaForm, created: bool = False) -> Response:
    valid(form)
    outcome = pages.save_quota(request, form, quiet=True)
    saved = outcome.value
    return answer(outcome, form, data=_quota(request, saved) if saved else None, created=created)


class QuotaList(ApiView):
    access = by_method(GET=page(ADMIN), POST=QUOTA_SET)

    @extend_schema(summary="Quotas with their users' usage (admins)", responses=QuotaPage, operation_id="quotas_list")
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        rows = Quota.objects.select_related("user", "group").order_by("pk")
        chosen = paginator.paginate_queryset(rows, request, view=self) or []
        return paginator.get_paginated_response([_quota(request, q) for q in chosen])

    @extend_schema(summary="Give a user or a group a quota (admins)", operation_id="quota_create",
                   request=SCHEMA, responses={201: QuotaSaved})
    def post(self, request: Request) -> Response:
        return _save(request, QuotaForm(data_of(request, AS_FORM)), created=True)


class QuotaDetail(ApiView):
    access = by_method(GET=page(ADMIN), PUT=QUOTA_SET, PATCH=QUOTA_SET, DELETE=QUOTA_DELETE)

    @extend_schema(summary="One quota and its users' usage (admins)", responses=QuotaOut, operation_id="quota_detail")
    def get(self, request: Request, pk: int) -> Response:
        return Response(_quota(request, get_object_or_404(Quota, pk=pk)))

    @extend_schema(summary="Replace a quota's fields (admins)", operation_id="quota_update",
                   request=SCHEMA, responses={200: QuotaSaved})
    def put(self, request: Request, pk: int) -> Response:
        quota = get_object_or_404(Quota, pk=pk)
        return _save(request, QuotaForm(data_of(request, AS_FORM), instance=quota))

    @extend_schema(summary="Change some of a quota's fields (admins)", operation_id="quota_partial_update",
                   request=SCHEMA, responses={200: QuotaSaved})
    def patch(self, request: Request, pk: int) -> Response:
        quota = get_object_or_404(Quota, pk=pk)
        return _save(request, QuotaForm({**_form_data(quota), **data_of(request)}, instance=quota))

    @extend_schema(summary="Delete a quota; the VMs made within it stay their owners' (admins)",
                   operation_id="quota_delete", responses={200: Done})
    def delete(self, request: Request, pk: int) -> Response:
        quota = get_object_or_404(Quota, pk=pk)
        words = quota.owner_label
        return answer(pages.delete_quota(request, quota, quiet=True),
                      message=_("Quota of %(owner)s deleted.") % {"owner": words})


class UsageView(ApiView):
    access = by_method(GET=page(LOGIN))

    @extend_schema(summary="Usage against quota: your own (and what you may choose from); admins: every user "
                           "with limits, or one (?user=NAME)", operation_id="quota_usage", responses=QuotaUsageList,
                   parameters=[OpenApiParameter("user", str, description="admins: one user's usage")])
    def get(self, request: Request) -> Response:
        if not is_admin(request.user):
            entries = quotas.usage_of([request.user])
            results = [_usage(e) for e in entries]
            if results:
                results[0]["allowed"] = _allowed(request.user)
            else:
                results = [{"user": request.user.get_username(), "limits": None, "usage": None,
                            "words": "", "left": said(quotas.left(request.user))}]
            return Response({"results": results})
        users = get_user_model().objects.filter(is_active=True, is_superuser=False).order_by("username")
        if name := request.query_params.get("user"):
            users = users.filter(username=name)
        return Response({"results": [_usage(e) for e in quotas.usage_of(list(users))]})


def _allowed(user: Any) -> dict[str, Any]:
    chosen = quotas.allowed(user)
    return {"hosts": [{"name": h.name} for h in chosen.hosts],
            "images": [{"id": i.pk, "name": i.name, "host": i.host.name} for i in chosen.images.select_related("host")],
            "flavors": [{"name": f.name, "vcpus": f.vcpus, "memory_mib": f.memory_mib, "disk_gib": f.disk_gib}
                        for f in chosen.flavors],
            "custom_sizes": chosen.custom_sizes,
            "pools": [{"name": p.name, "host": p.host.name} for p in chosen.pools.select_related("host")],
            "networks": [{"name": n.name, "kind": n.kind, "host": n.host.name}
                         for n in chosen.networks.select_related("host")]}


urlpatterns: list[Any] = [
    path("quotas/", declared(QuotaList), name="quotas"),
    path("quotas/<int:pk>/", declared(QuotaDetail), name="quota"),
    path("usage/", declared(UsageView), name="quota-usage"),
]
