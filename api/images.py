"""The image library (admins, as on the pages): libraries (pools marked for cloud images), importing a volume of
a library as an image (format and virtual size read through libvirt), editing and deleting images.

Each change validates the page's own form (storage/forms.py) and runs the page's own function
(storage/views/images.py: the declared operation, its one audit record); see api/base.py. The upload itself is
the volume upload of api/storage.py (PUT .../pools/HOST/POOL/volumes/NAME/content) into the library's pool."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import ApiView, Done, Serializer, answer, data_of, declared, form_schema, page_of, valid
from api.storage import Problem
from hosts.models import Host
from storage import images as library
from storage import operations as ops
from storage.forms import ImageDeleteForm, ImageForm, ImageImportForm, LibraryForm
from storage.models import CloudImage, ImageLibrary
from storage.views import images as pages
from webkvm.operations import ADMIN, Operation, by_method, host_or_404, page, refused


class ImageOut(Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    host = serializers.CharField()
    pool = serializers.CharField()
    volume = serializers.CharField()
    os_id = serializers.CharField(help_text="the osinfo entry, when one was chosen")
    os_family = serializers.CharField()
    os_version = serializers.CharField()
    default_user = serializers.CharField()
    min_disk_bytes = serializers.IntegerField()
    firmware = serializers.ChoiceField(choices=["bios", "efi"])
    format = serializers.CharField(help_text="qcow2 or raw, as libvirt read it on import")
    virtual_bytes = serializers.IntegerField(help_text="the image's disk size, as libvirt read it on import")
    linked_clones = serializers.BooleanField(help_text="VMs in the image's pool may get an overlay on it")
    url = serializers.URLField()


class ImageSaved(Done, ImageOut):
    pass


class ImagePage(Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ImageOut(many=True)


class LibraryOut(Serializer):
    host = serializers.CharField()
    pool = serializers.CharField()
    library = serializers.BooleanField()
    linked_clones = serializers.BooleanField()
    url = serializers.URLField()


class LibrarySaved(Done, LibraryOut):
    pass


IMAGE_FIELDS = list(ImageForm.base_fields)
IMAGE_SCHEMA = form_schema(ImageForm, "ImageForm")
IMPORT_SCHEMA = form_schema(ImageImportForm, "ImageImport")


def _image(request: Request, image: CloudImage) -> dict[str, Any]:
    return {"id": image.pk, "name": image.name, "host": image.host.name, "pool": image.pool, "volume": image.volume,
            "os_id": image.os_id, "os_family": image.os_family, "os_version": image.os_version,
            "default_user": image.default_user, "min_disk_bytes": image.min_disk_bytes, "firmware": image.firmware,
            "format": image.format, "virtual_bytes": image.virtual_bytes, "linked_clones": image.linked_clones,
            "url": request.build_absolute_uri(reverse("api:image", args=[image.pk]))}


def _library(request: Request, host: Host, pool: str, found: ImageLibrary | None) -> dict[str, Any]:
    return {"host": host.name, "pool": pool, "library": found is not None,
            "linked_clones": bool(found and found.linked_clones),
            "url": request.build_absolute_uri(reverse("api:image-library", args=[host.name, pool]))}


def _checked(request: Request, op: Operation, host: Host, name: str, form: forms.BaseForm) -> None:
    """The form's verdict, a refusal audited as the page audits it (nothing was asked of the host)."""
    if not form.is_valid():
        refused(request, op, host=host, name=name[:255], reason=form.errors.as_text())
    valid(form)


# --- libraries --------------------------------------------------------------------------------------------

class LibraryList(ApiView):
    access = by_method(GET=page(ADMIN))

    @extend_schema(summary="Pools marked as image libraries (admins)", responses=LibraryOut(many=True),
                   operation_id="image_libraries_list")
    def get(self, request: Request) -> Response:
        return Response([_library(request, lib.host, lib.pool, lib) for lib in library.libraries()])


class Library(ApiView):
    access = by_method(GET=page(ADMIN), PUT=ops.LIBRARY_SET)

    @extend_schema(summary="Whether a pool is an image library", responses=LibraryOut,
                   operation_id="image_library_detail")
    def get(self, request: Request, host: str, pool: str) -> Response:
        found = host_or_404(host)
        return Response(_library(request, found, pool, library.library_of(found, pool)))

    @extend_schema(summary="Mark a pool as an image library (linked clones: qcow2 images, disks in this pool), "
                           "or unmark it (refused while it holds images)", operation_id="image_library_set",
                   request=form_schema(LibraryForm, "ImageLibrarySet"), responses={200: LibrarySaved, 400: Problem})
    def put(self, request: Request, host: str, pool: str) -> Response:
        found = host_or_404(host)
        marked = library.library_of(found, pool)
        pages.pool_or_none(found, pool, marked)  # the page's check: 404 for an unknown pool
        form = LibraryForm(data_of(request, LibraryForm))
        _checked(request, ops.LIBRARY_SET, found, pool, form)
        outcome = pages.set_library(request, found, pool, form, quiet=True)
        return answer(outcome, form, data=_library(request, found, pool, library.library_of(found, pool)))


