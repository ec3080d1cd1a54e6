"""Migration (admins): a VM to another host, several VMs at once, a host's evacuation; each answers 202 with
its job, which checks again, migrates (one VM at a time) and writes the one audit record.

The pages' own forms validate (instances/views/migrate.py, evacuate.py) and the pages' own functions check
and start the jobs; see api/base.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import Accepted, ApiView, Serializer, accepted, data_of, declared, field_errors, form_schema, valid
from hosts.models import Host
from instances import operations as ops
from instances.views import evacuate as evacuate_page
from instances.views import migrate as migrate_page
from instances.views.bulk import MAX_SELECTED, ticked
from virt.migrate_checks import source_facts
from webkvm.operations import ADMIN, by_method, host_or_404, page


def refused_by_form(form: forms.BaseForm) -> ValidationError:
    """The page's function said no on its form (a field the host's state judged): 400 with the form's words."""
    return ValidationError(field_errors(form))


# --- one VM -----------------------------------------------------------------------------------------------

class FindingOut(Serializer):
    code = serializers.CharField(help_text="unreachable, same-host, state, cpu, network, bridge, storage, pool, "
                                           "memory, name, p2p, ...")
    problem = serializers.CharField()
    advice = serializers.CharField()
    blocking = serializers.BooleanField(help_text="true: the migration would be refused")


class PreflightOut(Serializer):
    target = serializers.CharField()
    live = serializers.BooleanField(help_text="the VM runs: a live migration; otherwise offline")
    findings = FindingOut(many=True)
    blocked = serializers.BooleanField()


# The pre-flight check's query: the form's fields, as the page's GET takes them.
PREFLIGHT_QUERY = [
    OpenApiParameter("target", str, required=True, description="the host to move to"),
    *[OpenApiParameter(name, bool) for name in ("copy_storage", "peer_to_peer", "tunnelled", "keep_source")],
    OpenApiParameter("max_downtime_ms", int), OpenApiParameter("bandwidth_mib", int),
    OpenApiParameter("migration_address", str),
]


class Migrate(ApiView):
    """GET: what the pre-flight checks find (the page's check); POST: check again and start the migration job
    (202). A running VM moves live, a shut-off one offline; the VM's grants follow it."""

    access = by_method(GET=page(ADMIN), POST=ops.MIGRATE)

    def form(self, data: Mapping[str, Any]) -> migrate_page.MigrateForm:
        return migrate_page.MigrateForm(migrate_page.targets_of(self.ref.host), data)

    @extend_schema(summary="Pre-flight checks of a migration (nothing changes)", operation_id="vm_migrate_check",
                   parameters=PREFLIGHT_QUERY, responses=PreflightOut)
    def get(self, request: Request, host: str, vm: Any) -> Response:
        form = self.form(request.query_params)
        valid(form)
        facts = self.ref.call(source_facts, migrate_page.CHECK_TIMEOUT)
        checked = migrate_page.check(request, self.ref, form, facts, starting=False)
        if checked is None:
            raise refused_by_form(form)
        return Response({"target": checked.target.name, "live": facts.active,
                         "findings": [f.as_dict() for f in checked.findings], "blocked": bool(checked.problems)})

    @extend_schema(summary="Migrate a VM to another host (a job; pre-flight problems: 409)",
                   operation_id="vm_migrate", request=form_schema(migrate_page.MigrateForm, "Migrate"),
                   responses={202: Accepted})
    def post(self, request: Request, host: str, vm: Any) -> Response:
        form = self.form(data_of(request, migrate_page.MigrateForm))
        valid(form)
        checked = migrate_page.migrate_one(request, self.ref, form, quiet=True)
        if checked is None or checked.job is None:
            raise refused_by_form(form)
        return accepted(checked.job, request)


# --- several VMs: to one host ---------------------------------------------------------------------------

class MigrateMany(ApiView):
    """The fleet view's "Migrate…": VMs named "host/uuid" move to the URL's host, one at a time; a parent job
    with one vm.migrate step per VM (those already there stay)."""

    access = by_method(POST=ops.MIGRATE_MANY)

    @extend_schema(
        summary="Migrate several VMs (of any hosts) to this host, one after another (a job with one step per VM)",
        operation_id="vms_migrate_to_host", responses={202: Accepted},
        request=form_schema(migrate_page.MigrateForm, "MigrateMany", target=serializers.HiddenField(default=""),
                            vms=serializers.ListField(child=serializers.CharField(), max_length=MAX_SELECTED,
                                                      help_text='"host/uuid" of each VM')))
    def post(self, request: Request, host: str) -> Response:
        target = host_or_404(host)
        data = data_of(request, migrate_page.MigrateForm)
        keys = data.pop("vms", None)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValidationError({"vms": [_('A list of VMs, each "host/uuid".')]})
        chosen = ticked(keys)
        if not chosen:
            raise ValidationError({"vms": [_("Name the VMs to migrate first (host/uuid of VMs of known hosts).")]})
        form = migrate_page.MigrateForm(list(Host.objects.values_list("name", flat=True)),
                                        {**data, "target": target.name})
        valid(form)
        job = migrate_page.migrate_selected(request, migrate_page.with_rows(chosen), form, quiet=True)
        if job is None:
            raise refused_by_form(form)
        return accepted(job, request)


# --- a host's evacuation --------------------------------------------------------------------------------

class Evacuate(ApiView):
    """The host page's "Evacuate": a parent job with one vm.migrate step per VM, run one after another."""

    access = by_method(POST=ops.EVACUATE)

    @extend_schema(summary="Evacuate a host: migrate its running VMs (and optionally the shut-off ones) to one "
                           f"host, or spread them by free memory (target {evacuate_page.SPREAD})",
                   operation_id="host_evacuate", responses={202: Accepted},
                   request=form_schema(evacuate_page.EvacuateForm, "Evacuate"))
    def post(self, request: Request, host: str) -> Response:
        source = host_or_404(host)
        others = Host.objects.exclude(pk=source.pk).values_list("name", flat=True)
        form = evacuate_page.EvacuateForm(list(others), data_of(request, evacuate_page.EvacuateForm))
        valid(form)
        job = evacuate_page.evacuate_host(request, source, form, quiet=True)
        if job is None:
            raise refused_by_form(form)
        return accepted(job, request)


VM = "vms/<str:host>/<uuid:vm>/"
urlpatterns: list[Any] = [
    path(VM + "migrate/", declared(Migrate), name="vm-migrate"),
    path("hosts/<str:host>/migrate/", declared(MigrateMany), name="host-migrate"),
    path("hosts/<str:host>/evacuate/", declared(Evacuate), name="host-evacuate"),
]
