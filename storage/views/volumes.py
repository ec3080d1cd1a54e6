"""Volume pages (admin only): create (as a job, with its job page, when its space is allocated now), clone and
wipe (as jobs), grow, delete.

Each change runs through its declared operation (storage/operations.py): one audit record, one
message; input the form or the host refuses is a field error, audited as refused, with nothing changed.
The functions doing the work are the page's and the API's (api/storage.py); the pages are generated from
the declarations (webkvm/operation_views.py). Upload and download are streamed routes (storage/views/transfer.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hosts.models import Host
from jobs.models import Job
from storage import operations as ops
from storage.forms import CloneForm, ResizeForm, VolumeForm, pool_state_label
from storage.views.pools import detail_or_404
from virt.errors import Text
from virt.storage_rules import StorageInputError
from virt.volumes import PoolDetail, VolumeInfo, create_volume, delete_volume, resize_volume
from virt.xml.codecs import iec
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Operation, Outcome, View, on_host, start_job
from webkvm.views_base import on_host_checked


def volume_or_404(detail: PoolDetail, name: str) -> VolumeInfo:
    """The pool's volume of that name (from the page's one read of the pool), or 404."""
    found = detail.volume(name)
    if found is None:
        raise Http404(_("No such volume in this pool."))
    return found


def volume_form(detail: PoolDetail, data: Any) -> VolumeForm:
    """The new-volume form; with data, a pool that cannot make volumes now is its error."""
    form = VolumeForm(detail, data)
    pool = detail.pool
    if data is not None and (not pool.creates_volumes or not pool.active):
        form.add_error(None, _("Pool %(pool)s cannot make volumes now (%(state)s, type %(type)s).")
                       % {"pool": pool.name, "state": pool_state_label(pool), "type": pool.type})
    return form


def create_volume_in(request: HttpRequest, host: Host, form: VolumeForm, *,
                     quiet: bool = False) -> Outcome[str] | Job | None:
    """Make the volume of a valid form in its pool: the page's and the API's run. A sparse volume is made in
    the request (the Outcome); one whose space is allocated now (raw: every byte written) as a job (None:
    refused, said on the form; `quiet`: raised)."""
    spec, pool = form.spec, form.detail.pool
    assert spec is not None
    if spec.preallocate:
        return start_allocated(request, host, form, quiet=quiet)
    words = (f"{spec.format if pool.file_based else 'raw'}, {spec.capacity} bytes"
             f"{f', backing {spec.backing}' if spec.backing else ''}")
    return on_host_checked(
        request, ops.VOLUME_CREATE, host, f"{pool.name}/{spec.name}",
        lambda conn: create_volume(conn, pool.name, spec),
        form=form, rejects=StorageInputError, done=_("Volume %(name)s created.") % {"name": spec.name}, detail=words,
        quiet=quiet,
        place=lambda problem: "size" if problem.field == "capacity" else
        (problem.field if problem.field in form.fields else None))


def start_allocated(request: HttpRequest, host: Host, form: VolumeForm, *, quiet: bool = False) -> Job | None:
    """Start making a volume whose space is allocated now, as a job (storage/volume_jobs.py)."""
    spec, pool = form.spec, form.detail.pool
    assert spec is not None
    fmt = spec.format if pool.file_based else "raw"
    # A raw file is written in full, so its allocation shows progress; a qcow2's metadata is small.
    total = spec.capacity if fmt == "raw" and pool.file_based else 0
    job: Job | None = start_job(
        request, ops.VOLUME_CREATE, host=host, name=f"{pool.name}/{spec.name}",
        params={"pool": pool.name, "name": spec.name, "capacity": spec.capacity, "format": fmt,
                "backing": spec.backing, "total": total},
        summary=Text(gettext_noop("{format} volume of {size}, allocated now"), format=fmt, size=iec(spec.capacity)),
        form=form, quiet=quiet)
    return job


def start_clone(request: HttpRequest, host: Host, form: CloneForm, *, quiet: bool = False) -> Job | None:
    """Start the copy a valid form asks for, as a job (None: refused, said on the form; quiet: raised)."""
    pool, source = form.detail.pool, form.source
    new_name, fmt = form.cleaned_data["name"], form.cleaned_data.get("format", "")
    # qcow2 copies grow as they are written, so their allocation shows progress; raw files are
    # allocated in full at once, and there only the end can be seen.
    measurable = (fmt or "raw") == "qcow2" and pool.file_based
    job: Job | None = start_job(
        request, ops.VOLUME_CLONE, host=host, name=f"{pool.name}/{new_name}",
        params={"pool": pool.name, "source": source.name, "name": new_name, "format": fmt,
                "total": source.allocation if measurable else 0},
        summary=Text(gettext_noop("copy of {source} ({format})"), source=f"{pool.name}/{source.name}",
                     format=fmt or "raw"), form=form, quiet=quiet)
    return job


def remove_volume(request: HttpRequest, host: Host, pool: str, volume: str, *, quiet: bool = False) -> Outcome[None]:
    """Delete a volume (refused by the virt layer while a VM or another volume uses it)."""
    return on_host(request, ops.VOLUME_DELETE, host, f"{pool}/{volume}",
                   lambda conn: delete_volume(conn, pool, volume),
                   done=_("Volume %(name)s deleted.") % {"name": volume}, detail=f"Volume {volume} deleted.",
                   quiet=quiet)


def grow_volume(request: HttpRequest, host: Host, form: ResizeForm, *, quiet: bool = False) -> Outcome[int]:
    """Grow the volume of a valid form to its size (volumes only grow)."""
    pool, volume, size = form.pool.name, form.volume.name, int(form.cleaned_data["size"])
    return on_host_checked(
        request, ops.VOLUME_RESIZE, host, f"{pool}/{volume}", lambda conn: resize_volume(conn, pool, volume, size),
        form=form, rejects=StorageInputError, place=lambda _problem: "size", quiet=quiet,
        done=_("Volume %(name)s grown to %(size)s bytes.") % {"name": volume, "size": size},
        detail=lambda old: f"from {old} to {size} bytes")


def start_wipe(request: HttpRequest, host: Host, pool: str, volume: str, *, quiet: bool = False) -> Job | None:
    """Start overwriting a volume with zeros, as a job (None: refused, said in a message; quiet: raised)."""
    job: Job | None = start_job(request, ops.VOLUME_WIPE, host=host, name=f"{pool}/{volume}",
                                params={"pool": pool, "name": volume},
                                summary=Text(gettext_noop("overwrite {volume} with zeros"), volume=f"{pool}/{volume}"),
                                quiet=quiet)
    return job


# --- the pages, generated from the declarations (webkvm/operation_views.py) ------------------------


def _pool_url(call: Call, _result: Any = None) -> str:
    return reverse("storage:pool", args=[call.target.name, call.args["pool"]])


def _new_volume_name(call: Call) -> str:
    return f"{call.args['pool']}/{call.request.POST.get('name', '')[:128]}"


def _the_volume(call: Call) -> str:
    return f"{call.args['pool']}/{call.args['volume']}"


def _pool_read(title: str = "", *, thorough: bool = False, volume: str = "") -> Callable[[Call], None]:
    """What a volume's page reads first: the pool with its volumes, and the URL's volume (or 404) under the
    context's key `volume` ("volume": the page shows it; "source": the clone's, not shown)."""

    def find(call: Call) -> None:
        pool, name = call.args["pool"], call.args.get("volume", "")
        call.context["pool_name"] = pool
        if volume:
            call.context["volume_name"] = name
        if title:
            call.context["title"] = _(title) % {"volume": name} if volume else _(title)
        call.context["detail"] = detail = detail_or_404(call.target, pool, thorough=thorough)
        if volume:
            call.context[volume] = volume_or_404(detail, name)

    return find


def _form_page(declared: Operation, title: str, volume: str, *, form: Callable[[Call, Any], forms.BaseForm],
               run: Callable[[Call], Any]) -> View:
    """A volume's form page (storage/volume_form.html): a field error or a refusal is said on the form."""
    return operation_view(OperationPage(
        declared, template="storage/volume_form.html", find=_pool_read(title, volume=volume), form=form, run=run,
        audit_unreadable=_the_volume, refuse_invalid=_the_volume, then=_pool_url))


