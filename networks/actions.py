"""Changes to one network: start, autostart, stop and delete (confirmed), fixed addresses.

Each is admin only and runs through its declared operation (networks/operations.py): one audit record,
one message, libvirt's failure in words. The functions doing the work are the page's and the API's
(api/networks.py); the pages are generated from the declarations (webkvm/operation_views.py).
Stopping or deleting a network VMs use needs a confirmation that names those VMs; it is checked against
the VMs using the network at the moment of the POST, not when the page was drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import libvirt
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hosts import services
from hosts.models import Host
from networks import operations as ops
from networks.forms import FixedHostForm
from networks.views import DETAIL_TIMEOUT, render_detail
from virt import networks
from virt.errors import InvalidInput, NotFound, VirtError
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Outcome, on_host, refused
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


# --- the pages, generated from the declarations (webkvm/operation_views.py) ------------------------


def _network(call: Call) -> str:
    return str(call.args["name"])


def _detail(call: Call, _result: Any = None) -> str:
    return reverse("networks:detail", args=[call.target.name, _network(call)])


# start, autostart, no-autostart: POST only (buttons on the detail page).
action = operation_view(OperationPage(
    ops.ACTION, then=_detail,
    run=lambda call: simple_action(call.request, call.target, _network(call), call.args["action"])))


def _find_users(call: Call) -> None:
    """What a stop or delete is confirmed against: the network and the VMs using it now."""
    call.context.update({"name": _network(call), "action": call.args["action"]})
    try:
        info, users = network_and_users(call.request, call.target, _network(call), call.args["action"])
    except NotFound:
        raise Http404(_("No such network on this host.")) from None
    call.context.update({"info": info, "users": users, "users_key": users_key(users),
                         "user_names": ", ".join(u.name for u in users)})


def _stop_or_delete(call: Call) -> Outcome[str]:
    return stop_or_delete(call.request, call.target, _network(call), call.args["action"], call.context["users"],
                          call.request.POST.get("acknowledge", ""))


def _not_confirmed(call: Call, outcome: Outcome[str]) -> HttpResponse | None:
    """The VMs using the network were not (or no longer) the ones confirmed: the page again, 409."""
    if not isinstance(outcome.exception, NotConfirmed):
        return None
    call.context["refused"] = outcome.error
    return render(call.request, "networks/confirm.html", call.context, status=409)


def _after_confirmed(call: Call, outcome: Outcome[str]) -> str:
    if outcome.ok and call.args["action"] == "delete":
        return reverse("networks:list", args=[call.target.name])
    return _detail(call)


# stop and delete: a confirmation page (GET), then POST with confirm=yes (and the VMs using it acknowledged).
confirmed = operation_view(OperationPage(
    ops.CONFIRM, template="networks/confirm.html", find=_find_users, confirm_field="confirm",
    unavailable=lambda call, exc: said(exc), run=_stop_or_delete, answer=_not_confirmed, then=_after_confirmed))

# A fixed address: the form is on the detail page, which shows it again with its errors.
host_add = operation_view(OperationPage(
    ops.HOST_ADD, form=lambda call, data: FixedHostForm(data), then=_detail,
    again=lambda call: render_detail(call.request, call.target, _network(call), cast(FixedHostForm, call.form)),
    run=lambda call: add_fixed(call.request, call.target, _network(call), cast(FixedHostForm, call.form))))

host_remove = operation_view(OperationPage(
    ops.HOST_REMOVE, then=_detail,
    run=lambda call: remove_fixed(call.request, call.target, _network(call), call.request.POST.get("ip", ""))))
