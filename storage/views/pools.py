"""Pool pages (admin only): every host's pools, one host's pools, create by type, detail, actions, delete."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hosts import services
from hosts.models import Host
from storage import operations as ops
from storage.forms import PoolDeleteForm, PoolForm
from storage.views.common import LIST_TIMEOUT
from virt.errors import NotFound, VirtError
from virt.reads import POOLS
from virt.storage import (
    POOL_TYPES,
    ceph_secrets,
    define_pool,
    delete_pool,
    pool_action,
    supported_types,
)
from virt.storage_rules import StorageInputError
from virt.volumes import PoolDetail, pool_detail
from webkvm.operations import ADMIN, host_or_404, on_host, page, refused, route
from webkvm.views_base import host_page, host_unavailable, on_host_checked


@require_GET
@route(page(ADMIN))
def index(request: HttpRequest) -> HttpResponse:
    hosts = list(Host.objects.all())
    if len(hosts) == 1:
        return redirect("storage:pools", hosts[0].name)
    outcomes = services.read_many(hosts, POOLS, LIST_TIMEOUT)
    return render(request, "storage/index.html", {"outcomes": outcomes})


@require_GET
@route(page(ADMIN))
def pools(request: HttpRequest, host: str) -> HttpResponse:
    return host_page(request, host, "storage/pool_list.html", "pools", POOLS, LIST_TIMEOUT)


@require_GET
@route(page(ADMIN))
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
@route(ops.POOL_CREATE)
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
    if not form.is_valid():
        refused(request, ops.POOL_CREATE, host=found, name=request.POST.get("name", "")[:128],
                reason=form.errors.as_text())
        return render(request, "storage/pool_form.html", context)
    spec, data = form.spec, form.cleaned_data
    assert spec is not None
    outcome = on_host_checked(
        request, ops.POOL_CREATE, found, spec.name,
        lambda conn: define_pool(conn, spec, roots, build=bool(data.get("build")), start=bool(data.get("start")),
                                 autostart=bool(data.get("autostart")), ceph_key=form.key),
        form=form, rejects=StorageInputError,
        done=f"Pool {spec.name} created on {found.name}.", detail=_create_detail(form))
    if not outcome.ok:
        return render(request, "storage/pool_form.html", context)
    return redirect("storage:pool", found.name, spec.name)


def _detail_or_404(host: Host, pool: str, *, thorough: bool = False) -> PoolDetail:
    try:
        return services.call(host, lambda conn: pool_detail(conn, pool, thorough=thorough), LIST_TIMEOUT)
    except NotFound:
        raise Http404("No such pool on this host.") from None


@require_GET
@route(page(ADMIN))
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
@route(ops.POOL_ACTION)
def pool_action_view(request: HttpRequest, host: str, pool: str, action: str) -> HttpResponse:
    found = host_or_404(host)
    on_host(request, ops.POOL_ACTIONS[action], found, pool, lambda conn: pool_action(conn, pool, action),
            done=lambda said: said)
    return redirect("storage:pool", found.name, pool)


@require_http_methods(["GET", "POST"])
@route(ops.POOL_DELETE)
def pool_delete(request: HttpRequest, host: str, pool: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool}
    try:
        detail = _detail_or_404(found, pool, thorough=True)
    except VirtError as exc:
        return host_unavailable(request, ops.POOL_DELETE, "storage/pool_delete.html", context, pool, exc)
    form = PoolDeleteForm(detail, request.POST if request.method == "POST" else None)
    context.update({"detail": detail, "form": form})
    if request.method != "POST":
        return render(request, "storage/pool_delete.html", context)
    if not form.is_valid():
        refused(request, ops.POOL_DELETE, host=found, name=pool, reason=form.errors.as_text())
        return render(request, "storage/pool_delete.html", context)
    delete_storage = bool(form.cleaned_data.get("delete_storage"))
    users = f"; in use by {', '.join(detail.users)} (confirmed)" if detail.users else ""
    outcome = on_host(request, ops.POOL_DELETE, found, pool,
                      lambda conn: delete_pool(conn, pool, delete_storage=delete_storage),
                      done=lambda report: report.words(), detail=lambda report: report.words() + users, form=form)
    if not outcome.ok:
        return render(request, "storage/pool_delete.html", context)
    return redirect("storage:pools", found.name)
