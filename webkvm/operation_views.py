"""The page of an operation, generated from its declaration (NetBox's generic views, for libvirt objects).

An operation is declared once (webkvm/operations.py); its page is registered once, next to the app's
views, as an `OperationPage`: the declaration (or a route's choice of declarations), the work, and
optionally its form, its template and what the page reads first. `operation_view(page)` makes the view:

- the declared permission check: `route()` (or `vm_route()` for a VM's operation), so the route walk
  in tests/unit/test_routes.py covers it like any other route;
- GET shows the form or the confirmation (the page's template); a page without a template is POST only
  (a button on another page), GET answers 405;
- what the page needs from the host is read first (`find`): a host that cannot be asked gives the
  template with the failure in words and 503 (and a POST is audited as refused when `audit_unreadable`);
- POST validates the form: field errors show the page again and nothing is done (audited as refused
  when `refuse_invalid` names the object);
- then the work runs: a function the page and the API share, which runs through `perform`, `on_vm`,
  `on_host` (in the request) or `start_job` (a declared job), so the audit record, the lock and the
  message come from the declaration too; a job goes to its job page, a failure on a form shows the page
  again with the error on the form, anything else goes where `then` says (the message says how it went).

Adding an operation:
1. declare it in the app's operations.py: `X = declare(Operation("thing.x", gettext_noop("Label"), "pool",
   ADMIN, lock=..., timeout=..., job=..., confirm=...))` (and its audit words in webkvm/audit.py);
2. write its work once, `def do_x(request, host, name, ..., *, quiet=False) -> Outcome`, through on_host()
   (or perform/on_vm/start_job); the API endpoint calls the same function with quiet=True;
3. register its page: `x = operation_view(OperationPage(ops.X, run=lambda call: do_x(call.request, call.host,
   call.args["name"]), then=lambda call, _: reverse(...), template="app/x.html", form=...))`;
4. route it: `path("<slug:host>/thing/<str:name>/x/", views.x, name="x")`.

Generated this way: networks/actions.py and networks/views.py (create, start, stop, autostart,
no-autostart, delete, fixed address add and remove), storage/views/pools.py (create, build, start, stop,
refresh, autostart, no-autostart, delete), storage/views/volumes.py (create, clone, grow, wipe, delete; upload
and download are streamed routes, storage/views/transfer.py), storage/views/images.py (image library set and
unset, import, edit, delete), hosts/views.py (add, edit, remove, test, confirm machine), hosts/shares.py (open
to users, close to users), webkvm/users.py (create user; the user's page posts update, set password
and grant to their generated views; revoke grant), api/pages.py (make and revoke an API token: `access` keeps
the revoke route OWNER), instances/views (a VM's power actions, rename, describe, share, snapshot create,
revert and delete, delete, clone, resize, boot and VNC settings; disks: attach, detach; CD-ROM drives: add,
insert, eject, remove; NICs: add, remove, move, link; flavors and quotas: create, edit, delete).
Also instances/views/migrate.py (a VM's migration: its pre-flight page and the job; the VMs ticked on the list),
instances/views/evacuate.py (host evacuation), instances/views/xmledit.py (the XML editor's save and rollback).

A page whose form is on another page sends a GET there (`elsewhere`), so a reload never ends on a 405; a route
whose choices confirm only some of them says which (`confirm_when`); a failed `find` may get a bespoke answer
(`unreadable`: a message and back to the list); a page naming a VM whose operation needs no VM grant (an
admin's: clone, share) says `names_vm`. A VM's page finds `ref` (the VMRef) in its template's context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from hosts.models import Host
from virt.errors import NotFound, VirtError
from webkvm import audit
from webkvm.operations import Access, Operation, Outcome, View, refused, route, told, vm_route


@dataclass
class Call:
    """One request of an operation's page: what the view found, for the page's functions."""

    request: HttpRequest
    op: Operation  # the declared operation (a route's choice: the one its URL names)
    args: dict[str, Any]  # the URL's arguments
    context: dict[str, Any] = field(default_factory=dict)  # the template's, filled as the view goes
    host: Host | None = None
    ref: Any = None  # the VM (instances.lookup.VMRef) of a VM's operation, found after the check
    form: forms.BaseForm | None = None

    @property
    def posted(self) -> bool:
        return self.request.method == "POST"

    @property
    def target(self) -> Host:
        """The host the URL names (always found on a page whose `host` argument is set)."""
        assert self.host is not None, "a page without a host argument"
        return self.host


def url_arg(name: str) -> Callable[[Call], str]:
    """The object's name as the URL gives it (for the audit record of a refusal)."""
    return lambda call: str(call.args.get(name, ""))