# --- images -------------------------------------------------------------------------------------------------

class ImageList(ApiView):
    access = by_method(GET=page(ADMIN))

    @extend_schema(summary="Cloud images of every host (admins)", responses=ImagePage, operation_id="images_list",
                   parameters=[OpenApiParameter("host", str, description="only this host's")])
    def get(self, request: Request) -> Response:
        host_name = request.query_params.get("host")
        images = library.available_images(host_or_404(host_name) if host_name else None)
        paginator = LimitOffsetPagination()
        chosen = page_of(paginator, images, request, self)
        return paginator.get_paginated_response([_image(request, image) for image in chosen])


class ImageImport(ApiView):
    access = by_method(POST=ops.IMAGE_IMPORT)

    @extend_schema(summary="Import a volume of an image library as a cloud image: libvirt reads its format (qcow2 "
                           "or raw, no backing file) and virtual size", operation_id="image_import",
                   request=IMPORT_SCHEMA, responses={201: ImageSaved, 400: Problem})
    def post(self, request: Request, host: str, pool: str) -> Response:
        found = host_or_404(host)
        _marked, detail = pages.library_detail(found, pool)
        data = data_of(request, cast("type[forms.Form]", ImageImportForm))
        form = pages.import_form(found, detail, data)
        _checked(request, ops.IMAGE_IMPORT, found, f"{pool}/{data.get('volume', '')}", form)
        outcome = pages.import_volume(request, found, pool, form, quiet=True)
        image = outcome.value
        return answer(outcome, form, created=True, data=_image(request, image) if image is not None else None)


class Image(ApiView):
    access = by_method(GET=page(ADMIN), PUT=ops.IMAGE_UPDATE, PATCH=ops.IMAGE_UPDATE, DELETE=ops.IMAGE_DELETE)

    @extend_schema(summary="One cloud image (admins)", responses=ImageOut, operation_id="image_detail")
    def get(self, request: Request, pk: int) -> Response:
        return Response(_image(request, get_object_or_404(CloudImage.objects.select_related("host"), pk=pk)))

    def _save(self, request: Request, image: CloudImage, data: dict[str, Any]) -> Response:
        form = pages.image_form(image, data)
        _checked(request, ops.IMAGE_UPDATE, image.host, image.name, form)
        outcome = pages.update_image(request, image, form, quiet=True)
        saved = outcome.value
        return answer(outcome, form, data=_image(request, saved) if saved is not None else None)

    @extend_schema(summary="Replace what the panel says about an image (admins)", operation_id="image_update",
                   request=IMAGE_SCHEMA, responses={200: ImageSaved, 400: Problem})
    def put(self, request: Request, pk: int) -> Response:
        image = get_object_or_404(CloudImage.objects.select_related("host"), pk=pk)
        return self._save(request, image, data_of(request, ImageForm))

    @extend_schema(summary="Change some of what the panel says about an image (admins)",
                   operation_id="image_partial_update", request=IMAGE_SCHEMA, responses={200: ImageSaved, 400: Problem})
    def patch(self, request: Request, pk: int) -> Response:
        image = get_object_or_404(CloudImage.objects.select_related("host"), pk=pk)
        kept = pages.image_form(image, None).initial  # fields left out keep their values
        return self._save(request, image, {**kept, **data_of(request)})

    @extend_schema(summary="Delete an image from the library; with delete_volume, its volume too (refused while "
                           "a VM or a linked clone uses it)", operation_id="image_delete",
                   parameters=[OpenApiParameter("delete_volume", bool, description=str(
                       ImageDeleteForm.base_fields["delete_volume"].help_text))],
                   responses={200: Done, 400: Problem})
    def delete(self, request: Request, pk: int) -> Response:
        image = get_object_or_404(CloudImage.objects.select_related("host"), pk=pk)
        form = ImageDeleteForm({**request.query_params.dict(), **data_of(request, ImageDeleteForm)})
        _checked(request, ops.IMAGE_DELETE, image.host, image.name, form)
        return answer(pages.delete_image(request, image, form, quiet=True), form)


urlpatterns: list[Any] = [
    path("image-libraries/", declared(LibraryList), name="image-libraries"),
    path("image-libraries/<str:host>/<str:pool>/", declared(Library), name="image-library"),
    path("image-libraries/<str:host>/<str:pool>/images/", declared(ImageImport), name="image-import"),
    path("images/", declared(ImageList), name="images"),
    path("images/<int:pk>/", declared(Image), name="image"),
]
