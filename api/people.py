"""Users, grants and the audit log (admins).

Each change validates the user pages' own form and runs the pages' own function (webkvm/users.py: the
declared operation and its one audit record); the audit log is filtered by the audit page's own filters
(webkvm/views.py). Password hashes never leave the panel."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.forms import SetPasswordForm, UserCreationForm
from django.db.models import Q, QuerySet
from django.forms.models import model_to_dict
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import ApiView, Done, Serializer, answer, data_of, declared, form_schema, valid
from webkvm import user_operations as ops
from webkvm import users as user_pages
from webkvm.models import AuditEvent, VMGrant
from webkvm.operations import ADMIN, by_method, page
from webkvm.views import AuditFilters, audit_events

User = get_user_model()


def _paginated(view: ApiView, request: Request, rows: QuerySet[Any], shown: Any) -> Response:
    paginator = LimitOffsetPagination()  # also the view's pagination_class: the schema describes the pages
    chosen = paginator.paginate_queryset(rows, request, view=view) or []
    return paginator.get_paginated_response([shown(request, row) for row in chosen])


# --- users --------------------------------------------------------------------------------------------

class GrantOut(Serializer):
    id = serializers.IntegerField()
    user = serializers.IntegerField(help_text="the user's id")
    username = serializers.CharField()
    host = serializers.CharField()
    vm = serializers.UUIDField()
    vm_name = serializers.CharField(help_text="its name when the grant was made")
    permissions = serializers.ListField(child=serializers.CharField(), help_text="view and what else it allows")
    created = serializers.DateTimeField()
    url = serializers.URLField()


class UserOut(Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()
    is_active = serializers.BooleanField()
    is_superuser = serializers.BooleanField(help_text="an admin: every host and VM")
    last_login = serializers.DateTimeField(allow_null=True)
    date_joined = serializers.DateTimeField()
    url = serializers.URLField()


class UserDetailOut(UserOut):
    grants = GrantOut(many=True)


class UserMade(UserOut):
    message = serializers.CharField()


class UserChanged(UserDetailOut):
    message = serializers.CharField()


class GrantMade(GrantOut):
    message = serializers.CharField()


def _user(request: Request, user: Any) -> dict[str, Any]:
    # Spelled out field by field: the password hash never leaves the panel.
    return {"id": user.pk, "username": user.get_username(), "email": user.email, "is_active": user.is_active,
            "is_superuser": user.is_superuser, "last_login": user.last_login, "date_joined": user.date_joined,
            "url": request.build_absolute_uri(reverse("api:user", args=[user.pk]))}


def _grant(request: Request, grant: VMGrant) -> dict[str, Any]:
    return {"id": grant.pk, "user": grant.user_id, "username": grant.user.get_username(), "host": grant.host.name,
            "vm": str(grant.vm_uuid), "vm_name": grant.vm_name, "permissions": grant.permissions(),
            "created": grant.created, "url": request.build_absolute_uri(reverse("api:grant", args=[grant.pk]))}


def _with_grants(request: Request, user: Any) -> dict[str, Any]:
    grants = user.vm_grants.select_related("host", "user")
    return {**_user(request, user), "grants": [_grant(request, g) for g in grants]}


class UserList(ApiView):
    access = by_method(GET=page(ADMIN), POST=ops.USER_CREATE)
    pagination_class = LimitOffsetPagination

    @extend_schema(summary="The panel's users (admins)", responses=UserOut(many=True), operation_id="users_list")
    def get(self, request: Request) -> Response:
        return _paginated(self, request, User.objects.order_by("username"), _user)

    @extend_schema(summary="Create a user (the password rules of the user page apply)", operation_id="user_create",
                   request=form_schema(UserCreationForm, "UserCreate"),
                   responses={201: UserMade})
    def post(self, request: Request) -> Response:
        form: UserCreationForm[Any] = UserCreationForm(data_of(request, UserCreationForm))
        valid(form)
        outcome = user_pages.create_user(request, form, quiet=True)
        made = {} if outcome.value is None else _user(request, outcome.value)
        return answer(outcome, form, data=made, created=True,
                      message=user_pages.done_words(ops.USER_CREATE, user=outcome.name))


def _changes(request: Request, target: Any) -> dict[str, Any]:
    """PATCH: the user's current values with the body's over them. A field the page does not offer is an
    error rather than silently left as it was."""
    offered = list(user_pages.UserFlagsForm.base_fields)
    body = data_of(request)
    if unknown := sorted(set(body) - set(offered)):
        raise ValidationError({name: [_("This cannot be changed here; these can: %(fields)s.")
                                      % {"fields": ", ".join(offered)}] for name in unknown})
    return {**model_to_dict(target, fields=offered), **body}


class UserDetail(ApiView):
    access = by_method(GET=page(ADMIN), PATCH=ops.USER_UPDATE)

    @extend_schema(summary="One user with their VM grants (admins)", responses=UserDetailOut,
                   operation_id="user_detail")
    def get(self, request: Request, pk: int) -> Response:
        return Response(_with_grants(request, get_object_or_404(User, pk=pk)))

    @extend_schema(summary="Change a user: active, admin, email (as on the user page; send only what changes)",
                   operation_id="user_update", responses={200: UserChanged},
                   request=form_schema(user_pages.UserFlagsForm, "UserUpdate"))
    def patch(self, request: Request, pk: int) -> Response:
        target = get_object_or_404(User, pk=pk)
        form = user_pages.UserFlagsForm(_changes(request, target), instance=target, editor=request.user)
        valid(form)
        outcome = user_pages.update_user(request, target, form, quiet=True)
        return answer(outcome, form, data=_with_grants(request, target) if outcome.ok else None,
                      message=user_pages.done_words(ops.USER_UPDATE, user=outcome.name))


class UserPassword(ApiView):
    access = by_method(PUT=ops.USER_SET_PASSWORD)

    @extend_schema(summary="Set a user's password (the password rules of the user page apply)",
                   operation_id="user_set_password", request=form_schema(SetPasswordForm, "SetPassword"),
                   responses={200: Done})
    def put(self, request: Request, pk: int) -> Response:
        target = get_object_or_404(User, pk=pk)
        form: SetPasswordForm[Any] = SetPasswordForm(target, data_of(request, SetPasswordForm))
        valid(form)
        outcome = user_pages.set_password(request, target, form, quiet=True)
        return answer(outcome, form, message=user_pages.done_words(ops.USER_SET_PASSWORD, user=outcome.name))


# --- grants -------------------------------------------------------------------------------------------

def _grants_chosen(request: Request) -> QuerySet[VMGrant]:
    """The grants the query names: `user` (id or user name), `host` (name), `vm` (UUID or name)."""
    grants = VMGrant.objects.select_related("host", "user").order_by("user__username", "host__name", "vm_name")
    params = request.query_params
    if user := params.get("user", "").strip()[:150]:
        by_id = Q(user_id=int(user)) if user.isdigit() and len(user) < 19 else Q()  # an id SQLite can hold
        grants = grants.filter(by_id | Q(user__username=user))
    if host := params.get("host", "").strip()[:100]:
        grants = grants.filter(host__name=host)
    if vm := params.get("vm", "").strip()[:200]:
        try:
            grants = grants.filter(vm_uuid=uuid.UUID(vm))
        except ValueError:
            grants = grants.filter(vm_name=vm)
    return grants


# The grant form's own fields; its user and host are described here, because form_schema would list a model
# choice field's choices (a database query) while the module loads.
_GRANT_SET = form_schema(
    user_pages.GrantPermissionsForm, "GrantSet",
    user=serializers.IntegerField(help_text="the user's id"),
    host=serializers.CharField(help_text="the host's name"),
    vm=serializers.CharField(help_text=str(user_pages.UserGrantForm.base_fields["vm"].help_text)))


class GrantList(ApiView):
    access = by_method(GET=page(ADMIN), POST=ops.GRANT_SET)
    pagination_class = LimitOffsetPagination

    @extend_schema(summary="VM grants (admins)", responses=GrantOut(many=True), operation_id="grants_list",
                   parameters=[OpenApiParameter("user", str, description="a user's id or user name"),
                               OpenApiParameter("host", str, description="a host's name"),
                               OpenApiParameter("vm", str, description="a VM's UUID or name")])
    def get(self, request: Request) -> Response:
        return _paginated(self, request, _grants_chosen(request), _grant)

    @extend_schema(summary="Let a user use a VM, or change what they may do with it (one grant per user and VM)",
                   operation_id="grant_set", request=_GRANT_SET, responses={200: GrantMade})
    def post(self, request: Request) -> Response:
        form = user_pages.UserGrantForm(data_of(request, user_pages.UserGrantForm))
        data = valid(form)
        outcome = user_pages.give_grant(request, data["user"], data["host"], data["vm_uuid"], data["vm_name"],
                                        form.allowed(), quiet=True)
        words = user_pages.done_words(ops.GRANT_SET, user=data["user"].get_username(), vm=data["vm_name"],
                                      host=data["host"])
        return answer(outcome, form, data=None if outcome.value is None else _grant(request, outcome.value),
                      message=words)


class Grant(ApiView):
    access = by_method(GET=page(ADMIN), DELETE=ops.GRANT_REVOKE)

    @extend_schema(summary="One VM grant (admins)", responses=GrantOut, operation_id="grant_detail")
    def get(self, request: Request, grant_id: int) -> Response:
        return Response(_grant(request, get_object_or_404(VMGrant.objects.select_related("host", "user"),
                                                          pk=grant_id)))

    @extend_schema(summary="Revoke a VM grant", operation_id="grant_revoke", responses={200: Done})
    def delete(self, request: Request, grant_id: int) -> Response:
        grant = get_object_or_404(VMGrant.objects.select_related("host", "user"), pk=grant_id)
        outcome = user_pages.revoke_grant(request, grant, quiet=True)
        return answer(outcome, message=user_pages.done_words(ops.GRANT_REVOKE))


# --- the audit log ------------------------------------------------------------------------------------

class AuditOut(Serializer):
    id = serializers.IntegerField()
    time = serializers.DateTimeField()
    user = serializers.CharField(help_text="the user name; empty: anonymous")
    action = serializers.CharField()
    object_type = serializers.CharField()
    object_name = serializers.CharField()
    host = serializers.CharField()
    result = serializers.CharField(help_text="ok, failed or denied")
    detail = serializers.CharField()
    remote_addr = serializers.CharField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    repeats = serializers.IntegerField(help_text="identical refusals counted on this record")
    last_time = serializers.DateTimeField(allow_null=True, help_text="the latest repeat")


def _event(request: Request, event: AuditEvent) -> dict[str, Any]:
    return {"id": event.pk, "time": event.time, "user": event.username, "action": event.action,
            "object_type": event.object_type, "object_name": event.object_name, "host": event.host_name,
            "result": event.result, "detail": event.detail, "remote_addr": event.remote_addr,
            "duration_ms": event.duration_ms, "repeats": event.repeats, "last_time": event.last_time}


def _filter_parameters() -> list[OpenApiParameter]:
    return [OpenApiParameter(name, str, description=str(field.help_text or ""))
            for name, field in AuditFilters.base_fields.items()]


class AuditLog(ApiView):
    access = page(ADMIN)
    pagination_class = LimitOffsetPagination

    @extend_schema(summary="The audit log, newest first (admins), filtered as on the audit page",
                   responses=AuditOut(many=True), operation_id="audit_list", parameters=_filter_parameters())
    def get(self, request: Request) -> Response:
        filters = AuditFilters(request.query_params)
        valid(filters)
        return _paginated(self, request, audit_events(filters), _event)


urlpatterns: list[Any] = [
    path("users/", declared(UserList), name="users"),
    path("users/<int:pk>/", declared(UserDetail), name="user"),
    path("users/<int:pk>/password/", declared(UserPassword), name="user-password"),
    path("grants/", declared(GrantList), name="grants"),
    path("grants/<int:grant_id>/", declared(Grant), name="grant"),
    path("audit/", declared(AuditLog), name="audit"),
]
