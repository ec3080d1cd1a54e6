"""Storage pools and volumes (admins, as on the pages), with streamed upload and download.

Each change validates the page's own form and runs the page's own function (storage/views: the declared
operation of storage/operations.py, its one audit record); clone, wipe and a volume created with its space
allocated now are jobs (202). A volume's content
goes through the pages' streaming path (storage/asgi.py under ASGI, storage/views/transfer.py under WSGI).
Pools are the panel's admin matter: users who are not admins reach none here (403); what an admin opened
to them (webkvm/sharing.py) they choose from where a VM offers it (its disks, its CD-ROM)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.urls import path, reverse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import (
    Accepted,
    ApiView,
    Done,
    Field,
    Serializer,
    accepted,
    answer,
    data_of,
    declared,
    form_schema,
    page_of,
    valid,
)
from hosts import services
from hosts.models import Host
from jobs.models import Job
from storage import operations as ops
from storage.forms import POOL_FIELDS, CloneForm, PoolDeleteForm, PoolForm, ResizeForm, VolumeForm
from storage.transfers import open_upload
from storage.views import pools as pool_pages
from storage.views import transfer as transfer_pages
from storage.views import volumes as volume_pages
from storage.views.common import LIST_TIMEOUT
from virt.reads import POOLS
from virt.storage import ACTIONS as POOL_ACTIONS
from virt.storage import POOL_TYPES, PoolSummary
from virt.volumes import VolumeInfo
from webkvm.operations import ADMIN, Operation, by_method, host_or_404, page, refused

# --- what is answered ----------------------------------------------------------------------------


class PoolOut(Serializer):
    name = serializers.CharField()
    uuid = serializers.CharField()
    type = serializers.CharField(help_text="dir, netfs, logical, iscsi, rbd, disk...")
    state = serializers.CharField(help_text="active or inactive")
    autostart = serializers.BooleanField()
    persistent = serializers.BooleanField()
    capacity = serializers.IntegerField(help_text="bytes")
    allocation = serializers.IntegerField(help_text="bytes")
    available = serializers.IntegerField(help_text="bytes")
    target_path = serializers.CharField()
    source_ = serializers.CharField(help_text="where the data lives, in words")
    url = serializers.URLField()


class VolumeOut(Serializer):
    name = serializers.CharField()
    key = serializers.CharField()
    path = serializers.CharField()
    type = serializers.CharField()
    format = serializers.CharField()
    capacity = serializers.IntegerField(help_text="bytes")
    allocation = serializers.IntegerField(help_text="bytes")
    physical = serializers.IntegerField(allow_null=True, help_text="bytes a download delivers, when known")
    backing_path = serializers.CharField()
    used_by = serializers.ListField(child=serializers.CharField(), help_text="VMs using it")
    backing_for = serializers.ListField(child=serializers.CharField(), help_text="volumes built on it")
    url = serializers.URLField()
    content = serializers.URLField(help_text="GET: download it")


class PoolPage(Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = PoolOut(many=True)


class PoolDetailOut(Serializer):
    pool = PoolOut()
    users = serializers.ListField(child=serializers.CharField(), help_text="every VM using a volume of the pool")
    count = serializers.IntegerField(help_text="volumes (none while the pool is inactive)")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = VolumeOut(many=True)


class Created(Done):
    url = serializers.URLField(help_text="the new object's API URL")


class Uploaded(Created):
    pool = serializers.CharField()
    volume = serializers.CharField()
    bytes = serializers.IntegerField()
    seconds = serializers.FloatField()
    rate = serializers.IntegerField(help_text="bytes per second")


class Problem(Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields_ = serializers.DictField(required=False, help_text="per field, its errors (code invalid)")


def _url(request: Request | HttpRequest, name: str, *args: str) -> str:
    return request.build_absolute_uri(reverse(f"api:{name}", args=list(args)))


def _pool(request: Request, host: Host, pool: PoolSummary) -> dict[str, Any]:
    return {"name": pool.name, "uuid": pool.uuid, "type": pool.type, "state": pool.state,
            "autostart": pool.autostart, "persistent": pool.persistent, "capacity": pool.capacity,
            "allocation": pool.allocation, "available": pool.available, "target_path": pool.target_path,
            "source": pool.source, "url": _url(request, "pool", host.name, pool.name)}


def _volume(request: Request, host: Host, pool: str, volume: VolumeInfo) -> dict[str, Any]:
    return {"name": volume.name, "key": volume.key, "path": volume.path, "type": volume.type,
            "format": volume.format, "capacity": volume.capacity, "allocation": volume.allocation,
            "physical": volume.physical, "backing_path": volume.backing_path, "used_by": list(volume.used_by),
            "backing_for": list(volume.backing_for), "url": _url(request, "volume", host.name, pool, volume.name),
            "content": _url(request, "volume-content", host.name, pool, volume.name)}


def _checked(request: Request, op: Operation, host: Host, name: str, form: forms.BaseForm) -> None:
    """The form's verdict, a refusal audited as the page audits it (nothing was asked of the host)."""
    if not form.is_valid():
        refused(request, op, host=host, name=name[:255], reason=form.errors.as_text())
    valid(form)


