"""Pool pages (admin only): every host's pools, one host's pools, create by type, detail, actions, delete.

Create, the lifecycle actions and delete run functions the API shares (api/storage.py); their pages are
generated from the declarations (webkvm/operation_views.py)."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from hosts import services
from hosts.models import Host
from storage import operations as ops
from storage.forms import PoolDeleteForm, PoolForm, pool_type_label
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
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view, url_arg
from webkvm.operations import ADMIN, Outcome, host_or_404, on_host, page, route
from webkvm.views_base import host_page, on_host_checked


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
    context: dict[str, Any] = {"host": found, "all_types": {kind: pool_type_label(kind) for kind in POOL_TYPES}}
    try:
        context["types"] = [(kind, pool_type_label(kind)) for kind in services.call(found, supported_types)]
    except VirtError as exc:
        context["error"] = said(exc)
    return render(request, "storage/pool_types.html", context)


def secrets_for(host: Host, kind: str) -> tuple[list[tuple[str, str]], str]:
    """The host's Ceph secrets an RBD pool may use (none for other kinds), and why not when it cannot say:
    the form then offers none (a key still works)."""
    if kind != "rbd":
        return [], ""
    try:
        return services.call(host, ceph_secrets), ""
    except VirtError as exc:
        return [], said(exc)


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


def create_pool(request: HttpRequest, host: Host, form: PoolForm, *, quiet: bool = False) -> Outcome[str]:
    """Define (and build, start, autostart as asked) the pool of a valid form: the page's and the API's run."""
    spec, data = form.spec, form.cleaned_data
    assert spec is not None
    return on_host_checked(
        request, ops.POOL_CREATE, host, spec.name,
        lambda conn: define_pool(conn, spec, form.roots, build=bool(data.get("build")),
                                 start=bool(data.get("start")), autostart=bool(data.get("autostart")),
                                 ceph_key=form.key),
        form=form, rejects=StorageInputError,
        done=_("Pool %(pool)s created on %(host)s.") % {"pool": spec.name, "host": host.name},
        detail=_create_detail(form), quiet=quiet)


def detail_or_404(host: Host, pool: str, *, thorough: bool = False) -> PoolDetail:
    """The pool with its volumes (the page's one read), or 404."""
    try:
        return services.call(host, lambda conn: pool_detail(conn, pool, thorough=thorough), LIST_TIMEOUT)
    except NotFound:
        raise Http404(_("No such pool on this host.")) from None


@require_GET
@route(page(ADMIN))
def pool_page(request: HttpRequest, host: str, pool: str) -> HttpResponse:
    found = host_or_404(host)
    context: dict[str, Any] = {"host": found, "pool_name": pool}
    try:
        context["detail"] = detail_or_404(found, pool)
    except VirtError as exc:
        context["error"] = said(exc)
        return render(request, "storage/pool_detail.html", context, status=503)
    return render(request, "storage/pool_detail.html", context)


def run_pool_action(request: HttpRequest, host: Host, pool: str, action: str, *,
                    quiet: bool = False) -> Outcome[str]:
    """One lifecycle action (virt.storage.ACTIONS) through its declared operation."""
    return on_host(request, ops.POOL_ACTIONS[action], host, pool, lambda conn: pool_action(conn, pool, action),
                   done=said, detail=str, quiet=quiet)


def remove_pool(request: HttpRequest, host: Host, pool: str, form: PoolDeleteForm, *,
                quiet: bool = False) -> Outcome[Any]:
    """Delete the pool of a valid form: its definition, and its storage when the form asks for that."""
    delete_storage = bool(form.cleaned_data.get("delete_storage"))
    users = f"; in use by {', '.join(form.users)} (confirmed)" if form.users else ""
    return on_host(request, ops.POOL_DELETE, host, pool,
                   lambda conn: delete_pool(conn, pool, delete_storage=delete_storage),
                   done=lambda report: said(report.words()), detail=lambda report: str(report.words()) + users,
                   form=form, quiet=quiet)


# --- the pages, generated from the declarations (webkvm/operation_views.py) ------------------------


def _pool_url(call: Call, _result: Any = None) -> str:
    return reverse("storage:pool", args=[call.target.name, call.args["pool"]])


def _new_pool(call: Call) -> None:
    """The pool type asked for, and the Ceph secrets an RBD pool may use (why none, as the page's error)."""
    kind = call.args["kind"]
    if kind not in POOL_TYPES:
        raise Http404(_("No such pool type."))
    call.context.update({"kind": kind, "kind_label": pool_type_label(kind)})
    secrets, error = secrets_for(call.target, kind)
    if error:
        call.context["error"] = error
    call.context.update({"secrets": secrets, "roots": settings.WEBKVM_POOL_ROOTS})


pool_new = operation_view(OperationPage(
    ops.POOL_CREATE, template="storage/pool_form.html", find=_new_pool,
    form=lambda call, data: PoolForm(call.args["kind"], call.context["roots"], call.context["secrets"], data),
    refuse_invalid=lambda call: call.request.POST.get("name", "")[:128],
    run=lambda call: create_pool(call.request, call.target, cast(PoolForm, call.form)),
    then=lambda call, outcome: reverse("storage:pool", args=[call.target.name, outcome.name])))

# build, start, stop, refresh, autostart, no-autostart: POST only (buttons on the pool's page).
pool_action_view = operation_view(OperationPage(
    ops.POOL_ACTION, then=_pool_url,
    run=lambda call: run_pool_action(call.request, call.target, call.args["pool"], call.args["action"])))


def _pool_to_delete(call: Call) -> None:
    """The pool with its volumes and the VMs using it: what the confirmation names."""
    call.context["pool_name"] = call.args["pool"]
    call.context["detail"] = detail_or_404(call.target, call.args["pool"], thorough=True)


pool_delete = operation_view(OperationPage(
    ops.POOL_DELETE, template="storage/pool_delete.html", find=_pool_to_delete,
    audit_unreadable=url_arg("pool"), refuse_invalid=url_arg("pool"),
    form=lambda call, data: PoolDeleteForm(call.context["detail"], data),
    run=lambda call: remove_pool(call.request, call.target, call.args["pool"], cast(PoolDeleteForm, call.form)),
    then=lambda call, _outcome: reverse("storage:pools", args=[call.target.name])))
