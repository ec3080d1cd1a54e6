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
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.http import require_http_methods, require_POST

from hosts import services
from hosts.models import Host
from networks import operations as ops
from networks.forms import FixedHostForm
from networks.views import DETAIL_TIMEOUT, render_detail
from virt import networks
from virt.errors import InvalidInput, NotFound, VirtError
from webkvm.i18n import said
from webkvm.operations import Outcome, host_or_404, on_host, refused, route
from webkvm.views_base import on_host_checked

# action -> (what it does to a network, the message when done)
SIMPLE: dict[str, tuple[Callable[[libvirt.virConnect, str], None], str]] = {
    "start": (networks.start, gettext_noop("Network %(name)s started.")),
    "autostart": (lambda conn, name: networks.set_autostart(conn, name, True),
                  gettext_noop("Network %(name)s starts when the host boots.")),
    "no-autostart": (lambda conn, name: networks.set_autostart(conn, name, False),
                     gettext_noop("Network %(name)s no longer starts at boot.")),
}
CONFIRMED: dict[str, tuple[Callable[[libvirt.virConnect, str], None], str]] = {
    "stop": (networks.stop, gettext_noop("Network %(name)s stopped.")),
    "delete": (networks.delete, gettext_noop("Network %(name)s deleted.")),
}


class NotConfirmed(VirtError):
    """A stop or delete of a network VMs use, without the confirmation naming those VMs: nothing done."""


class NoFixedAddress(InvalidInput):
    """The network has no fixed address for the IP asked to be removed (the network itself exists)."""


def _saying(fn: Callable[[libvirt.virConnect, str], None], name: str,
            words: str) -> Callable[[libvirt.virConnect], str]:
    """fn(conn, name) whose value is the words said when it worked (the API answers with them)."""
    def run(conn: libvirt.virConnect) -> str:
        fn(conn, name)
        return words
    return run


def simple_action(request: HttpRequest, target: Host, name: str, action: str, *,
                  quiet: bool = False) -> Outcome[str]:
    """start, autostart or no-autostart (the page and the API): one audit record."""
    fn, words = SIMPLE[action]
    done = _(words) % {"name": name}
    return on_host(request, ops.SIMPLE[action], target, name, _saying(fn, name, done), done=done,
                   detail=words % {"name": name}, quiet=quiet)


@require_POST
@route(ops.ACTION)
def action(request: HttpRequest, host: str, name: str, action: str) -> HttpResponse:
    target = host_or_404(host)
    simple_action(request, target, name, action)
    return redirect("networks:detail", target.name, name)


def users_key(users: tuple[networks.NetworkUser, ...]) -> str:
    """What the confirmation box carries: the UUIDs of the VMs it named."""
    return ",".join(sorted(u.uuid for u in users))


def network_and_users(request: HttpRequest, target: Host, name: str,
                      action: str) -> tuple[networks.NetworkInfo, tuple[networks.NetworkUser, ...]]:
    """The network and the VMs using it now: what a stop or delete is confirmed against. When the host
    cannot be asked, a change asked for (not a GET) is audited as refused and the failure raised."""
    try:
        found: tuple[networks.NetworkInfo, tuple[networks.NetworkUser, ...]] = services.call(
            target, lambda conn: (networks.network_info(conn, name), networks.network_users(conn, name)),
            DETAIL_TIMEOUT)
    except NotFound:
        raise
    except VirtError as exc:
        if request.method != "GET":
            refused(request, ops.CONFIRMED[action], host=target, name=name,
                    reason=f"{target.name} could not be asked: {exc}")
        raise
    return found