def _with_initial(form: forms.BaseForm, data: dict[str, Any]) -> dict[str, Any]:
    """`data` over what the page's form preselects for this object (a pool type's build box, a copy's name)."""
    return {**{k: v for k, v in form.initial.items() if v is not None}, **data}


# --- pools --------------------------------------------------------------------------------------

def _described_pool_fields() -> dict[str, Field]:
    """Each type asks for some of the fields (storage.forms.POOL_FIELDS): say which, none required but name."""
    used: dict[str, list[str]] = {}
    for kind, names in POOL_FIELDS.items():
        for name in names:
            used.setdefault(name, []).append(kind)
    described: dict[str, Field] = {}
    for name, field in PoolForm.base_fields.items():
        if name == "name" or isinstance(field, forms.BooleanField):
            continue
        words = f"{field.label or name}; types {', '.join(used.get(name, []))}"
        described[name] = serializers.CharField(required=False, help_text=words)
    return described


PoolCreate = form_schema(PoolForm, "PoolCreate", kind=serializers.ChoiceField(choices=sorted(POOL_TYPES)),
                         **_described_pool_fields())


class PoolList(ApiView):
    access = by_method(GET=page(ADMIN), POST=ops.POOL_CREATE)

    @extend_schema(summary="A host's storage pools (admins)", responses=PoolPage, operation_id="pools_list")
    def get(self, request: Request, host: str) -> Response:
        found = host_or_404(host)
        listed = services.read(found, POOLS, LIST_TIMEOUT)  # the page's own shared read
        paginator = LimitOffsetPagination()
        chosen = page_of(paginator, listed, request, self)
        return paginator.get_paginated_response([_pool(request, found, p) for p in chosen])

    @extend_schema(summary="Create a pool of a type (the page's form; fields per type)", operation_id="pool_create",
                   request=PoolCreate, responses={201: Created, 400: Problem})
    def post(self, request: Request, host: str) -> Response:
        found = host_or_404(host)
        data = data_of(request, PoolForm)
        kind = str(data.pop("kind", "") or "")
        if kind not in POOL_TYPES:
            raise ValidationError({"kind": [_("One of: %(choices)s.") % {"choices": ", ".join(sorted(POOL_TYPES))}]})
        roots = settings.WEBKVM_POOL_ROOTS
        secrets, _why_none = pool_pages.secrets_for(found, kind)
        form = PoolForm(kind, roots, secrets, _with_initial(PoolForm(kind, roots, secrets), data))
        _checked(request, ops.POOL_CREATE, found, str(data.get("name", "")), form)
        outcome = pool_pages.create_pool(request, found, form, quiet=True)
        return answer(outcome, form, created=True, data={"url": _url(request, "pool", found.name, outcome.name)})


class Pool(ApiView):
    access = by_method(GET=page(ADMIN), DELETE=ops.POOL_DELETE)

    @extend_schema(summary="A pool and its volumes (volumes paginated)", responses=PoolDetailOut,
                   operation_id="pool_detail")
    def get(self, request: Request, host: str, pool: str) -> Response:
        found = host_or_404(host)
        detail = pool_pages.detail_or_404(found, pool)
        paginator = LimitOffsetPagination()
        chosen = page_of(paginator, list(detail.volumes), request, self)
        response = paginator.get_paginated_response([_volume(request, found, pool, v) for v in chosen])
        response.data["pool"] = _pool(request, found, detail.pool)
        response.data["users"] = list(detail.users)
        return response

    @extend_schema(summary="Delete a pool: its definition, and its storage when asked", operation_id="pool_delete",
                   parameters=[
                       OpenApiParameter("delete_storage", bool, description=str(
                           PoolDeleteForm.base_fields["delete_storage"].help_text)),
                       OpenApiParameter("confirm_in_use", bool, description="needed while VMs use its volumes "
                                                                            "(the error names them)")],
                   responses={200: Done, 400: Problem})
    def delete(self, request: Request, host: str, pool: str) -> Response:
        found = host_or_404(host)
        detail = pool_pages.detail_or_404(found, pool, thorough=True)  # the page's read: which VMs use it
        data = {**request.query_params.dict(), **data_of(request, PoolDeleteForm)}
        form = PoolDeleteForm(detail, data)
        _checked(request, ops.POOL_DELETE, found, pool, form)
        return answer(pool_pages.remove_pool(request, found, pool, form, quiet=True), form)


