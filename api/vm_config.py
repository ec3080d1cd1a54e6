"""A VM's configuration: disks, CD-ROMs, NICs, resize, boot, VNC, rename, description, XML.

Each endpoint validates the page's own form and runs the page's own function (the declared operation:
its lock and one audit record); see api/base.py."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import ApiView, Done, answer, data_of, declared, form_schema, valid
from instances import operations as ops
from instances.views import config_common
from instances.views import disks as disk_pages
from virt import disks
from virt.devices import definitions
from webkvm.operations import by_method, page
from webkvm.permissions import is_admin


class DiskOut(serializers.Serializer):
    target = serializers.CharField()
    device = serializers.CharField(help_text="disk or cdrom")
    bus = serializers.CharField()
    source = serializers.CharField(help_text="pool/volume or path; empty: no medium")
    format = serializers.CharField()
    cache = serializers.CharField()
    placement = serializers.CharField(help_text="attached, added at next boot, removed at next boot")


def _disk(row: disks.DiskRow) -> dict[str, Any]:
    return {"target": row.target, "device": row.device, "bus": row.bus, "source": row.source, "format": row.format,
            "cache": row.cache, "placement": row.placement}


class Disks(ApiView):
    access = by_method(GET=page(ops.VIEW, "vm"), POST=ops.DISK_ATTACH)

    @extend_schema(summary="A VM's disks and CD-ROM drives", responses=DiskOut(many=True), operation_id="vm_disks")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        rows = disks.disk_rows(self.ref.call(definitions))
        return Response([_disk(r) for r in rows])

    @extend_schema(summary="Attach a new or an existing volume (existing: admins)", operation_id="vm_disk_attach",
                   request=form_schema(disk_pages.AttachDiskForm, "AttachDisk"), responses={200: Done})
    def post(self, request: Request, host: str, vm: Any) -> Response:
        offer = config_common.offer(request, self.ref)
        form = disk_pages.AttachDiskForm(offer, is_admin(request.user), data_of(request, disk_pages.AttachDiskForm))
        valid(form)
        return answer(disk_pages.attach(request, self.ref, form, quiet=True), form)


class Disk(ApiView):
    access = by_method(DELETE=ops.DISK_DETACH)

    @extend_schema(summary="Detach a disk (its volume stays)", operation_id="vm_disk_detach", responses={200: Done})
    def delete(self, request: Request, host: str, vm: Any, target: str) -> Response:
        return answer(disk_pages.detach(request, self.ref, target[:disk_pages.TARGET_MAX], quiet=True))


VM = "vms/<str:host>/<uuid:vm>/"
urlpatterns: list[Any] = [
    path(VM + "disks/", declared(Disks), name="vm-disks"),
    path(VM + "disks/<str:target>/", declared(Disk), name="vm-disk"),
]
