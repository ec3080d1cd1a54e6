"""A VM's life: create, delete, clone, snapshots, the console ticket; and cancelling a job.

Each endpoint validates the page's own form and runs the page's own function after validation (the declared
operation: its lock, its one audit record, its job); see api/base.py. Creations that allocate their disk in
full, clones and a running VM's snapshots are jobs: 202 with the job's URL (GET it until `active` is false)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import path, reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import (
    Accepted,
    ApiView,
    Done,
    Serializer,
    accepted,
    answer,
    data_of,
    declared,
    field_errors,
    form_schema,
    job_or_404,
    page_of,
    said,
    valid,
)
from api.errors import Conflict
from console import tickets
from console import views as console_pages
from instances import operations as ops
from instances import quotas
from instances.forms_create import CUSTOM, CreateVMForm
from instances.forms_image import ImageCreateForm
from instances.lookup import VMRef
from instances.views import clone as clone_pages
from instances.views import create as create_pages
from instances.views import create_image as image_pages
from instances.views import delete as delete_pages
from instances.views import snapshots as snapshot_pages
from jobs import views as job_pages
from jobs.models import Job
from virt import snapshots
from virt.clone import preview
from virt.delete import VolumeChoiceError, delete_plan
from virt.errors import Busy
from webkvm.i18n import said as said_
from webkvm.models import VMPermission
from webkvm.operations import OWNER, by_method, host_or_404, page

CONSOLE = VMPermission.CONSOLE.value
SNAPSHOT_NAME_MAX = 255  # the page's bound too (instances/views/snapshots.py _act)


def vm_url(request: Request, host: str, vm_uuid: str) -> str:
    return request.build_absolute_uri(reverse("api:vm", args=[host, vm_uuid]))


# --- create -------------------------------------------------------------------------------------------

class CreatedVM(Serializer):
    message = serializers.CharField()
    uuid = serializers.UUIDField()
    name = serializers.CharField()
    url = serializers.URLField(help_text="the new VM's API URL")


class CreatingVM(Accepted):
    uuid = serializers.UUIDField(help_text="the UUID the new VM will have")
    vm_url = serializers.URLField(help_text="the new VM's API URL, once the job is done")


def as_the_page_posts(form: forms.Form) -> dict[str, Any]:
    """What the page's form posts when left as shown: each field's initial value; a list's first choice when
    it has none (a browser sends that one); nothing for an unticked box."""
    values: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()  # unbound: the initial value
        if value is None and isinstance(field, forms.ChoiceField) and isinstance(field.widget, forms.Select):
            value = _first_choice(field)
        if value is not None:
            values[name] = value
    return values


def _first_choice(field: forms.ChoiceField) -> Any:
    choices: list[Any] = list(field.choices)  # type: ignore[arg-type]
    for value, label in choices:
        if isinstance(label, (list, tuple)):  # a group of options
            return label[0][0] if label else None
        return value
    return None


class CreateVM(ApiView):
    access = by_method(POST=ops.CREATE)

    @extend_schema(
        summary="Create a VM on this host (admins)", operation_id="vm_create",
        description="The create page's fields; a field left out takes the value the page shows (its choice, the "
                    "first of a list, `start` ticked), so {\"name\": \"app-01\"} alone makes the VM the page "
                    "would. Sizes given (`vcpus`, `memory`, `disk_size`) without `size` mean `size: custom`. "
                    "`os`: an osinfo id (http://debian.org/debian/11) or short id (debian11) the page offers. "
                    "`host`, when given, must be the host of the URL. A VM whose new disk is allocated in "
                    "full (`disk_allocate`) is created by a job: 202 (with the UUID the VM will have); any other "
                    "in the request: 201.",
        request=form_schema(CreateVMForm, "CreateVM"), responses={201: CreatedVM, 202: CreatingVM})
    def post(self, request: Request, host: str) -> Response:
        target = host_or_404(host)
        body = data_of(request)
        if "size" not in body and any(name in body for name in ("vcpus", "memory", "disk_size")):
            body["size"] = CUSTOM  # sizes given: they are meant (the page's preselected size would ignore them)
        offer = create_pages.offer_of(request, target, str(body.get("name", ""))[:63])
        shown = create_pages.create_form(offer, initial={"host": target.name})
        short_ids = {entry.short_id: entry.id for entry in shown.os_entries.values() if entry.short_id}
        if str(body.get("os", "")) in short_ids:  # osinfo's short id (debian11) names the same entry as its URL id
            body["os"] = short_ids[str(body["os"])]
        form = create_pages.create_form(offer, {**as_the_page_posts(shown), **body}, initial={"host": target.name})
        valid(form)
        if form.cleaned_data.get("host") not in ("", target.name):
            raise ValidationError({"host": [_("The host is the one the URL names: %(host)s.") % {"host": target.name}]})
        result = create_pages.run_create(request, target, form, quiet=True)
        if isinstance(result, Job) or result is None:
            response = accepted(result, request)
            if result is not None:
                response.data.update(uuid=result.params["uuid"], vm_url=vm_url(request, target.name,
                                                                                result.params["uuid"]))
            return response
        if not result.ok or result.value is None:
            return answer(result, form)
        name, start = form.cleaned_data["name"], bool(form.cleaned_data.get("start"))
        url = vm_url(request, target.name, result.value)
        names = {"name": name, "host": target.name}
        created = (_("VM %(name)s created on %(host)s and started.") if start else
                   _("VM %(name)s created on %(host)s.")) % names
        response = answer(result, form, message=created,
                          data={"uuid": result.value, "name": name, "url": url}, created=True)
        response["Location"] = url
        return response


# --- create from a cloud image ------------------------------------------------------------------------

IMAGE_DESCRIPTION = (
    "The image page's fields; a field left out takes the value the page shows (the first image, the first flavor, "
    "the first network, DHCP, a full copy). Sizes given (`vcpus`, `memory`) without `size` mean `size: custom`. "
    "`image` is the image's id (GET /api/v1/images/...). At least one of `ssh_keys` (one public key per line) and "
    "`password` (stored only hashed in the seed) is needed. Always a job: 202 with the UUID the VM will have.")


def _image_body(request: Request) -> dict[str, Any]:
    body = data_of(request)
    if "size" not in body and any(name in body for name in ("vcpus", "memory")):
        body["size"] = CUSTOM
    return body


def _create_from_image(request: Request, target: Any, body: dict[str, Any], op: Any, own: bool) -> Response:
    offer = image_pages.offer_of(target)
    shown = image_pages.image_form(request, target, offer, own=own)
    form = image_pages.image_form(request, target, offer, {**as_the_page_posts(shown), **body}, own=own)
    valid(form)
    job = image_pages.run_create_image(request, target, form, op, quiet=True)
    if job is None:
        raise ValidationError(field_errors(form))
    response = accepted(job, request)
    response.data.update(uuid=job.params["uuid"], vm_url=vm_url(request, target.name, job.params["uuid"]))
    return response


class CreateVMFromImage(ApiView):
    access = by_method(POST=ops.CREATE_FROM_IMAGE)

    @extend_schema(summary="Create a VM from a cloud image with cloud-init (admins): a job",
                   operation_id="vm_create_from_image", description=IMAGE_DESCRIPTION,
                   request=form_schema(ImageCreateForm, "CreateVMFromImage"), responses={202: CreatingVM})
    def post(self, request: Request, host: str) -> Response:
        return _create_from_image(request, host_or_404(host), _image_body(request), ops.CREATE_FROM_IMAGE, False)


class CreateOwnVM(ApiView):
    access = by_method(POST=ops.CREATE_OWN)

    @extend_schema(summary="Create your own VM from a cloud image, within your quota: a job",
                   operation_id="vm_create_own", description=IMAGE_DESCRIPTION + " `host`: a host your quota "
                   "allows (default: the first). Over quota: 400 with what is left ('2 of 4 vCPUs left'), nothing "
                   "made. You become the VM's owner with every grant on it.",
                   request=form_schema(ImageCreateForm, "CreateOwnVM", host=serializers.CharField(required=False)),
                   responses={202: CreatingVM})
    def post(self, request: Request) -> Response:
        if quotas.limits_for(request.user) is None:
            raise ValidationError({"non_field_errors": [said_(quotas.left(request.user))]})
        body = _image_body(request)
        hosts = list(quotas.allowed(request.user).hosts.order_by("name"))
        asked = str(body.pop("host", "") or "")
        target = next((h for h in hosts if h.name == asked or not asked), None)
        if target is None:
            raise ValidationError({"host": [_("Not a host your quota allows.") if asked else
                                            _("Your quota allows no host yet.")]})
        return _create_from_image(request, target, body, ops.CREATE_OWN, True)


# --- delete (the handler of api.views.VMDetail) -----------------------------------------------------------

class DeletedVM(Serializer):
    message = serializers.CharField()
    deleted = serializers.ListField(child=serializers.CharField(), help_text="volumes deleted")
    failed = serializers.ListField(child=serializers.DictField(), help_text="volumes NOT deleted: volume, why")
    forced_off = serializers.BooleanField()


DELETE_PARAMETERS = [
    OpenApiParameter("volume", str, many=True, description=(
        "a volume to delete with the VM: its key from GET .../delete-plan/ (repeat the parameter for several); "
        "every volume not named is kept")),
    OpenApiParameter("force_off", bool, description="a running VM is forced off first (else: 409)"),
]


def delete_vm(request: Request, ref: VMRef) -> Response:
    """DELETE on a VM: the page's choice of volumes (query parameters: a body on DELETE is not sent by every
    client), then the page's own deletion."""
    keys = request.query_params.getlist("volume")
    force_off = request.query_params.get("force_off", "").lower() in ("1", "true", "yes", "on")
    outcome = delete_pages.delete_vm_and_volumes(request, ref, keys, force_off=force_off, quiet=True)
    if isinstance(outcome.exception, VolumeChoiceError):
        raise ValidationError({"volume": [outcome.error]})
    if not outcome.ok or outcome.value is None:
        return answer(outcome)
    report = outcome.value
    return answer(outcome, message=delete_pages.report_text(report), data={
        "deleted": report.deleted, "failed": [{"volume": vol, "why": why} for vol, why in report.failed],
        "forced_off": report.forced_off})