def _confirm_page(declared: Operation, action: str, run: Callable[[Call], Any]) -> View:
    """A volume's confirmation page (storage/volume_confirm.html): the pool read thoroughly (which VMs use it)."""
    read = _pool_read(thorough=True, volume="volume")

    def find(call: Call) -> None:
        call.context["action"] = action
        read(call)

    return operation_view(OperationPage(declared, template="storage/volume_confirm.html", find=find, run=run,
                                        audit_unreadable=_the_volume, then=_pool_url))


def _made(call: Call, made: Outcome[str] | Job | None) -> HttpResponse | None:
    """A sparse volume was made in the request: to the pool when it was, the form again when refused (a job
    and a refusal said on the form go as usual)."""
    if isinstance(made, Outcome):
        return redirect(_pool_url(call)) if made.ok else render(call.request, "storage/volume_form.html", call.context)
    return None


volume_new = operation_view(OperationPage(
    ops.VOLUME_CREATE, template="storage/volume_form.html", find=_pool_read(gettext_noop("New volume")),
    form=lambda call, data: volume_form(call.context["detail"], data),
    audit_unreadable=_new_volume_name, refuse_invalid=_new_volume_name,
    run=lambda call: create_volume_in(call.request, call.target, cast(VolumeForm, call.form)),
    answer=_made, then=_pool_url))

volume_clone = _form_page(
    ops.VOLUME_CLONE, gettext_noop("Clone %(volume)s"), "source",
    form=lambda call, data: CloneForm(call.context["detail"], call.context["source"], data),
    run=lambda call: start_clone(call.request, call.target, cast(CloneForm, call.form)))

volume_resize = _form_page(
    ops.VOLUME_RESIZE, gettext_noop("Grow %(volume)s"), "volume",
    form=lambda call, data: ResizeForm(call.context["detail"].pool, call.context["volume"], data),
    run=lambda call: grow_volume(call.request, call.target, cast(ResizeForm, call.form)))

volume_delete = _confirm_page(
    ops.VOLUME_DELETE, "delete",
    run=lambda call: remove_volume(call.request, call.target, call.args["pool"], call.args["volume"]))

# A refused wipe goes back to the pool, its reason in a message.
volume_wipe = _confirm_page(
    ops.VOLUME_WIPE, "wipe",
    run=lambda call: start_wipe(call.request, call.target, call.args["pool"], call.args["volume"]))
