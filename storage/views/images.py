"""The image library's pages (admin only): every host's libraries and images; mark a pool as a library;
import a volume of a library as a cloud image; edit and delete images.

Each change runs through its declared operation (storage/operations.py: one audit record, one message);
input the form, the records or libvirt refuses (a raw-named-qcow2 is fine, a vmdk or an overlay is not)
is a field error, audited as refused, with nothing stored. The logic is storage/images.py; the API
(api/images.py) runs the same functions below."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from hosts import services
from hosts.models import Host
from storage import images as library
from storage import operations as ops
from storage.forms import ImageDeleteForm, ImageForm, ImageImportForm, LibraryForm
from storage.models import CloudImage, ImageLibrary
from storage.views.common import LIST_TIMEOUT
from storage.views.pools import detail_or_404
from virt.errors import NotFound, VirtError
from virt.osinfo import catalogue
from virt.reads import POOLS
from virt.storage import PoolSummary, pool_summary
from virt.volumes import PoolDetail
from virt.xml.codecs import iec
from webkvm.i18n import said
from webkvm.operations import ADMIN, Outcome, host_or_404, page, perform, refused, route
from webkvm.views_base import host_unavailable


def os_options() -> dict[str, Any]:
    """The osinfo catalogue as the image forms offer it: choices and entries by id."""
    found = catalogue()
    offered = found.offered(date.today())
    return {"os_choices": library.os_choices(found, offered), "os_entries": {e.id: e for e in offered}}


def size_text(size: int) -> str:
    """Bytes as the size field writes them, exactly: 10G, 512M, or a count of bytes."""
    for unit, letter in ((1 << 30, "G"), (1 << 20, "M")):
        if size and size % unit == 0:
            return f"{size // unit}{letter}"
    return f"{size}B"


# --- the list --------------------------------------------------------------------------------------

@require_GET
@route(page(ADMIN))
def image_list(request: HttpRequest) -> HttpResponse:
    hosts = list(Host.objects.order_by("name"))
    marked: dict[tuple[int, str], ImageLibrary] = {(lib.host_id, lib.pool): lib for lib in library.libraries()}
    images = library.available_images()
    rows = []
    for outcome in services.read_many(hosts, POOLS, LIST_TIMEOUT):
        host = outcome.host
        pools: list[PoolSummary] = list(outcome.value or []) if outcome.ok else []
        names = {p.name for p in pools}
        gone = sorted(pool for (host_id, pool) in marked if host_id == host.pk and pool not in names)
        rows.append({
            "host": host, "error": "" if outcome.ok else outcome.words,
            "pools": [(p, marked.get((host.pk, p.name))) for p in pools],
            "gone": [marked[(host.pk, pool)] for pool in gone] if outcome.ok else [],
            "images": [i for i in images if i.host_id == host.pk],
        })
    return render(request, "storage/images.html", {"rows": rows, "images": images})


# --- libraries ---------------------------------------------------------------------------------------

def pool_or_none(host: Host, pool: str, marked: ImageLibrary | None) -> PoolSummary | None:
    """The pool as libvirt has it; None when it is gone but still marked (it can then only be unmarked)."""
    try:
        return services.call(host, lambda conn: pool_summary(conn, pool), LIST_TIMEOUT)
    except NotFound:
        if marked is None:
            raise Http404(_("No such pool on this host.")) from None
        return None


@require_http_methods(["GET", "POST"])
@route(ops.LIBRARY_SET)
def library_edit(request: HttpRequest, host: str, pool: str) -> HttpResponse:
    found = host_or_404(host)
    marked = library.library_of(found, pool)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "marked": marked}
    try:
        context["pool"] = pool_or_none(found, pool, marked)
    except VirtError as exc:
        return host_unavailable(request, ops.LIBRARY_SET, "storage/images_library.html", context, pool, exc)
    initial = {"library": marked is not None, "linked_clones": bool(marked and marked.linked_clones)}
    form = LibraryForm(request.POST if request.method == "POST" else None, initial=initial)
    context["form"] = form
    if request.method != "POST":
        return render(request, "storage/images_library.html", context)
    if not form.is_valid():
        refused(request, ops.LIBRARY_SET, host=found, name=pool, reason=form.errors.as_text())
        return render(request, "storage/images_library.html", context)
    if context["pool"] is None and form.cleaned_data["library"]:
        form.add_error("library", _("Pool %(pool)s no longer exists on %(host)s: it can only be unmarked.")
                       % {"pool": pool, "host": found.name})
        refused(request, ops.LIBRARY_SET, host=found, name=pool, reason="the pool is gone")
        return render(request, "storage/images_library.html", context)
    outcome = set_library(request, found, pool, form)
    if not outcome.ok:
        return render(request, "storage/images_library.html", context)
    return redirect("storage:images")


def set_library(request: HttpRequest, host: Host, pool: str, form: LibraryForm, *,
                quiet: bool = False) -> Outcome[str]:
    """library.set of a valid form (the page and the API)."""
    data = form.cleaned_data
    outcome: Outcome[str] = perform(request, ops.LIBRARY_SET, host=host, name=pool, form=form, quiet=quiet,
                      work=lambda: library.set_library(host, pool, library=bool(data.get("library")),
                                                       linked_clones=bool(data.get("linked_clones"))),
                      done=said, detail=str)
    if outcome.field_problem:
        refused(request, ops.LIBRARY_SET, host=host, name=pool, reason=str(outcome.exception or outcome.error))
    return outcome


# --- import --------------------------------------------------------------------------------------------

def library_detail(host: Host, pool: str) -> tuple[ImageLibrary, PoolDetail]:
    """The library (404 for a pool that is not one) and its pool with its volumes."""
    marked = library.library_of(host, pool)
    if marked is None:
        raise Http404(_("This pool is not an image library."))
    return marked, detail_or_404(host, pool)


def import_form(host: Host, detail: PoolDetail, data: Any) -> ImageImportForm:
    """The import form of a library pool: its volumes that are not images yet."""
    taken = set(CloudImage.objects.filter(host=host, pool=detail.pool.name).values_list("volume", flat=True))
    return ImageImportForm([v for v in detail.volumes if v.name not in taken], data, **os_options())


@require_http_methods(["GET", "POST"])
@route(ops.IMAGE_IMPORT)
def image_import(request: HttpRequest, host: str, pool: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "title": _("Import an image")}
    name = f"{pool}/{request.POST.get('volume', '')[:128]}"
    try:
        context["library"], detail = library_detail(found, pool)
    except VirtError as exc:
        return host_unavailable(request, ops.IMAGE_IMPORT, "storage/images_form.html", context, name, exc)
    form = import_form(found, detail, request.POST if request.method == "POST" else None)
    context.update({"detail": detail, "form": form})
    if request.method != "POST":
        return render(request, "storage/images_form.html", context)
    if not form.is_valid():
        refused(request, ops.IMAGE_IMPORT, host=found, name=name, reason=form.errors.as_text())
        return render(request, "storage/images_form.html", context)
    outcome = import_volume(request, found, pool, form)
    if not outcome.ok:
        return render(request, "storage/images_form.html", context)
    return redirect("storage:images")


def _described(image: CloudImage) -> str:
    parts = [f"volume {image.pool}/{image.volume}", f"{image.format} (read by libvirt)",
             f"virtual {image.virtual_bytes} bytes", f"min disk {image.min_disk_bytes} bytes", image.firmware]
    if image.os_words:
        parts.append(image.os_words)
    if image.default_user:
        parts.append(f"user {image.default_user}")
    return "; ".join(parts)


def import_volume(request: HttpRequest, host: Host, pool: str, form: ImageImportForm, *,
                  quiet: bool = False) -> Outcome[CloudImage]:
    """image.import of a valid form (the page and the API): libvirt reads the volume, the record is stored
    only when every check passed."""
    volume = str(form.cleaned_data["volume"])
    fields = form.fields_value()
    outcome = perform(
        request, ops.IMAGE_IMPORT, host=host, name=f"{pool}/{volume}", form=form, quiet=quiet,
        work=lambda: library.import_image(host, pool, volume, fields, user=request.user),
        done=lambda image: _("Image %(name)s imported: %(format)s, %(size)s.")
        % {"name": image.name, "format": image.format, "size": iec(image.virtual_bytes)},
        detail=_described, audited_name=lambda image: image.name)
    if outcome.field_problem:
        refused(request, ops.IMAGE_IMPORT, host=host, name=f"{pool}/{volume}",
                reason=str(outcome.exception or outcome.error))
    return outcome


# --- edit and delete -------------------------------------------------------------------------------------

def image_form(image: CloudImage, data: Any) -> ImageForm:
    initial = {"name": image.name, "os": image.os_id, "os_family": image.os_family, "os_version": image.os_version,
               "default_user": image.default_user, "min_disk": size_text(image.min_disk_bytes),
               "firmware": image.firmware}
    options = os_options()
    if image.os_id and image.os_id not in options["os_entries"]:  # no longer offered: still the image's own
        entry = catalogue().get(image.os_id)
        options["os_choices"].insert(1, (image.os_id, entry.name if entry else image.os_id))
    return ImageForm(data, initial=initial, **options)


@require_http_methods(["GET", "POST"])
@route(ops.IMAGE_UPDATE)
def image_edit(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(CloudImage.objects.select_related("host"), pk=pk)
    form = image_form(image, request.POST if request.method == "POST" else None)
    context: dict[str, Any] = {"host": image.host, "pool_name": image.pool, "image": image, "form": form,
                               "title": _("Edit image %(name)s") % {"name": image.name}}
    if request.method != "POST":
        return render(request, "storage/images_form.html", context)
    if not form.is_valid():
        refused(request, ops.IMAGE_UPDATE, host=image.host, name=image.name, reason=form.errors.as_text())
        return render(request, "storage/images_form.html", context)
    outcome = update_image(request, image, form)
    if not outcome.ok:
        return render(request, "storage/images_form.html", context)
    return redirect("storage:images")


def update_image(request: HttpRequest, image: CloudImage, form: ImageForm, *,
                 quiet: bool = False) -> Outcome[CloudImage]:
    """image.update of a valid form (the page and the API)."""
    fields, old = form.fields_value(), image.name
    outcome = perform(request, ops.IMAGE_UPDATE, host=image.host, name=old, form=form, quiet=quiet,
                      work=lambda: library.update_image(image, fields),
                      done=lambda saved: _("Image %(name)s saved.") % {"name": saved.name},
                      detail=lambda saved: (f"renamed from {old}; " if saved.name != old else "") + _described(saved),
                      audited_name=lambda saved: saved.name)
    if outcome.field_problem:
        refused(request, ops.IMAGE_UPDATE, host=image.host, name=old, reason=str(outcome.exception or outcome.error))
        image.refresh_from_db()
    return outcome


@require_http_methods(["GET", "POST"])
@route(ops.IMAGE_DELETE)
def image_delete(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(CloudImage.objects.select_related("host"), pk=pk)
    form = ImageDeleteForm(request.POST if request.method == "POST" else None)
    context: dict[str, Any] = {"host": image.host, "image": image, "form": form}
    if request.method != "POST" or not form.is_valid():
        return render(request, "storage/images_delete.html", context)
    outcome = delete_image(request, image, form)
    if not outcome.ok:
        return render(request, "storage/images_delete.html", context)
    return redirect("storage:images")


def delete_image(request: HttpRequest, image: CloudImage, form: ImageDeleteForm, *,
                 quiet: bool = False) -> Outcome[str]:
    """image.delete (the page and the API): the record, and the volume when the form asks for it (libvirt
    refuses while a VM or a linked clone uses it: then nothing is removed)."""
    also = bool(form.cleaned_data.get("delete_volume"))
    return perform(request, ops.IMAGE_DELETE, host=image.host, name=image.name, form=form, quiet=quiet,
                   work=lambda: library.delete_image(image, delete_volume_too=also), done=said, detail=str)