class PlannedVolume(Serializer):
    target = serializers.CharField()
    device = serializers.CharField()
    source_ = serializers.CharField()
    key = serializers.CharField(help_text="what DELETE's `volume` names; empty: not a volume of a pool")
    deletable = serializers.BooleanField(help_text="false: a CD-ROM, a volume another VM uses, not a pool's")


class DeletePlan(Serializer):
    name = serializers.CharField()
    running = serializers.BooleanField()
    volumes = PlannedVolume(many=True)


class VMDeletePlan(ApiView):
    access = by_method(GET=page(ops.DELETE, "vm"))  # the delete page's confirmation: the delete grant

    @extend_schema(summary="What deleting the VM would delete: its volumes and their keys", responses=DeletePlan,
                   operation_id="vm_delete_plan")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        plan = self.ref.call(delete_plan)
        # Which other VMs share a volume is not said: the caller may not see them.
        return Response({"name": plan.name, "running": plan.running, "volumes": [
            {"target": v.target, "device": v.device, "source": v.label, "key": v.key, "deletable": v.deletable}
            for v in plan.volumes]})


# --- clone --------------------------------------------------------------------------------------------

class CloneVM(ApiView):
    access = by_method(POST=ops.CLONE)

    @extend_schema(summary="Clone a shut-off VM (admins): a job", operation_id="vm_clone",
                   request=form_schema(clone_pages.CloneForm, "CloneVM"), responses={202: Accepted})
    def post(self, request: Request, host: str, vm: Any) -> Response:
        ref = self.ref
        info = ref.call(preview, clone_pages.PLAN_TIMEOUT)
        form = clone_pages.CloneForm(info.taken_names, data_of(request, clone_pages.CloneForm))
        valid(form)
        return accepted(clone_pages.start_clone(request, ref, form, info.name, quiet=True), request)


