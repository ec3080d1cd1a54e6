"""Volume pages (admin only): create, clone and wipe (as jobs, with their job page), grow, delete."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from hosts import services
from storage import volume_jobs
from storage.forms import CloneForm, ResizeForm, VolumeForm, add_problems
from storage.views.common import ACTION_TIMEOUT, done, failed, host_or_404
from storage.views.pools import _detail_or_404
from virt.errors import VirtError
from virt.storage_rules import Problem, StorageInputError
from virt.volumes import PoolDetail, VolumeInfo, create_volume, delete_volume, resize_volume
from webkvm.views_base import admin_required


def _volume_or_404(detail: PoolDetail, name: str) -> VolumeInfo:
    found = detail.volume(name)
    if found is None:
        raise Http404("No such volume in this pool.")
    return found


def _unavailable(request: HttpRequest, template: str, context: dict[str, Any], action: str, name: str,
                 exc: VirtError) -> HttpResponse:
    context["error"] = str(exc)
    if request.method == "POST":
        failed(request, action, "volume", name, context["host"], exc, show=False)
    return render(request, template, context, status=503)


@require_http_methods(["GET", "POST"])
@admin_required
def volume_new(request: HttpRequest, host: str, pool: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "title": "New volume"}
    name = request.POST.get("name", "")[:128]
    try:
        detail = _detail_or_404(found, pool)
    except VirtError as exc:
        return _unavailable(request, "storage/volume_form.html", context, "volume.create", f"{pool}/{name}", exc)
    form = VolumeForm(detail, request.POST if request.method == "POST" else None)
    context.update({"detail": detail, "form": form})
    if request.method != "POST":
        return render(request, "storage/volume_form.html", context)
    if not detail.pool.creates_volumes or not detail.pool.active:
        form.add_error(None, f"Pool {pool} cannot make volumes now ({detail.pool.state}, type {detail.pool.type}).")
    if not form.is_valid():
        failed(request, "volume.create", "volume", f"{pool}/{name}", found, f"refused: {form.errors.as_text()}",
               show=False)
        return render(request, "storage/volume_form.html", context)
    spec = form.spec
    assert spec is not None
    try:
        services.change(found, lambda conn: create_volume(conn, pool, spec), ACTION_TIMEOUT)
    except StorageInputError as exc:
        add_problems(form, [Problem("size" if p.field == "capacity" else p.field, p.message) for p in exc.problems])
        failed(request, "volume.create", "volume", f"{pool}/{spec.name}", found, exc, show=False)
        return render(request, "storage/volume_form.html", context)
    except VirtError as exc:
        form.add_error(None, f"{found.name} did not create the volume: {exc}")
        failed(request, "volume.create", "volume", f"{pool}/{spec.name}", found, exc, show=False)
        return render(request, "storage/volume_form.html", context)
    detail_words = (f"{spec.format if detail.pool.file_based else 'raw'}, {spec.capacity} bytes"
                    f"{', preallocated' if spec.preallocate else ''}"
                    f"{f', backing {spec.backing}' if spec.backing else ''}")
    done(request, "volume.create", "volume", f"{pool}/{spec.name}", found, f"Volume {spec.name} created.",
         detail_words)
    return redirect("storage:pool", found.name, pool)


@require_http_methods(["GET", "POST"])
@admin_required
def volume_clone(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "volume_name": volume, "title": f"Clone {volume}"}
    try:
        detail = _detail_or_404(found, pool)
    except VirtError as exc:
        return _unavailable(request, "storage/volume_form.html", context, "volume.clone", f"{pool}/{volume}", exc)
    source = _volume_or_404(detail, volume)
    form = CloneForm(detail, source, request.POST if request.method == "POST" else None)
    context.update({"detail": detail, "form": form})
    if request.method != "POST":
        return render(request, "storage/volume_form.html", context)
    if not form.is_valid():
        failed(request, "volume.clone", "volume", f"{pool}/{volume}", found, f"refused: {form.errors.as_text()}",
               show=False)
        return render(request, "storage/volume_form.html", context)
    new_name, fmt = form.cleaned_data["name"], form.cleaned_data.get("format", "")
    # qcow2 copies grow as they are written, so their allocation shows progress; raw files are
    # allocated in full at once, and there only the end can be seen.
    measurable = (fmt or "raw") == "qcow2" and detail.pool.file_based
    try:
        job = volume_jobs.start_clone(request, found, pool, volume, new_name, fmt,
                                      total=source.allocation if measurable else 0)
    except VirtError as exc:
        form.add_error(None, str(exc))
        failed(request, "volume.clone", "volume", f"{pool}/{new_name}", found, exc, show=False)
        return render(request, "storage/volume_form.html", context)
    return redirect(job)


@require_http_methods(["GET", "POST"])
@admin_required
def volume_resize(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "volume_name": volume, "title": f"Grow {volume}"}
    try:
        detail = _detail_or_404(found, pool)
    except VirtError as exc:
        return _unavailable(request, "storage/volume_form.html", context, "volume.resize", f"{pool}/{volume}", exc)
    vol = _volume_or_404(detail, volume)
    form = ResizeForm(detail.pool, vol, request.POST if request.method == "POST" else None)
    context.update({"detail": detail, "form": form, "volume": vol})
    if request.method != "POST":
        return render(request, "storage/volume_form.html", context)
    if not form.is_valid():
        failed(request, "volume.resize", "volume", f"{pool}/{volume}", found, f"refused: {form.errors.as_text()}",
               show=False)
        return render(request, "storage/volume_form.html", context)
    size: int = form.cleaned_data["size"]
    try:
        old = services.change(found, lambda conn: resize_volume(conn, pool, volume, size), ACTION_TIMEOUT)
    except StorageInputError as exc:
        add_problems(form, [Problem("size", p.message) for p in exc.problems])
        failed(request, "volume.resize", "volume", f"{pool}/{volume}", found, exc, show=False)
        return render(request, "storage/volume_form.html", context)
    except VirtError as exc:
        form.add_error(None, f"{found.name} did not grow the volume: {exc}")
        failed(request, "volume.resize", "volume", f"{pool}/{volume}", found, exc, show=False)
        return render(request, "storage/volume_form.html", context)
    done(request, "volume.resize", "volume", f"{pool}/{volume}", found, f"Volume {volume} grown to {size} bytes.",
         f"from {old} to {size} bytes")
    return redirect("storage:pool", found.name, pool)


def _confirm(request: HttpRequest, host: str, pool: str, volume: str, action: str) -> tuple[Any, Any, Any]:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool, "volume_name": volume, "action": action}
    detail = _detail_or_404(found, pool, thorough=True)
    context.update({"detail": detail, "volume": _volume_or_404(detail, volume)})
    return found, detail, context


@require_http_methods(["GET", "POST"])
@admin_required
def volume_delete(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    try:
        found, _detail, context = _confirm(request, host, pool, volume, "delete")
    except VirtError as exc:
        return _unavailable(request, "storage/volume_confirm.html", {"host": host_or_404(host), "pool_name": pool,
                            "volume_name": volume, "action": "delete"}, "volume.delete", f"{pool}/{volume}", exc)
    if request.method != "POST":
        return render(request, "storage/volume_confirm.html", context)
    try:
        services.change(found, lambda conn: delete_volume(conn, pool, volume), ACTION_TIMEOUT)
    except VirtError as exc:
        failed(request, "volume.delete", "volume", f"{pool}/{volume}", found, exc)
        return redirect("storage:pool", found.name, pool)
    done(request, "volume.delete", "volume", f"{pool}/{volume}", found, f"Volume {volume} deleted.")
    return redirect("storage:pool", found.name, pool)


@require_http_methods(["GET", "POST"])
@admin_required
def volume_wipe(request: HttpRequest, host: str, pool: str, volume: str) -> HttpResponse:
    try:
        found, _detail, context = _confirm(request, host, pool, volume, "wipe")
    except VirtError as exc:
        return _unavailable(request, "storage/volume_confirm.html", {"host": host_or_404(host), "pool_name": pool,
                            "volume_name": volume, "action": "wipe"}, "volume.wipe", f"{pool}/{volume}", exc)
    if request.method != "POST":
        return render(request, "storage/volume_confirm.html", context)
    try:
        job = volume_jobs.start_wipe(request, found, pool, volume)
    except VirtError as exc:
        failed(request, "volume.wipe", "volume", f"{pool}/{volume}", found, exc)
        return redirect("storage:pool", found.name, pool)
    return redirect(job)