@dataclass(frozen=True)
class OperationPage:
    """What an operation's page adds to its declaration (see the module's docstring)."""

    declared: Operation | Access  # an Operation, or an Access choosing one by a URL argument (`by`)
    run: Callable[[Call], Any]  # the work: an Outcome (in the request), a Job or None (op.job), None: not run
    then: Callable[[Call, Any], str]  # where to go afterwards (a URL); a failure on a form shows the page instead
    template: str = ""  # the form or confirmation shown on GET; "": POST only
    form: Callable[[Call, QueryDict | None], forms.BaseForm] | None = None  # the form, given the POST (None on GET)
    find: Callable[[Call], None] | None = None  # reads what page and form need into call.context (VirtError: 503)
    host: str = "host"  # the URL argument naming the host ("": the operation has none)
    confirm_field: str = ""  # a POST that does not say "yes" in this field shows the confirmation
    refuse_invalid: Callable[[Call], str] | None = None  # an invalid form is audited as refused, on this name
    audit_unreadable: Callable[[Call], str] | None = None  # a POST whose `find` failed is audited, on this name
    unavailable: Callable[[Call, VirtError], str] | None = None  # the words of a failed `find` (told() otherwise)
    again: Callable[[Call], HttpResponse] | None = None  # the page shown again (the template by default)
    answer: Callable[[Call, Any], HttpResponse | None] | None = None  # a bespoke answer to an outcome (None: usual)
    # A GET goes to this URL instead (the form is on another page, so a reload never ends on a 405); "": the template.
    elsewhere: Callable[[Call], str] | None = None
    confirm_when: Callable[[Call], bool] | None = None  # which requests confirm_field applies to (None: every one)
    unreadable: Callable[[Call, VirtError], HttpResponseBase] | None = None  # a bespoke answer to a failed `find`
    names_vm: bool = False  # the URL names a VM (vm_route) though no VM grant is declared (an admin's: clone, share)
    access: Access | None = None  # the route's check when not the declaration's (OWNER: `run` checks whose it is)


def _chosen(declared: Operation | Access, args: dict[str, Any]) -> Operation:
    if isinstance(declared, Operation):
        return declared
    op = declared.choices.get(str(args.get(declared.by, "")))
    if op is None:  # route() has answered 404 already; kept for the type
        raise Http404(_("No such action."))
    return op


def _shown(page: OperationPage, call: Call) -> HttpResponse:
    """The page again, after a field error or a failure said on the form (200, as the form pages always did)."""
    if page.again is not None:
        return page.again(call)
    return render(call.request, page.template, call.context)


def _handle(page: OperationPage, call: Call) -> HttpResponseBase:
    request = call.request
    if call.host is not None:
        call.context.setdefault("host", call.host)
    if call.ref is not None:
        call.context.setdefault("ref", call.ref)
    if not call.posted and page.elsewhere is not None and (elsewhere := page.elsewhere(call)):
        return redirect(elsewhere)
    try:
        if page.find is not None:
            page.find(call)
    except NotFound:
        raise Http404(_("No such %(what)s on this host.") % {"what": audit.object_type_words(call.op.target)}) \
            from None
    except VirtError as exc:
        if call.posted and page.audit_unreadable is not None:
            where = call.host.name if call.host is not None else "the host"
            refused(request, call.op, host=call.host, name=page.audit_unreadable(call),
                    reason=f"{where} could not be asked: {exc}")
        if page.unreadable is not None:
            return page.unreadable(call, exc)
        call.context["error"] = page.unavailable(call, exc) if page.unavailable else told(request.user, exc)
        return render(request, page.template, call.context, status=503)
    if page.form is not None:
        call.form = page.form(call, request.POST if call.posted else None)
        call.context["form"] = call.form
    confirming = page.confirm_field and (page.confirm_when is None or page.confirm_when(call))
    if not call.posted or (confirming and request.POST.get(page.confirm_field) != "yes"):
        return render(request, page.template, call.context)
    if call.form is not None and not call.form.is_valid():  # nothing was asked of the host
        if page.refuse_invalid is not None:
            refused(request, call.op, host=call.host, name=page.refuse_invalid(call), reason=call.form.errors.as_text())
        return _shown(page, call)
    result = page.run(call)
    if page.answer is not None and (answered := page.answer(call, result)) is not None:
        return answered
    if call.op.job and result is not None:
        return redirect(result)  # the job's page shows its progress
    failed = result is None or (isinstance(result, Outcome) and not result.ok)
    if failed and call.form is not None:
        return _shown(page, call)  # the error is on the form
    return redirect(page.then(call, result))


def operation_view(page: OperationPage) -> View:
    """The view of an operation's page: the declared check, GET (form or confirmation), POST (run)."""
    if not page.template and (page.find or page.confirm_field):
        raise ValueError(f"{page.declared}: a page that reads first or confirms needs a template")
    methods = ["GET", "POST"] if page.template or page.elsewhere else ["POST"]
    checked = page.access or page.declared
    access = checked.access if isinstance(checked, Operation) else checked
    if access.target == "vm" or page.names_vm:
        def vm_view(request: HttpRequest, ref: Any, **args: Any) -> HttpResponseBase:
            call = Call(request, _chosen(page.declared, args), args, ref=ref, host=ref.host)
            return _handle(page, call)

        return require_http_methods(methods)(vm_route(checked)(vm_view))

    def view(request: HttpRequest, **args: Any) -> HttpResponseBase:
        host = get_object_or_404(Host, name=args[page.host]) if page.host else None
        return _handle(page, Call(request, _chosen(page.declared, args), args, host=host))

    return require_http_methods(methods)(route(checked)(view))