# --- snapshots ----------------------------------------------------------------------------------------

class SnapshotOut(Serializer):
    name = serializers.CharField()
    created = serializers.IntegerField(help_text="epoch seconds")
    state = serializers.CharField(help_text="the VM's state when it was taken")
    description = serializers.CharField()
    current = serializers.BooleanField()
    parent_ = serializers.CharField()
    with_memory = serializers.BooleanField()


class SnapshotPage(Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = SnapshotOut(many=True)


class SnapshotTaken(SnapshotOut):
    message = serializers.CharField()


def _snapshot(info: snapshots.SnapshotInfo) -> dict[str, Any]:
    return {"name": info.name, "created": info.created, "state": info.state, "description": info.description,
            "current": info.current, "parent": info.parent, "with_memory": info.with_memory}


class Snapshots(ApiView):
    access = by_method(GET=page(ops.VIEW, "vm"), POST=ops.SNAPSHOT_CREATE)

    @extend_schema(summary="A VM's snapshots, newest first", responses=SnapshotPage, operation_id="vm_snapshots")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        rows = self.ref.call(snapshots.list_snapshots)
        paginator = LimitOffsetPagination()
        chosen = page_of(paginator, rows, request, self)
        return paginator.get_paginated_response([_snapshot(info) for info in chosen])

    @extend_schema(summary="Take a snapshot: a running VM's (with its memory) is a job (202); a shut-off VM's is "
                           "taken in the request (201)", operation_id="vm_snapshot_create",
                   request=form_schema(snapshot_pages.SnapshotForm, "TakeSnapshot"),
                   responses={201: SnapshotTaken, 202: Accepted})
    def post(self, request: Request, host: str, vm: Any) -> Response:
        state = snapshot_pages.vm_for_snapshot(request, self.ref)
        form = snapshot_pages.SnapshotForm({s.name for s in state["snapshots"]},
                                           data_of(request, snapshot_pages.SnapshotForm))
        valid(form)
        taken = snapshot_pages.take_snapshot(request, self.ref, state, form, quiet=True)
        if isinstance(taken, Job) or taken is None:
            return accepted(taken, request)
        if not taken.ok or taken.value is None:
            return answer(taken, form)
        info = taken.value
        return answer(taken, form, message=said(taken, snapshot_pages.taken_words(info)), data=_snapshot(info),
                      created=True)


def _snapshot_name(name: str) -> str:
    if len(name) > SNAPSHOT_NAME_MAX:
        raise NotFound(_("No such snapshot."))
    return name


class Snapshot(ApiView):
    access = by_method(DELETE=ops.SNAPSHOT_DELETE)

    @extend_schema(summary="Delete a snapshot (the VM is not touched)", operation_id="vm_snapshot_delete",
                   responses={200: Done})
    def delete(self, request: Request, host: str, vm: Any, name: str) -> Response:
        outcome = snapshot_pages.delete_snapshot(request, self.ref, _snapshot_name(name), quiet=True)
        return answer(outcome, message=_("%(vm)s: snapshot %(name)s deleted.") % {"vm": outcome.name, "name": name})


class RevertedVM(Serializer):
    message = serializers.CharField()
    state = serializers.CharField(help_text="the VM's state afterwards")


class SnapshotRevert(ApiView):
    access = by_method(POST=ops.SNAPSHOT_REVERT)

    @extend_schema(summary="Revert the VM to a snapshot (whatever changed since is lost): to one that holds memory "
                           "as a job (202); to a disk-only one in the request (200)", request=None,
                   operation_id="vm_snapshot_revert", responses={200: RevertedVM, 202: Accepted})
    def post(self, request: Request, host: str, vm: Any, name: str) -> Response:
        reverted = snapshot_pages.revert_snapshot(request, self.ref, _snapshot_name(name), quiet=True)
        if isinstance(reverted, Job) or reverted is None:
            return accepted(reverted, request)
        return answer(reverted, message=_("%(vm)s: back to snapshot %(name)s.") % {"vm": reverted.name, "name": name},
                      data={"state": reverted.value})


# --- the console ticket -------------------------------------------------------------------------------

class TicketIn(Serializer):
    console = serializers.ChoiceField(choices=sorted(console_pages.WS_PATHS), required=False, default="vnc",
                                      help_text="the console the ticket opens: vnc (noVNC's, the default) or serial")


class TicketOut(Serializer):
    ticket = serializers.CharField(help_text="single use, for this VM and this kind, bound to how you asked for it: "
                                             "your API token, or your login session")
    expires_in = serializers.IntegerField(help_text="seconds to open the WebSocket with it")
    protocols = serializers.ListField(child=serializers.CharField(),
                                      help_text="the WebSocket subprotocols to offer (the ticket travels in one)")
    ws_path = serializers.CharField()
    ws_url = serializers.CharField()
    bound_to = serializers.ChoiceField(choices=["token", "session"],
                                       help_text="token: the WebSocket opens only with this same API token")
    ws_headers = serializers.DictField(child=serializers.CharField(),
                                       help_text="headers to send on the WebSocket handshake (a token caller: "
                                                 "Authorization with the same token; no Origin, or the panel's)")


class ConsoleTicket(ApiView):
    access = by_method(POST=page(CONSOLE, "vm"))  # the console pages' own access (console/views.py ticket)

    @extend_schema(summary="A one-time console ticket and the console's WebSocket URL", request=TicketIn,
                   operation_id="vm_console_ticket", responses={200: TicketOut},
                   description="As the console pages ask for it. Open `ws_url` within `expires_in` seconds, offering "
                               "`protocols` as WebSocket subprotocols. A ticket asked for with an API token is bound "
                               "to that token: the handshake must send `Authorization: Bearer` with the same token "
                               "(and no Origin, or the panel's own); one asked for with the panel's session needs "
                               "that session's cookie. Read-only tokens get none (opening a console is not a read).")
    def post(self, request: Request, host: str, vm: Any) -> Response:
        kind = data_of(request).get("console", "vnc")
        if kind not in console_pages.WS_PATHS:
            choices = ", ".join(sorted(console_pages.WS_PATHS))
            raise ValidationError({"console": [_("One of: %(choices)s.") % {"choices": choices}]})
        try:
            granted = console_pages.grant(request, self.ref, kind)
        except tickets.Refused as exc:  # a read-only token, or a session without a key: nothing to bind to
            raise PermissionDenied(said_(exc), code="console_refused") from None
        scheme = "wss" if request.is_secure() else "ws"
        by_token = tickets.api_token_of(request) is not None
        return Response({**granted, "ws_url": f"{scheme}://{request.get_host()}{granted['ws_path']}",
                         "bound_to": "token" if by_token else "session",
                         # The token itself is not echoed: the caller has it, and answers end up in logs.
                         "ws_headers": {"Authorization": "Bearer <this same API token>"} if by_token else {}})


# --- cancelling a job ---------------------------------------------------------------------------------

class Cancelled(Serializer):
    message = serializers.CharField()
    job = serializers.IntegerField()
    state = serializers.CharField()
    url = serializers.URLField()


class JobCancel(ApiView):
    access = by_method(POST=page(OWNER))  # the job's owner or an admin, as the page (jobs.views._job_or_403)

    @extend_schema(summary="Cancel a job (its owner or an admin)", request=None, operation_id="job_cancel",
                   responses={200: Cancelled, 202: Cancelled},
                   description="A queued job is cancelled at once (200); a running one of a kind that can stop is "
                               "asked to stop at its next step (202: follow the job). 409 when it has ended or "
                               "cannot be stopped once it runs.")
    def post(self, request: Request, job_id: int) -> Response:
        job = job_or_404(request, job_id)
        if not job.active:
            raise Conflict(_("The job has already ended (%(state)s).") % {"state": job.get_state_display()},
                           code="invalid_state")
        try:
            words = job_pages.cancel(request, job)
        except Busy as exc:
            raise Conflict(said_(exc), code="invalid_state") from None
        job.refresh_from_db()
        url = request.build_absolute_uri(reverse("api:job", args=[job.pk]))
        return Response({"message": words, "job": job.pk, "state": job.state, "url": url},
                        status=status.HTTP_202_ACCEPTED if job.active else status.HTTP_200_OK)


VM = "vms/<str:host>/<uuid:vm>/"
urlpatterns: list[Any] = [
    path("vms/<str:host>/", declared(CreateVM), name="vm-create"),
    path("vms/<str:host>/from-image/", declared(CreateVMFromImage), name="vm-create-from-image"),
    path("self-service/vms/", declared(CreateOwnVM), name="vm-create-own"),
    path(VM + "delete-plan/", declared(VMDeletePlan), name="vm-delete-plan"),
    path(VM + "clone/", declared(CloneVM), name="vm-clone"),
    path(VM + "snapshots/", declared(Snapshots), name="vm-snapshots"),
    path(VM + "snapshots/<str:name>/", declared(Snapshot), name="vm-snapshot"),
    path(VM + "snapshots/<str:name>/revert/", declared(SnapshotRevert), name="vm-snapshot-revert"),
    path(VM + "console/ticket/", declared(ConsoleTicket), name="vm-console-ticket"),
    path("jobs/<int:job_id>/cancel/", declared(JobCancel), name="job-cancel"),
]
