"""Changes to one network: start, autostart, stop and delete (confirmed), fixed addresses.

Each is admin only, POST only, and runs through its declared operation (networks/operations.py): one
audit record, one message, libvirt's failure in words. Stopping or deleting a network VMs use needs a
confirmation that names those VMs; it is checked against the VMs using the network at the moment of
the POST, not when the page was drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import libvirt
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from hosts import services
from networks import operations as ops
from networks.forms import FixedHostForm
from networks.views import DETAIL_TIMEOUT, render_detail
from virt import networks
from virt.errors import InvalidInput, NotFound, VirtError
from webkvm.operations import host_or_404, on_host, refused, route
from webkvm.views_base import on_host_checked

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


@require_POST
@route(ops.ACTION)
def action(request: HttpRequest, host: str, name: str, action: str) -> HttpResponse:
    target = host_or_404(host)
    fn, said = SIMPLE[action]
    on_host(request, ops.SIMPLE[action], target, name, lambda conn: fn(conn, name), done=f"Network {name} {said}.")
    return redirect("networks:detail", target.name, name)


def _users_key(users: tuple[networks.NetworkUser, ...]) -> str:
    """What the confirmation box carries: the UUIDs of the VMs it named."""
    return ",".join(sorted(u.uuid for u in users))


@require_http_methods(["GET", "POST"])
@route(ops.CONFIRM)
def confirmed(request: HttpRequest, host: str, name: str, action: str) -> HttpResponse:
    op = ops.CONFIRMED[action]
    fn, said = CONFIRMED[action]
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
            refused(request, op, host=target, name=name, reason=f"{target.name} could not be asked: {exc}")
        return render(request, "networks/confirm.html", context, status=503)
    context.update({"info": info, "users": users, "users_key": _users_key(users)})
    if request.method != "POST" or request.POST.get("confirm") != "yes":
        return render(request, "networks/confirm.html", context)
    if users and request.POST.get("acknowledge") != _users_key(users):
        context["refused"] = ("Tick the box naming the VMs that use this network to confirm." if
                              not request.POST.get("acknowledge") else
                              "The VMs using this network changed since the page was shown: check the list again.")
        refused(request, op, host=target, name=name,
                reason=f"not confirmed: used by {', '.join(u.name for u in users)}")
        return render(request, "networks/confirm.html", context, status=409)
    done = f"Network {name} {said}."
    detail = f"used by {', '.join(u.name for u in users)} (confirmed)" if users else ""
    outcome = on_host(request, op, target, name, lambda conn: fn(conn, name), done=done, detail=detail)
    if outcome.ok and action == "delete":
        return redirect("networks:list", target.name)
    return redirect("networks:detail", target.name, name)


@require_POST
@route(ops.HOST_ADD)
def host_add(request: HttpRequest, host: str, name: str) -> HttpResponse:
    target = host_or_404(host)
    form = FixedHostForm(request.POST)
    if not form.is_valid():
        return render_detail(request, target, name, form)
    fixed = form.to_host()
    # Refused by the host before libvirt was asked (a taken MAC or address): a field error, nothing changed.
    outcome = on_host_checked(request, ops.HOST_ADD, target, name,
                              lambda conn: networks.add_fixed_host(conn, name, fixed), form=form,
                              rejects=networks.NetworkInputError, audit_refusal=False,
                              done=f"Network {name}: fixed address {fixed.label()} added.", detail=fixed.label())
    if not outcome.ok:
        return render_detail(request, target, name, form)
    return redirect("networks:detail", target.name, name)


@require_POST
@route(ops.HOST_REMOVE)
def host_remove(request: HttpRequest, host: str, name: str) -> HttpResponse:
    target = host_or_404(host)
    ip = request.POST.get("ip", "").strip()[:64]

    def remove(conn: libvirt.virConnect) -> networks.FixedHost:
        try:
            return networks.remove_fixed_host(conn, name, ip)
        except NotFound as exc:
            networks.network_info(conn, name)  # the network itself gone: NotFound, a 404
            raise InvalidInput(str(exc)) from None  # only the address is not there: said in words

    on_host(request, ops.HOST_REMOVE, target, name, remove,
            done=lambda removed: f"Network {name}: fixed address {removed.label()} removed.",
            detail=lambda removed: removed.label())
    return redirect("networks:detail", target.name, name)
