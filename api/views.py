"""The first API resources: hosts (admin), VMs across hosts (list, detail, power actions) and jobs.

Each endpoint carries the access the pages declare (webkvm/operations.py), so tests/unit/test_routes.py
walks and checks it like any page; the checks themselves are the pages' own (webkvm/permissions.py,
instances.lookup.vm_or_404) and every change runs through the declared operation (on_vm: its lock and
its one audit record, which says it came through the API and with which token)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api import hosts as host_api
from api import vm_life
from api.base import ApiView, Serializer, answer, job_or_404, page_of, said
from api.errors import Conflict
from hosts import operations as host_ops
from hosts.models import Host
from instances import operations as ops
from instances.fleet import Filters, FleetRow, gather
from instances.views.actions import action_words, run_action
from jobs.models import Job, JobState
from jobs.reconcile import now_and_then
from jobs.views import as_json
from virt import lifecycle
from webkvm import permissions
from webkvm.models import VMPermission
from webkvm.operations import ADMIN, LOGIN, OWNER, by_method, page

# --- hosts --------------------------------------------------------------------------------------------

class HostOut(Serializer):
    name = serializers.CharField()
    transport = serializers.CharField()
    hostname = serializers.CharField()
    port = serializers.IntegerField(allow_null=True)
    grants_suspended = serializers.BooleanField()


class HostList(ApiView):
    pagination_class = LimitOffsetPagination  # the schema describes the pages
    access = by_method(GET=page(ADMIN), POST=host_ops.CREATE)

    @extend_schema(responses=HostOut(many=True), operation_id="hosts_list", summary="Hosts (admins)")
    def get(self, request: Request) -> Response:
        hosts = Host.objects.order_by("name")
        paginator = LimitOffsetPagination()
        chosen = paginator.paginate_queryset(hosts, request, view=self) or []
        return paginator.get_paginated_response([_host(h) for h in chosen])

    @extend_schema(summary="Add a host over any transport (ssh: its host keys are shown first, then accepted)",
                   operation_id="host_create", request=host_api.HostIn,
                   responses={201: host_api.HostRecordOut, 400: host_api.KeysToConfirm})
    def post(self, request: Request) -> Response:
        return host_api.create(request)


def _host(host: Host) -> dict[str, Any]:
    # Never a credential: SASL passwords and pinned keys stay out of the API.
    return {"name": host.name, "transport": host.transport, "hostname": host.hostname, "port": host.port,
            "grants_suspended": permissions.suspended(host)}


# --- VMs ----------------------------------------------------------------------------------------------

class VMOut(Serializer):
    host = serializers.CharField()
    uuid = serializers.UUIDField()
    name = serializers.CharField()
    state = serializers.CharField()
    vcpus = serializers.IntegerField()
    memory_kib = serializers.IntegerField()
    max_memory_kib = serializers.IntegerField()
    cpu_percent = serializers.FloatField(allow_null=True)
    autostart = serializers.BooleanField()
    managed_save = serializers.BooleanField()
    state_since = serializers.FloatField(allow_null=True, help_text="epoch seconds")
    permissions = serializers.ListField(child=serializers.CharField(), help_text="your grants on it")
    url = serializers.URLField()


class Unreachable(Serializer):
    host = serializers.CharField()
    reason = serializers.CharField()


class VMPage(Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = VMOut(many=True)
    unreachable = Unreachable(many=True)


def _vm(request: Request, item: FleetRow, grants: dict[tuple[int, str], frozenset[str]] | None) -> dict[str, Any]:
    row = item.row
    held = ([p.value for p in VMPermission] if grants is None
            else sorted(grants.get((item.host.pk, row.uuid.lower()), frozenset())))
    return {"host": item.host.name, "uuid": row.uuid, "name": row.name, "state": row.state, "vcpus": row.vcpus,
            "memory_kib": row.memory_kib, "max_memory_kib": row.max_memory_kib, "cpu_percent": row.cpu_percent,
            "autostart": row.autostart, "managed_save": row.managed_save, "state_since": row.state_since,
            "permissions": held,
            "url": request.build_absolute_uri(reverse("api:vm", args=[item.host.name, row.uuid]))}


class VMList(ApiView):
    access = page(LOGIN)  # anybody authenticated: the list holds only what they may see

    @extend_schema(summary="VMs across hosts (those you may see)", parameters=[
        OpenApiParameter("host", str, description="only this host's VMs"),
        OpenApiParameter("state", str, description="e.g. running, shut off"),
        OpenApiParameter("q", str, description="part of the name or UUID"),
        OpenApiParameter("sort", str, description="name, host, state, vcpus, memory or cpu; -name for descending"),
    ], responses=VMPage, operation_id="vms_list")
    def get(self, request: Request) -> Response:
        # The fleet view's own read: the same shared per-host reads, grants and filters.
        fleet = gather(request.user, Filters.from_query(request.query_params))
        grants = permissions.grants_by_vm(request.user)
        paginator = LimitOffsetPagination()
        chosen = page_of(paginator, fleet.rows, request, self)
        response = paginator.get_paginated_response([_vm(request, item, grants) for item in chosen])
        response.data["unreachable"] = [{"host": host.name, "reason": words} for host, words in fleet.unreachable]
        return response


class VMDetail(ApiView):
    access = by_method(GET=page(VMPermission.VIEW.value, "vm"), DELETE=ops.DELETE_VM)

    @extend_schema(summary="One VM", responses=VMOut, operation_id="vm_detail")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        ref = self.ref
        fleet = gather(request.user, Filters(host=ref.host.name))
        for item in fleet.rows:
            if item.row.uuid.lower() == ref.uuid:
                return Response(_vm(request, item, permissions.grants_by_vm(request.user)))
        for unreachable, words in fleet.unreachable:
            if unreachable.pk == ref.host.pk:
                raise Conflict(_("%(host)s is %(words)s") % {"host": unreachable.name, "words": words},
                               code="host_unavailable")
        return Response({"code": "not_found", "message": _("No such VM on this host.")}, status=404)

    @extend_schema(summary="Delete the VM, with the volumes named (query parameters; the others are kept)",
                   parameters=vm_life.DELETE_PARAMETERS, responses={200: vm_life.DeletedVM}, operation_id="vm_delete")
    def delete(self, request: Request, host: str, vm: Any) -> Response:
        return vm_life.delete_vm(request, self.ref)


class ActionResult(Serializer):
    action = serializers.CharField()
    state = serializers.CharField()
    message = serializers.CharField()


class VMAction(ApiView):
    access = ops.ACTION  # the pages' own route access: each action's declared operation

    @extend_schema(summary="A power or housekeeping action on a VM", request=None, responses={200: ActionResult},
                   operation_id="vm_action",
                   parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH,
                                                enum=sorted(lifecycle.ACTIONS))])
    def post(self, request: Request, host: str, vm: Any, action: str) -> Response:
        outcome = run_action(request, self.ref, action, quiet=True)
        if not outcome.ok or outcome.value is None:
            return answer(outcome)
        state = outcome.value[1]
        words = action_words(lifecycle.ACTIONS[action])(outcome.value)
        return Response({"action": action, "state": state, "message": said(outcome, words)})


# --- jobs ---------------------------------------------------------------------------------------------

class JobOut(Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    label_ = serializers.CharField()
    summary = serializers.CharField()
    target = serializers.DictField()
    host = serializers.CharField(allow_null=True)
    state = serializers.CharField()
    active = serializers.BooleanField()
    percent = serializers.FloatField(allow_null=True)
    result = serializers.CharField()
    seconds = serializers.FloatField(allow_null=True)
    url = serializers.URLField()


class JobList(ApiView):
    pagination_class = LimitOffsetPagination  # the schema describes the pages
    access = page(LOGIN)

    @extend_schema(summary="Jobs (admins: every job; others: their own)", responses=JobOut(many=True),
                   operation_id="jobs_list",
                   parameters=[OpenApiParameter("state", str, enum=list(JobState.values)),
                               OpenApiParameter("kind", str)])
    def get(self, request: Request) -> Response:
        now_and_then()  # a job whose worker is gone reads as ended (jobs/reconcile.py)
        jobs = Job.objects.select_related("host", "owner").order_by("-pk")
        if not permissions.is_admin(request.user):
            jobs = jobs.filter(owner_id=request.user.pk)
        state, kind = request.query_params.get("state", ""), request.query_params.get("kind", "")[:64]
        if state in JobState.values:
            jobs = jobs.filter(state=state)
        if kind:
            jobs = jobs.filter(kind=kind)
        paginator = LimitOffsetPagination()
        chosen = paginator.paginate_queryset(jobs, request, view=self) or []
        return paginator.get_paginated_response([_job(request, job) for job in chosen])


def _job(request: Request, job: Job) -> dict[str, Any]:
    data = as_json(job, request.user)
    data.pop("link", None)
    data["url"] = request.build_absolute_uri(reverse("api:job", args=[job.pk]))
    return data


class JobDetail(ApiView):
    access = page(OWNER)

    @extend_schema(summary="One job (its owner or an admin)", responses=JobOut, operation_id="job_detail")
    def get(self, request: Request, job_id: int) -> Response:
        now_and_then()  # a job whose worker is gone reads as ended (jobs/reconcile.py)
        return Response(_job(request, job_or_404(request, job_id)))