def stop_or_delete(request: HttpRequest, target: Host, name: str, action: str,
                   users: tuple[networks.NetworkUser, ...], acknowledged: str, *, quiet: bool = False) -> Outcome[str]:
    """stop or delete (the page and the API), once `acknowledged` names exactly the VMs that use the
    network now (users_key); otherwise refused (audited) with a NotConfirmed outcome and nothing done."""
    op = ops.CONFIRMED[action]
    if users and acknowledged != users_key(users):
        words = (_("Tick the box naming the VMs that use this network to confirm.") if not acknowledged else
                 _("The VMs using this network changed since the page was shown: check the list again."))
        used_by = ", ".join(u.name for u in users)
        refused(request, op, host=target, name=name, reason=f"not confirmed: used by {used_by}")
        return Outcome(name, error=words, exception=NotConfirmed(words))
    fn, words = CONFIRMED[action]
    done = _(words) % {"name": name}
    detail = f"used by {', '.join(u.name for u in users)} (confirmed)" if users else words % {"name": name}
    return on_host(request, op, target, name, _saying(fn, name, done), done=done, detail=detail, quiet=quiet)


@require_http_methods(["GET", "POST"])
@route(ops.CONFIRM)
def confirmed(request: HttpRequest, host: str, name: str, action: str) -> HttpResponse:
    target = host_or_404(host)
    context: dict[str, Any] = {"host": target, "name": name, "action": action}
    try:
        info, users = network_and_users(request, target, name, action)
    except NotFound:
        raise Http404(_("No such network on this host.")) from None
    except VirtError as exc:
        context["error"] = said(exc)
        return render(request, "networks/confirm.html", context, status=503)
    context.update({"info": info, "users": users, "users_key": users_key(users),
                    "user_names": ", ".join(u.name for u in users)})
    if request.method != "POST" or request.POST.get("confirm") != "yes":
        return render(request, "networks/confirm.html", context)
    outcome = stop_or_delete(request, target, name, action, users, request.POST.get("acknowledge", ""))
    if isinstance(outcome.exception, NotConfirmed):
        context["refused"] = outcome.error
        return render(request, "networks/confirm.html", context, status=409)
    if outcome.ok and action == "delete":
        return redirect("networks:list", target.name)
    return redirect("networks:detail", target.name, name)


def add_fixed(request: HttpRequest, target: Host, name: str, form: FixedHostForm, *,
              quiet: bool = False) -> Outcome[str]:
    """network.host-add of a valid form (the page and the API). Refused by the host before libvirt was
    asked (a taken MAC or address): a field error, nothing changed, nothing audited."""
    fixed = form.to_host()
    done = _("Network %(name)s: fixed address %(address)s added.") % {"name": name, "address": fixed.label()}

    def add(conn: libvirt.virConnect, network: str) -> None:
        networks.add_fixed_host(conn, network, fixed)

    return on_host_checked(request, ops.HOST_ADD, target, name, _saying(add, name, done), form=form,
                           rejects=networks.NetworkInputError, audit_refusal=False, done=done,
                           detail=fixed.label(), quiet=quiet)


@require_POST
@route(ops.HOST_ADD)
def host_add(request: HttpRequest, host: str, name: str) -> HttpResponse:
    target = host_or_404(host)
    form = FixedHostForm(request.POST)
    if not form.is_valid() or not add_fixed(request, target, name, form).ok:
        return render_detail(request, target, name, form)
    return redirect("networks:detail", target.name, name)


def remove_fixed(request: HttpRequest, target: Host, name: str, ip: str, *,
                 quiet: bool = False) -> Outcome[networks.FixedHost]:
    """network.host-remove of the fixed address for `ip` (the page and the API); a missing network is a
    404, a missing address a failure said in words (NoFixedAddress)."""
    ip = ip.strip()[:64]

    def remove(conn: libvirt.virConnect) -> networks.FixedHost:
        try:
            return networks.remove_fixed_host(conn, name, ip)
        except NotFound as exc:
            networks.network_info(conn, name)  # the network itself gone: NotFound, a 404
            raise NoFixedAddress(exc.template, **exc.params) from None  # only the address is not there: said in words

    return on_host(request, ops.HOST_REMOVE, target, name, remove,
                   done=lambda removed: _("Network %(name)s: fixed address %(address)s removed.") % {
                       "name": name, "address": removed.label()},
                   detail=lambda removed: removed.label(), quiet=quiet)


@require_POST
@route(ops.HOST_REMOVE)
def host_remove(request: HttpRequest, host: str, name: str) -> HttpResponse:
    target = host_or_404(host)
    remove_fixed(request, target, name, request.POST.get("ip", ""))
    return redirect("networks:detail", target.name, name)