class PoolAction(ApiView):
    access = ops.POOL_ACTION  # the page's own route access: each action's declared operation

    @extend_schema(summary="Start, stop, build, refresh a pool or set its autostart", request=None,
                   responses={200: Done}, operation_id="pool_action",
                   parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH, enum=sorted(POOL_ACTIONS))])
    def post(self, request: Request, host: str, pool: str, action: str) -> Response:
        # The check (ApiView.initial) answered 404 for an unknown action.
        return answer(pool_pages.run_pool_action(request, host_or_404(host), pool, action, quiet=True))


# --- volumes ------------------------------------------------------------------------------------

class Volumes(ApiView):
    access = by_method(POST=ops.VOLUME_CREATE)

    @extend_schema(summary="Create a volume (a copy-on-write overlay with `backing`); with `preallocate`, as a job "
                           "(202)", operation_id="volume_create",
                   description="A sparse volume is made in the request (201). One whose space is allocated now "
                               "(`preallocate`: a raw volume's every byte is written) is a job: 202 with the job's "
                               "URL; the volume is there once the job is done.",
                   request=form_schema(VolumeForm, "VolumeCreate"),
                   responses={201: Created, 202: Accepted, 400: Problem})
    def post(self, request: Request, host: str, pool: str) -> Response:
        found = host_or_404(host)
        detail = pool_pages.detail_or_404(found, pool)
        data = data_of(request, VolumeForm)
        form = volume_pages.volume_form(detail, data)
        _checked(request, ops.VOLUME_CREATE, found, f"{pool}/{data.get('name', '')}", form)
        made = volume_pages.create_volume_in(request, found, form, quiet=True)
        if made is None or isinstance(made, Job):
            return accepted(made, request)
        name = str(form.cleaned_data["name"])
        return answer(made, form, created=True, data={"url": _url(request, "volume", found.name, pool, name)})


class Volume(ApiView):
    access = by_method(GET=page(ADMIN), PATCH=ops.VOLUME_RESIZE, DELETE=ops.VOLUME_DELETE)

    @extend_schema(summary="One volume", responses=VolumeOut, operation_id="volume_detail")
    def get(self, request: Request, host: str, pool: str, volume: str) -> Response:
        found = host_or_404(host)
        detail = pool_pages.detail_or_404(found, pool)
        return Response(_volume(request, found, pool, volume_pages.volume_or_404(detail, volume)))

    @extend_schema(summary="Grow a volume (volumes only grow)", operation_id="volume_resize",
                   request=form_schema(ResizeForm, "VolumeResize"), responses={200: Done, 400: Problem})
    def patch(self, request: Request, host: str, pool: str, volume: str) -> Response:
        found = host_or_404(host)
        detail = pool_pages.detail_or_404(found, pool)
        form = ResizeForm(detail.pool, volume_pages.volume_or_404(detail, volume), data_of(request, ResizeForm))
        _checked(request, ops.VOLUME_RESIZE, found, f"{pool}/{volume}", form)
        return answer(volume_pages.grow_volume(request, found, form, quiet=True), form)

    @extend_schema(summary="Delete a volume (refused while a VM or another volume uses it: 409)",
                   operation_id="volume_delete", responses={200: Done, 409: Problem})
    def delete(self, request: Request, host: str, pool: str, volume: str) -> Response:
        return answer(volume_pages.remove_volume(request, host_or_404(host), pool, volume, quiet=True))


class VolumeClone(ApiView):
    access = by_method(POST=ops.VOLUME_CLONE)

    @extend_schema(summary="Copy a volume in its pool, as a job", operation_id="volume_clone",
                   request=form_schema(CloneForm, "VolumeClone"), responses={202: Accepted, 400: Problem})
    def post(self, request: Request, host: str, pool: str, volume: str) -> Response:
        found = host_or_404(host)
        detail = pool_pages.detail_or_404(found, pool)
        source = volume_pages.volume_or_404(detail, volume)
        form = CloneForm(detail, source, _with_initial(CloneForm(detail, source), data_of(request, CloneForm)))
        _checked(request, ops.VOLUME_CLONE, found, f"{pool}/{volume}", form)
        return accepted(volume_pages.start_clone(request, found, form, quiet=True), request)


