"""Changes to one network: start, autostart, stop and delete (confirmed), fixed addresses.

Each is admin only, POST only, writes one audit record and shows libvirt's failure in words.
Stopping or deleting a network VMs use needs a confirmation that names those VMs; it is
checked against the VMs using the network at the moment of the POST, not when the page
was drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import libvirt
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from hosts import services
from hosts.models import Host
from networks.forms import FixedHostForm
from networks.views import CHANGE_TIMEOUT, DETAIL_TIMEOUT, host_or_404, render_detail
from virt import networks
from virt.errors import NotFound, VirtError
from webkvm import audit
from webkvm.models import AuditResult
from webkvm.views_base import admin_required

# action -> (what it does to a network, the message when done)
SIMPLE: dict[str, tuple[Callable[[libvirt.virConnect, str], None], str]] = {
    "start": (networks.start, "started"),
    "autostart": (lambda conn, name: networks.set_autostart(conn, name, True), "starts when the host boots"),
    "no-autostart": (lambda conn, name: networks.set_autostart(conn, name, False), "no longer starts at boot"),
}
CONFIRMED: dict[str, tuple[Callable[[libvirt.virConnect, str], None], str]] = {
    "stop": (networks.stop, "stopped"),
    "delete": (networks.delete, "deleted"),
}


def _audit(request: HttpRequest, target: Host, action: str, name: str, error: str = "", detail: str = "") -> None:
    audit.record(request, f"network.{action}", object_type="network", object_name=name, host_name=target.name,
                 result=AuditResult.FAILED if error else AuditResult.OK, detail=error or detail)


def _run(request: HttpRequest, target: Host, action: str, name: str, fn: Callable[[libvirt.virConnect, str], None],
         done: str, detail: str = "") -> bool:
    try:
        services.change(target, lambda conn: fn(conn, name), CHANGE_TIMEOUT)
    except NotFound:
        raise Http404("No such network on this host.") from None
    except VirtError as exc:
        _audit(request, target, action, name, error=str(exc))
        messages.error(request, f"Network {name}: {action} failed: {exc}")
        return False
    _audit(request, target, action, name, detail=detail)
    messages.success(request, f"Network {name} {done}.")
    return True


@require_POST
@admin_required
def action(request: HttpRequest, host: str, name: str, action: str) -> HttpResponse:
    chosen = SIMPLE.get(action)
    if chosen is None:
        raise Http404("No such action.")
    target = host_or_404(host)
    _run(request, target, action, name, *chosen)
    return redirect("networks:detail", target.name, name)


def _users_key(users: tuple[networks.NetworkUser, ...]) -> str:
    """What the confirmation box carries: the UUIDs of the VMs it named."""
    return ",".join(sorted(u.uuid for u in users))


@require_http_methods(["GET", "POST"])
@admin_required
def confirmed(request: HttpRequest, host: str, name: str, action: str) -> HttpResponse:
    chosen = CONFIRMED.get(action)
    if chosen is None:
        raise Http404("No such action.")
    target = host_or_404(host)
    context: dict[str, Any] = {"host": target, "name": name, "action": action}
    try:
        info, users = services.call(
            target, lambda conn: (networks.network_info(conn, name), networks.network_users(conn, name)),
            DETAIL_TIMEOUT)
    except NotFound:
        raise Http404("No such network on this host.") from None
    except VirtError as exc:
        context["error"] = str(exc)
        if request.method == "POST":
            _audit(request, target, action, name, error=str(exc))
        return render(request, "networks/confirm.html", context, status=503)
    context.update({"info": info, "users": users, "users_key": _users_key(users)})
    if request.method != "POST" or request.POST.get("confirm") != "yes":
        return render(request, "networks/confirm.html", context)
    if users and request.POST.get("acknowledge") != _users_key(users):
        context["refused"] = ("Tick the box naming the VMs that use this network to confirm." if
                              not request.POST.get("acknowledge") else
                              "The VMs using this network changed since the page was shown: check the list again.")
        _audit(request, target, action, name, error=f"not confirmed: used by {', '.join(u.name for u in users)}")
        return render(request, "networks/confirm.html", context, status=409)
    detail = f"used by {', '.join(u.name for u in users)} (confirmed)" if users else ""
    if _run(request, target, action, name, *chosen, detail=detail) and action == "delete":
        return redirect("networks:list", target.name)
    return redirect("networks:detail", target.name, name)


@require_POST
@admin_required
def host_add(request: HttpRequest, host: str, name: str) -> HttpResponse:
    target = host_or_404(host)
    form = FixedHostForm(request.POST)
    if not form.is_valid():
        return render_detail(request, target, name, form)
    fixed = form.to_host()
    try:
        services.change(target, lambda conn: networks.add_fixed_host(conn, name, fixed), CHANGE_TIMEOUT)
    except networks.NetworkInputError as exc:  # refused before libvirt was asked: nothing changed
        form.add_problems(exc.problems)
        return render_detail(request, target, name, form)
    except NotFound:
        raise Http404("No such network on this host.") from None
    except VirtError as exc:
        _audit(request, target, "host-add", name, error=f"{fixed.label()}: {exc}")
        messages.error(request, f"Network {name}: the fixed address was not added: {exc}")
        return redirect("networks:detail", target.name, name)
    _audit(request, target, "host-add", name, detail=fixed.label())
    messages.success(request, f"Network {name}: fixed address {fixed.label()} added.")
    return redirect("networks:detail", target.name, name)


@require_POST
@admin_required
def host_remove(request: HttpRequest, host: str, name: str) -> HttpResponse:
    target = host_or_404(host)
    ip = request.POST.get("ip", "").strip()[:64]
    try:
        removed = services.change(target, lambda conn: networks.remove_fixed_host(conn, name, ip), CHANGE_TIMEOUT)
    except VirtError as exc:
        _audit(request, target, "host-remove", name, error=f"{ip}: {exc}")
        messages.error(request, f"Network {name}: the fixed address {ip} was not removed: {exc}")
        return redirect("networks:detail", target.name, name)
    _audit(request, target, "host-remove", name, detail=removed.label())
    messages.success(request, f"Network {name}: fixed address {removed.label()} removed.")
    return redirect("networks:detail", target.name, name)
