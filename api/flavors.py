"""Flavors: the sizes VMs are created from (admins, like the pages: only admins create VMs).

Each change validates the page's own form (instances.forms_create.FlavorForm) and runs the page's own
function (instances/views/flavors.py: the declared operation, its one audit record); see api/base.py."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.forms.models import model_to_dict
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import ApiView, Done, Serializer, answer, data_of, declared, form_schema, valid
from instances import operations as ops
from instances.forms_create import FlavorForm
from instances.models import Flavor
from instances.views import flavors as pages
from webkvm.operations import ADMIN, Operation, by_method, page


class FlavorOut(Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    vcpus = serializers.IntegerField()
    memory_mib = serializers.IntegerField()
    disk_gib = serializers.IntegerField()
    description = serializers.CharField()
    url = serializers.URLField()


class FlavorSaved(Done, FlavorOut):
    pass


class FlavorPage(Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = FlavorOut(many=True)


FIELDS = list(FlavorForm.base_fields)
# api.base takes Form classes; a ModelForm serves as well (base.py could take type[forms.BaseForm]).
AS_FORM = cast("type[forms.Form]", FlavorForm)
SCHEMA = form_schema(AS_FORM, "FlavorForm")


def _flavor(request: Request, flavor: Flavor) -> dict[str, Any]:
    return {"id": flavor.pk, **model_to_dict(flavor, fields=FIELDS),
            "url": request.build_absolute_uri(reverse("api:flavor", args=[flavor.pk]))}


def _save(request: Request, op: Operation, form: FlavorForm, created: bool = False) -> Response:
    valid(form)
    outcome = pages.save_flavor(request, op, form, quiet=True)
    saved = outcome.value
    return answer(outcome, form, message=_("Flavor %(name)s saved.") % {"name": saved.name} if saved else "",
                  data=_flavor(request, saved) if saved else None, created=created)


class FlavorList(ApiView):
    access = by_method(GET=page(ADMIN), POST=ops.FLAVOR_CREATE)

    @extend_schema(summary="Flavors (admins)", responses=FlavorPage, operation_id="flavors_list")
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        chosen = paginator.paginate_queryset(Flavor.objects.all(), request, view=self) or []
        return paginator.get_paginated_response([_flavor(request, f) for f in chosen])

    @extend_schema(summary="Create a flavor (admins)", operation_id="flavor_create",
                   request=SCHEMA, responses={201: FlavorSaved})
    def post(self, request: Request) -> Response:
        return _save(request, ops.FLAVOR_CREATE, FlavorForm(data_of(request, AS_FORM)), created=True)


class FlavorDetail(ApiView):
    access = by_method(GET=page(ADMIN), PUT=ops.FLAVOR_UPDATE, PATCH=ops.FLAVOR_UPDATE, DELETE=ops.FLAVOR_DELETE)

    @extend_schema(summary="One flavor (admins)", responses=FlavorOut, operation_id="flavor_detail")
    def get(self, request: Request, pk: int) -> Response:
        return Response(_flavor(request, get_object_or_404(Flavor, pk=pk)))

    @extend_schema(summary="Replace a flavor's fields (admins)", operation_id="flavor_update",
                   request=SCHEMA, responses={200: FlavorSaved})
    def put(self, request: Request, pk: int) -> Response:
        flavor = get_object_or_404(Flavor, pk=pk)
        return _save(request, ops.FLAVOR_UPDATE, FlavorForm(data_of(request, AS_FORM), instance=flavor))

    @extend_schema(summary="Change some of a flavor's fields (admins)", operation_id="flavor_partial_update",
                   request=SCHEMA, responses={200: FlavorSaved})
    def patch(self, request: Request, pk: int) -> Response:
        flavor = get_object_or_404(Flavor, pk=pk)
        data = {**model_to_dict(flavor, fields=FIELDS), **data_of(request)}  # fields left out keep their values
        return _save(request, ops.FLAVOR_UPDATE, FlavorForm(data, instance=flavor))

    @extend_schema(summary="Delete a flavor; VMs made from it keep their sizes (admins)",
                   operation_id="flavor_delete", responses={200: Done})
    def delete(self, request: Request, pk: int) -> Response:
        flavor = get_object_or_404(Flavor, pk=pk)
        name = flavor.name
        return answer(pages.delete_flavor(request, flavor, quiet=True),
                      message=_("Flavor %(name)s deleted.") % {"name": name})


urlpatterns: list[Any] = [
    path("flavors/", declared(FlavorList), name="flavors"),
    path("flavors/<int:pk>/", declared(FlavorDetail), name="flavor"),
]
