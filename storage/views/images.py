"""The image library's pages (admin only): every host's libraries and images; mark a pool as a library;
import a volume of a library as a cloud image; edit and delete images.

Each change runs through its declared operation (storage/operations.py: one audit record, one message);
input the form, the records or libvirt refuses (a raw-named-qcow2 is fine, a vmdk or an overlay is not)
is a field error, audited as refused, with nothing stored. The logic is storage/images.py; the API
(api/images.py) runs the same functions below; the pages are generated from the declarations
(webkvm/operation_views.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, cast

from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.http import require_GET

from hosts import services
from hosts.models import Host
from storage import images as library
from storage import operations as ops
from storage.forms import ImageDeleteForm, ImageForm, ImageImportForm, LibraryForm
from storage.models import CloudImage, ImageLibrary
from storage.views.common import LIST_TIMEOUT
from storage.views.pools import detail_or_404
from virt.errors import NotFound
from virt.osinfo import catalogue
from virt.reads import POOLS
from virt.storage import PoolSummary, pool_summary
from virt.volumes import PoolDetail
from virt.xml.codecs import iec
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view, url_arg
from webkvm.operations import ADMIN, Outcome, page, perform, refused, route


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


def delete_image(request: HttpRequest, image: CloudImage, form: ImageDeleteForm, *,
                 quiet: bool = False) -> Outcome[str]:
    """image.delete (the page and the API): the record, and the volume when the form asks for it (libvirt
    refuses while a VM or a linked clone uses it: then nothing is removed)."""
    also = bool(form.cleaned_data.get("delete_volume"))
    return perform(request, ops.IMAGE_DELETE, host=image.host, name=image.name, form=form, quiet=quiet,
                   work=lambda: library.delete_image(image, delete_volume_too=also), done=said, detail=str)


# --- the pages, generated from the declarations (webkvm/operation_views.py) ------------------------


def _to_images(_call: Call, _outcome: Any = None) -> str:
    return reverse("storage:images")


def _library(call: Call) -> None:
    """The pool's library mark and the pool (None: gone, but still marked)."""
    pool = call.args["pool"]
    call.context["pool_name"] = pool
    call.context["marked"] = marked = library.library_of(call.target, pool)
    call.context["pool"] = pool_or_none(call.target, pool, marked)


def _library_form(call: Call, data: QueryDict | None) -> LibraryForm:
    marked = call.context["marked"]
    return LibraryForm(data, initial={"library": marked is not None,
                                      "linked_clones": bool(marked and marked.linked_clones)})


def _set_library(call: Call) -> Outcome[str] | None:
    """A pool gone from its host can only be unmarked: marking it is refused on the form (None)."""
    host, pool, form = call.target, call.args["pool"], cast(LibraryForm, call.form)
    if call.context["pool"] is None and form.cleaned_data["library"]:
        form.add_error("library", _("Pool %(pool)s no longer exists on %(host)s: it can only be unmarked.")
                       % {"pool": pool, "host": host.name})
        refused(call.request, ops.LIBRARY_SET, host=host, name=pool, reason="the pool is gone")
        return None
    return set_library(call.request, host, pool, form)


library_edit = operation_view(OperationPage(
    ops.LIBRARY_SET, template="storage/images_library.html", find=_library, form=_library_form,
    audit_unreadable=url_arg("pool"), refuse_invalid=url_arg("pool"), run=_set_library, then=_to_images))


def _import_name(call: Call) -> str:
    return f"{call.args['pool']}/{call.request.POST.get('volume', '')[:128]}"


def _library_volumes(call: Call) -> None:
    call.context.update({"pool_name": call.args["pool"], "title": _("Import an image")})
    call.context["library"], call.context["detail"] = library_detail(call.target, call.args["pool"])


image_import = operation_view(OperationPage(
    ops.IMAGE_IMPORT, template="storage/images_form.html", find=_library_volumes,
    form=lambda call, data: import_form(call.target, call.context["detail"], data),
    audit_unreadable=_import_name, refuse_invalid=_import_name,
    run=lambda call: import_volume(call.request, call.target, call.args["pool"], cast(ImageImportForm, call.form)),
    then=_to_images))


def _image(title: str = "") -> Callable[[Call], None]:
    """The image the URL names (404), whose host is the operation's."""

    def find(call: Call) -> None:
        image = get_object_or_404(CloudImage.objects.select_related("host"), pk=call.args["pk"])
        call.host = image.host
        call.context.update({"host": image.host, "image": image})
        if title:
            call.context.update({"pool_name": image.pool, "title": _(title) % {"name": image.name}})

    return find


image_edit = operation_view(OperationPage(
    ops.IMAGE_UPDATE, host="", template="storage/images_form.html", find=_image(gettext_noop("Edit image %(name)s")),
    form=lambda call, data: image_form(call.context["image"], data),
    refuse_invalid=lambda call: call.context["image"].name,
    run=lambda call: update_image(call.request, call.context["image"], cast(ImageForm, call.form)),
    then=_to_images))

image_delete = operation_view(OperationPage(
    ops.IMAGE_DELETE, host="", template="storage/images_delete.html", find=_image(),
    form=lambda _call, data: ImageDeleteForm(data),
    run=lambda call: delete_image(call.request, call.context["image"], cast(ImageDeleteForm, call.form)),
    then=_to_images))
