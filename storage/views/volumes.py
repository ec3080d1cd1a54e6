"""Volume pages (admin only): create (as a job, with its job page, when its space is allocated now), clone and
wipe (as jobs), grow, delete.

Each change runs through its declared operation (storage/operations.py): one audit record, one
message; input the form or the host refuses is a field error, audited as refused, with nothing changed."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.http import require_http_methods

from hosts.models import Host
from jobs.models import Job
from storage import operations as ops
from storage.forms import CloneForm, ResizeForm, VolumeForm, pool_state_label
from storage.views.pools import detail_or_404
from virt.errors import Text, VirtError
from virt.storage_rules import StorageInputError
from virt.volumes import PoolDetail, VolumeInfo, create_volume, delete_volume, resize_volume
from virt.xml.codecs import iec
from webkvm.operations import Operation, Outcome, host_or_404, on_host, refused, route, start_job
from webkvm.views_base import host_unavailable, on_host_checked


def volume_or_404(detail: PoolDetail, name: str) -> VolumeInfo:
    """The pool's volume of that name (from the page's one read of the pool), or 404."""
    found = detail.volume(name)
    if found is None:
        raise Http404(_("No such volume in this pool."))
    return found


@require_http_methods(["GET", "POST"])
@route(ops.VOLUME_CREATE)
def volume_new(request: HttpRequest, host: str, pool: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "title": _("New volume")}
    name = request.POST.get("name", "")[:128]
    try:
        detail = detail_or_404(found, pool)
    except VirtError as exc:
        return host_unavailable(request, ops.VOLUME_CREATE, "storage/volume_form.html", context, f"{pool}/{name}",
                                exc)
    form = volume_form(detail, request.POST if request.method == "POST" else None)
    context.update({"detail": detail, "form": form})
    if request.method != "POST":
        return render(request, "storage/volume_form.html", context)
    if not form.is_valid():
        refused(request, ops.VOLUME_CREATE, host=found, name=f"{pool}/{name}", reason=form.errors.as_text())
        return render(request, "storage/volume_form.html", context)
    made = create_volume_in(request, found, form)
    if isinstance(made, Job):
        return redirect(made)
    if made is None or not made.ok:  # refused: said on the form
        return render(request, "storage/volume_form.html", context)
    return redirect("storage:pool", found.name, pool)


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


@require_http_methods(["GET", "POST"])
@route(ops.VOLUME_CLONE)
def volume_clone(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "volume_name": volume,
                               "title": _("Clone %(volume)s") % {"volume": volume}}
    try:
        detail = detail_or_404(found, pool)
    except VirtError as exc:
        return host_unavailable(request, ops.VOLUME_CLONE, "storage/volume_form.html", context, f"{pool}/{volume}",
                                exc)
    source = volume_or_404(detail, volume)
    form = CloneForm(detail, source, request.POST if request.method == "POST" else None)
    context.update({"detail": detail, "form": form})
    if request.method != "POST":
        return render(request, "storage/volume_form.html", context)
    if not form.is_valid():
        refused(request, ops.VOLUME_CLONE, host=found, name=f"{pool}/{volume}", reason=form.errors.as_text())
        return render(request, "storage/volume_form.html", context)
    job = start_clone(request, found, form)
    if job is None:
        return render(request, "storage/volume_form.html", context)
    return redirect(job)


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


@require_http_methods(["GET", "POST"])
@route(ops.VOLUME_RESIZE)
def volume_resize(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "volume_name": volume,
                               "title": _("Grow %(volume)s") % {"volume": volume}}
    try:
        detail = detail_or_404(found, pool)
    except VirtError as exc:
        return host_unavailable(request, ops.VOLUME_RESIZE, "storage/volume_form.html", context, f"{pool}/{volume}",
                                exc)
    vol = volume_or_404(detail, volume)
    form = ResizeForm(detail.pool, vol, request.POST if request.method == "POST" else None)
    context.update({"detail": detail, "form": form, "volume": vol})
    if request.method != "POST":
        return render(request, "storage/volume_form.html", context)
    if not form.is_valid():
        refused(request, ops.VOLUME_RESIZE, host=found, name=f"{pool}/{volume}", reason=form.errors.as_text())
        return render(request, "storage/volume_form.html", context)
    outcome = grow_volume(request, found, form)
    if not outcome.ok:
        return render(request, "storage/volume_form.html", context)
    return redirect("storage:pool", found.name, pool)


def _confirm(request: HttpRequest, host: str, pool: str, volume: str, action: str,
             op: Operation) -> tuple[dict[str, Any], HttpResponse | None]:
    """The confirmation page's context (host, pool detail, volume), or the page saying the host could not
    be asked (503)."""
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "volume_name": volume, "action": action}
    try:
        detail = detail_or_404(found, pool, thorough=True)
    except VirtError as exc:
        return context, host_unavailable(request, op, "storage/volume_confirm.html", context, f"{pool}/{volume}",
                                         exc)
    context.update({"detail": detail, "volume": volume_or_404(detail, volume)})
    return context, None


@require_http_methods(["GET", "POST"])
@route(ops.VOLUME_DELETE)
def volume_delete(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    context, unavailable = _confirm(request, host, pool, volume, "delete", ops.VOLUME_DELETE)
    if unavailable is not None:
        return unavailable
    if request.method != "POST":
        return render(request, "storage/volume_confirm.html", context)
    found = context["host"]
    remove_volume(request, found, pool, volume)
    return redirect("storage:pool", found.name, pool)


def remove_volume(request: HttpRequest, host: Host, pool: str, volume: str, *, quiet: bool = False) -> Outcome[None]:
    """Delete a volume (refused by the virt layer while a VM or another volume uses it)."""
    return on_host(request, ops.VOLUME_DELETE, host, f"{pool}/{volume}",
                   lambda conn: delete_volume(conn, pool, volume),
                   done=_("Volume %(name)s deleted.") % {"name": volume}, detail=f"Volume {volume} deleted.",
                   quiet=quiet)


@require_http_methods(["GET", "POST"])
@route(ops.VOLUME_WIPE)
def volume_wipe(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    context, unavailable = _confirm(request, host, pool, volume, "wipe", ops.VOLUME_WIPE)
    if unavailable is not None:
        return unavailable
    if request.method != "POST":
        return render(request, "storage/volume_confirm.html", context)
    found = context["host"]
    job = start_wipe(request, found, pool, volume)
    if job is None:
        return redirect("storage:pool", found.name, pool)
    return redirect(job)


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
