"""Actions on one VM: power, autostart, rename, title and description (instances/operations.py).

GET of an action that can lose data shows its confirmation, of any other action (and of rename and
describe) the VM's page, so a reload never ends on a bare 405; POST runs it through the declared
operation: its check, the VM's lock, one audit record, one message. The pages are generated from the
declarations (webkvm/operation_views.py); `run_action` is the work the VM's page, the bulk page and the
API share. A power action records the state it left the VM in (instances/state_since.py); a shutdown
says that it asked the guest, not that the guest obeyed: the VM's page then follows the state and
offers Force off when it keeps running."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import libvirt
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _

from instances import operations as ops
from instances import state_since
from instances.lookup import VMRef
from instances.views.detail import FORCE_OFF_AFTER_SECONDS
from virt import lifecycle
from virt.domains import state_name
from virt.errors import VirtError
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Outcome, on_vm, told


def _next(request: HttpRequest) -> str:
    """Where to come back to (a page of the panel), from the form or, on a reloaded confirmation, the URL."""
    target = request.POST.get("next", "") or request.GET.get("next", "")
    return target if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}) else ""


def _back(call: Call, _outcome: Any = None) -> str:
    return _next(call.request) or reverse("instances:detail", args=[call.target.name, call.ref.uuid])


def _run(dom: libvirt.virDomain, action: str) -> tuple[int, str]:
    """Run the action, then read the state it left the VM in (code, name)."""
    lifecycle.perform(dom, action)
    code = int(dom.state()[0])
    return code, state_name(code)


def action_words(action: lifecycle.Action) -> Callable[[tuple[int, str]], str]:
    """What an action did, given the state it left (code, name): the page's message and the API's."""
    def said(state: tuple[int, str]) -> str:
        now = _(state[1])  # the state's name (virt.domains.STATE_NAMES), translated
        if action.name != "shutdown":
            return _("{action}: done; it is {state}.").format(action=_(action.label).lower(), state=now)
        if state[0] in lifecycle.ACTIVE:
            return _("asked the guest to shut down; it is still {state}. A guest that ignores the request "
                     "(no operating system, or one that is busy) keeps running: Force off is offered if it has "
                     "not stopped after {seconds} s.").format(state=now, seconds=FORCE_OFF_AFTER_SECONDS)
        return _("shut down: it is {state}.").format(state=now)
    return said


def run_action(request: HttpRequest, ref: VMRef, name: str, *, quiet: bool = False) -> Outcome[tuple[int, str]]:
    """The lifecycle action `name` as its declared operation (lock, audit, words), then the state it left the VM
    in recorded (code, name): the VM page, the bulk page's callers and the API run actions through here."""
    outcome = on_vm(request, ops.ACTIONS[name], ref, lambda dom: _run(dom, name),
                    done=action_words(lifecycle.ACTIONS[name]), quiet=quiet)
    if outcome.ok and outcome.value is not None:
        code, state = outcome.value
        state_since.record(ref.host, ref.uuid, state, shutdown_asked=name == "shutdown" and code in lifecycle.ACTIVE)
    return outcome


def rename_vm(request: HttpRequest, ref: VMRef, new_name: str, *, quiet: bool = False) -> Outcome[str]:
    """Rename the VM (the virt layer judges the name): the page's and the API's one way."""
    def run(dom: libvirt.virDomain) -> str:
        old = str(dom.name())
        lifecycle.rename(dom, new_name)
        return old

    return on_vm(request, ops.RENAME, ref, run, done=_("renamed to {name}.").format(name=new_name),
                 detail=lambda old: f"{old} → {new_name}", quiet=quiet)


def describe_vm(request: HttpRequest, ref: VMRef, title: str, description: str, *,
                quiet: bool = False) -> Outcome[None]:
    """Set the title and description (the virt layer judges them): the page's and the API's one way."""
    return on_vm(request, ops.DESCRIBE, ref, lambda dom: lifecycle.describe(dom, title, description),
                 done=_("title and description saved."), quiet=quiet)


# --- the pages, generated from the declarations (webkvm/operation_views.py) ------------------------


def _chosen(call: Call) -> lifecycle.Action:
    return lifecycle.ACTIONS[call.args["action"]]


def _confirming(call: Call) -> bool:
    return bool(_chosen(call).confirm)


def _vm_name(call: Call) -> None:
    """An action that can lose data is confirmed first: its page names the VM."""
    if _confirming(call) and call.request.POST.get("confirm") != "yes":
        call.context.update(action=_chosen(call), name=call.ref.call(lambda dom: dom.name()), next=_next(call.request))


def _unreadable(call: Call, exc: VirtError) -> HttpResponse:
    messages.error(call.request, told(call.request.user, exc))
    return redirect(_back(call))


# A GET of an action that does not confirm (and of rename and describe, whose forms are on the VM's page) goes
# back to the VM's page.
action = operation_view(OperationPage(
    ops.ACTION, template="instances/confirm.html", elsewhere=lambda call: "" if _confirming(call) else _back(call),
    find=_vm_name, unreadable=_unreadable, confirm_field="confirm", confirm_when=_confirming,
    run=lambda call: run_action(call.request, call.ref, call.args["action"]), then=_back))
rename = operation_view(OperationPage(
    ops.RENAME, elsewhere=_back, then=_back,
    run=lambda call: rename_vm(call.request, call.ref, call.request.POST.get("name", "").strip())))
describe = operation_view(OperationPage(
    ops.DESCRIBE, elsewhere=_back, then=_back,
    run=lambda call: describe_vm(call.request, call.ref, call.request.POST.get("title", ""),
                                 call.request.POST.get("description", ""))))
