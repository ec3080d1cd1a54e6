"""Pool pages (admin only): every host's pools, one host's pools, create by type, detail, actions, delete."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hosts import services
from hosts.models import Host
from storage.forms import PoolDeleteForm, PoolForm, add_problems
from storage.views.common import ACTION_TIMEOUT, LIST_TIMEOUT, done, failed, host_or_404
from virt.errors import NotFound, VirtError
from virt.reads import POOLS
from virt.storage import (
    ACTIONS,
    POOL_TYPES,
    ceph_secrets,
    define_pool,
    delete_pool,
    pool_action,
    supported_types,
)
from virt.storage_rules import StorageInputError
from virt.volumes import PoolDetail, pool_detail
from webkvm.views_base import admin_required, host_page


@require_GET
@admin_required
def index(request: HttpRequest) -> HttpResponse:
    hosts = list(Host.objects.all())
    if len(hosts) == 1:
        return redirect("storage:pools", hosts[0].name)
    outcomes = services.read_many(hosts, POOLS, LIST_TIMEOUT)
    return render(request, "storage/index.html", {"outcomes": outcomes})


@require_GET
@admin_required
def pools(request: HttpRequest, host: str) -> HttpResponse:
    return host_page(request, host, "storage/pool_list.html", "pools", POOLS, LIST_TIMEOUT)


@require_GET
@admin_required
def pool_types(request: HttpRequest, host: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "all_types": POOL_TYPES}
    try:
        context["types"] = [(kind, POOL_TYPES[kind]) for kind in services.call(found, supported_types)]
    except VirtError as exc:
        context["error"] = str(exc)
    return render(request, "storage/pool_types.html", context)


def _create_detail(form: PoolForm) -> str:
    spec, data = form.spec, form.cleaned_data
    assert spec is not None
    where = spec.to_pool()
    parts = [f"type {spec.type}"]
    if where.target_path:
        parts.append(f"target {where.target_path}")
    if spec.hosts:
        parts.append("hosts " + " ".join(f"{h}:{p}" if p else h for h, p in spec.hosts))
    for label, value in (("export", spec.source_dir), ("source", spec.source_name), ("iqn", spec.iqn),
                         ("devices", " ".join(spec.devices)), ("ceph user", spec.ceph_user)):
        if value:
            parts.append(f"{label} {value}")
    if form.key:
        parts.append("Ceph key stored as a new libvirt secret")
    parts += [f"{flag}" for flag in ("build", "start", "autostart") if data.get(flag)]
    return "; ".join(parts)


@require_http_methods(["GET", "POST"])
@admin_required
def pool_new(request: HttpRequest, host: str, kind: str) -> HttpResponse:
    found = host_or_404(host)
    if kind not in POOL_TYPES:
        raise Http404("No such pool type.")
    secrets: list[tuple[str, str]] = []
    context: dict[str, Any] = {"host": found, "kind": kind, "kind_label": POOL_TYPES[kind]}
    if kind == "rbd":
        try:
            secrets = services.call(found, ceph_secrets)
        except VirtError as exc:
            context["error"] = str(exc)
    roots = settings.WEBKVM_POOL_ROOTS
    form = PoolForm(kind, roots, secrets, request.POST if request.method == "POST" else None)
    context.update({"form": form, "roots": roots})
    if request.method != "POST":
        return render(request, "storage/pool_form.html", context)
    name = request.POST.get("name", "")[:128]
    if not form.is_valid():
        failed(request, "pool.create", "pool", name, found, f"refused: {form.errors.as_text()}", show=False)
        return render(request, "storage/pool_form.html", context)
    spec, data = form.spec, form.cleaned_data
    assert spec is not None
    try:
        services.change(found, lambda conn: define_pool(
            conn, spec, roots, build=bool(data.get("build")), start=bool(data.get("start")),
            autostart=bool(data.get("autostart")), ceph_key=form.key), ACTION_TIMEOUT)
    except StorageInputError as exc:
        add_problems(form, exc.problems)
        failed(request, "pool.create", "pool", spec.name, found, exc, show=False)
        return render(request, "storage/pool_form.html", context)
    except VirtError as exc:
        form.add_error(None, f"{found.name} did not create the pool: {exc}")
        failed(request, "pool.create", "pool", spec.name, found, exc, show=False)
        return render(request, "storage/pool_form.html", context)
    done(request, "pool.create", "pool", spec.name, found, f"Pool {spec.name} created on {found.name}.",
         _create_detail(form))
    return redirect("storage:pool", found.name, spec.name)


def _detail_or_404(host: Host, pool: str, *, thorough: bool = False) -> PoolDetail:
    try:
        return services.call(host, lambda conn: pool_detail(conn, pool, thorough=thorough), LIST_TIMEOUT)
    except NotFound:
        raise Http404("No such pool on this host.") from None


@require_GET
@admin_required
def pool_page(request: HttpRequest, host: str, pool: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool}
    try:
        context["detail"] = _detail_or_404(found, pool)
    except VirtError as exc:
        context["error"] = str(exc)
        return render(request, "storage/pool_detail.html", context, status=503)
    return render(request, "storage/pool_detail.html", context)


@require_POST
@admin_required
def pool_action_view(request: HttpRequest, host: str, pool: str, action: str) -> HttpResponse:
    found = host_or_404(host)
    if action not in ACTIONS:
        raise Http404("No such action.")
    audit_action = f"pool.{action}"
    try:
        message = services.change(found, lambda conn: pool_action(conn, pool, action), ACTION_TIMEOUT)
    except NotFound:
        raise Http404("No such pool on this host.") from None
    except VirtError as exc:
        failed(request, audit_action, "pool", pool, found, f"{action}: {exc}")
    else:
        done(request, audit_action, "pool", pool, found, message)
    return redirect("storage:pool", found.name, pool)


@require_http_methods(["GET", "POST"])
@admin_required
def pool_delete(request: HttpRequest, host: str, pool: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool}
    try:
        detail = _detail_or_404(found, pool, thorough=True)
    except VirtError as exc:
        context["error"] = str(exc)
        if request.method == "POST":
            failed(request, "pool.delete", "pool", pool, found, exc, show=False)
        return render(request, "storage/pool_delete.html", context, status=503)
    form = PoolDeleteForm(detail, request.POST if request.method == "POST" else None)
    context.update({"detail": detail, "form": form})
    if request.method != "POST":
        return render(request, "storage/pool_delete.html", context)
    if not form.is_valid():
        failed(request, "pool.delete", "pool", pool, found, f"refused: {form.errors.as_text()}", show=False)
        return render(request, "storage/pool_delete.html", context)
    delete_storage = bool(form.cleaned_data.get("delete_storage"))
    try:
        report = services.change(found, lambda conn: delete_pool(conn, pool, delete_storage=delete_storage),
                               ACTION_TIMEOUT)
    except VirtError as exc:
        form.add_error(None, f"{found.name}: {exc}")
        failed(request, "pool.delete", "pool", pool, found, exc, show=False)
        return render(request, "storage/pool_delete.html", context)
    users = f"; in use by {', '.join(detail.users)} (confirmed)" if detail.users else ""
    done(request, "pool.delete", "pool", pool, found, report.words(), report.words() + users)
    return redirect("storage:pools", found.name)