class VolumeWipe(ApiView):
    access = by_method(POST=ops.VOLUME_WIPE)

    @extend_schema(summary="Overwrite a volume with zeros, as a job", operation_id="volume_wipe", request=None,
                   responses={202: Accepted, 409: Problem}, description=ops.VOLUME_WIPE.confirm)
    def post(self, request: Request, host: str, pool: str, volume: str) -> Response:
        found = host_or_404(host)
        volume_pages.volume_or_404(pool_pages.detail_or_404(found, pool), volume)
        return accepted(volume_pages.start_wipe(request, found, pool, volume, quiet=True), request)


# --- a volume's content: streamed ---------------------------------------------------------------

_TRANSFERS = """Streamed through libvirt: the panel holds a few MiB of it at a time, whatever the size.

Upload (PUT): the body is the file, sent whole with `Content-Length` (411, code `invalid`, without it; no
chunked encoding) and any `Content-Type`; it becomes the new volume this URL names (raw bytes, e.g. an ISO
or a raw image), in an active pool with room for it (400 with field errors otherwise, before a byte is
read). There are no ranges and no partial uploads: an upload that ends short, sends more than announced,
stalls or fails leaves no volume behind (the partial volume is deleted; 400 `upload_interrupted` when the
caller is still listening). To resume, start again from the first byte with the same name. Read-only
tokens may download but not upload. Example: `curl -T disk.iso -H "Authorization: Bearer $TOKEN" URL`.

Download (GET): the volume's bytes as `application/octet-stream` with `Content-Length` (the file's size)
and a Content-Disposition naming it; no ranges: a failed download is restarted from the beginning."""
TRANSFERS = "\n\n".join(" ".join(paragraph.split()) for paragraph in _TRANSFERS.split("\n\n"))  # unwrapped


class PassThrough(BaseContentNegotiation):
    """The content route answers bytes or JSON whatever the caller accepts (REST framework would say 406
    to `Accept: application/octet-stream`)."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return None  # the body is never parsed: it is streamed

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        renderer: BaseRenderer = renderers[0]
        return renderer, renderer.media_type


class VolumeContent(ApiView):
    """Under ASGI (the panel's server) storage/asgi.py serves GET and PUT of this URL before Django reads the
    body, with the same checks; this view serves it under WSGI (tests, the development server)."""

    access = by_method(GET=ops.VOLUME_DOWNLOAD, PUT=ops.VOLUME_UPLOAD)
    content_negotiation_class = PassThrough

    @extend_schema(summary="Download a volume (streamed)", operation_id="volume_download", description=TRANSFERS,
                   responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: Problem})
    def get(self, request: Request, host: str, pool: str, volume: str) -> HttpResponseBase:
        return transfer_pages.download_response(request._request, host, pool, volume)

    @extend_schema(summary="Upload a file as a new volume (streamed)", operation_id="volume_upload",
                   description=TRANSFERS, request={"application/octet-stream": OpenApiTypes.BINARY},
                   responses={201: Uploaded, 400: Problem, 409: Problem, 411: Problem})
    def put(self, request: Request, host: str, pool: str, volume: str) -> HttpResponseBase:
        session = open_upload(request._request, host, pool, volume)
        if isinstance(session, HttpResponseBase):
            return session
        return transfer_pages.receive_upload(request._request, session)


POOL = "pools/<str:host>/<str:pool>/"
VOLUME = POOL + "volumes/<str:volume>/"
urlpatterns: list[Any] = [
    path("pools/<str:host>/", declared(PoolList), name="pools"),
    path(POOL, declared(Pool), name="pool"),
    path(POOL + "actions/<str:action>/", declared(PoolAction), name="pool-action"),
    path(POOL + "volumes/", declared(Volumes), name="volumes"),
    path(VOLUME, declared(Volume), name="volume"),
    path(VOLUME + "clone/", declared(VolumeClone), name="volume-clone"),
    path(VOLUME + "wipe/", declared(VolumeWipe), name="volume-wipe"),
    # No trailing slash: `curl -T FILE URL/` would append the file's name to the URL.
    path(VOLUME + "content", declared(VolumeContent), name="volume-content"),
]
