"""One way to declare, check and run an operation.

An operation is declared once, in its app's `operations` module: its name (also its audit action),
label, the kind of object it acts on, the permission it needs, whether it takes the VM's lock, how
long the host may take, and the job kind when it runs as a durable job. From the declaration come:

- the check: `@route(OP)` on the view (`vm_route` hands the view a VMRef found after the check);
  every URL route carries one, and tests/unit/test_routes.py fails for a route without it and runs
  the generated permission table with the personas;
- the run: `perform(...)` (in the request) or `start_job(...)` (on a job worker), each writing the
  one audit record of the operation (result and duration) and the one message the user sees;
- the page: `operation_view(OperationPage(OP, run=..., form=..., template=...))` (webkvm/operation_views.py)
  makes the view (GET the form or confirmation, POST the run) from the declaration; its docstring says
  how to add an operation (declare, write the work the page and the API share, register the page, route
  it) and which apps' pages are generated so.

Failures speak in words; bad input that only the host can judge (FieldProblem) becomes a field error
and is not audited, because nothing was changed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Generic, TypeVar

import libvirt
from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import get_object_or_404
from django.utils import translation
from django.utils.translation import gettext as _

from hosts import services
from hosts.models import Host
from virt.devices import FieldProblem
from virt.errors import NotFound, Said, VirtError, hidden_words, host_words
from webkvm import audit, permissions
from webkvm.i18n import said
from webkvm.models import AuditResult, VMPermission

T = TypeVar("T")
log = logging.getLogger("webkvm.hosts")

# Who may use a route: nobody needs to be logged in, anybody logged in (the page shows only what
# they may see), admins, or a grant on the VM the URL names (VMPermission values).
PUBLIC = "public"
LOGIN = "login"
OWNER = "owner"  # admins, and the user who made the object (a job); the view checks whose it is
ADMIN = "admin"
VM_GRANTS = tuple(p.value for p in VMPermission)


@dataclass(frozen=True)
class Operation:
    name: str  # e.g. vm.start; also its audit action
    label: str  # e.g. "Start"
    target: str  # vm, host, pool, volume, network, flavor, user, job
    permission: str  # ADMIN or a VM grant
    lock: bool = False  # runs under the VM's lock (another change of the VM meanwhile is "busy")
    timeout: float = 60.0  # seconds the host may take
    job: str = ""  # the job kind (jobs/runner.py) when it runs on a job worker
    confirm: str = ""  # a sentence the user confirms before it runs (data can be lost)
    api: bool = True  # offered through the API too (tests/unit/test_api_schema.py); False: pages only, say why

    @property
    def access(self) -> Access:
        return Access(self.permission, "vm" if self.permission in VM_GRANTS else "panel")


@dataclass(frozen=True)
class Access:
    """What a route requires. A route whose permission depends on a URL argument (the action's name)
    declares `by` (the argument) and `choices` (each value's operation)."""

    permission: str
    target: str = "panel"  # vm: the URL names a VM (host + vm arguments); host: a host whose VMs it shows
    by: str = ""
    choices: Mapping[str, Operation] = field(default_factory=dict)
    polled: bool = False  # a JSON answer pages poll: rate-limited per user (webkvm/rate_limit.py)
    # An API route answering several HTTP methods: each method's own access (a page or an operation).
    methods: Mapping[str, Operation | Access] = field(default_factory=dict)

    def of_method(self, method: str) -> Access | None:
        """The access of one HTTP method on a route that declares `methods` (None: the method is not offered)."""
        declared = self.methods.get(method.upper())
        if declared is None:
            return None
        return declared.access if isinstance(declared, Operation) else declared


def runs(access: Access) -> set[Operation]:
    """The declared operations a route runs (its choices, its methods'): for the API coverage ledger."""
    found = set(access.choices.values())
    for declared in access.methods.values():
        if isinstance(declared, Operation):
            found.add(declared)
        else:
            found |= runs(declared)
    return found


def by_method(**declared: Operation | Access) -> Access:
    """An API route's access per HTTP method: by_method(GET=page(VIEW, "vm"), DELETE=ops.DELETE_VM)."""
    methods = {method.upper(): value for method, value in declared.items()}
    first = next(iter(methods.values()))
    target = (first.access if isinstance(first, Operation) else first).target
    return Access(LOGIN, target, methods=methods)


OPERATIONS: dict[str, Operation] = {}


def declare(op: Operation) -> Operation:
    if op.name in OPERATIONS and OPERATIONS[op.name] != op:
        raise ValueError(f"operation {op.name} is declared twice")
    # LOGIN: an operation anybody logged in may ask for, whose view itself checks what they may do (creating a
    # VM within one's quota, instances/views/create_image.py: no quota, nothing made).
    if op.permission not in (ADMIN, LOGIN, *VM_GRANTS):
        raise ValueError(f"operation {op.name}: unknown permission {op.permission}")
    OPERATIONS[op.name] = op
    return op


def page(permission: str, target: str = "panel", *, polled: bool = False) -> Access:
    """A route that shows something (reads) rather than changes it; `polled` for a JSON answer that pages
    poll (and any other JSON read), which each user may ask only so often (webkvm/rate_limit.py)."""
    return Access(permission, target, polled=polled)


def choice(access: Access, kwargs: Mapping[str, Any]) -> Access:
    """The access of one request on a route that depends on a URL argument; 404 for an unknown value."""
    if not access.by:
        return access
    chosen = access.choices.get(str(kwargs.get(access.by, "")))
    if chosen is None:
        raise Http404(_("No such action."))
    return chosen.access


# --- the check, on every route ---------------------------------------------------------------------

ACCESS_ATTRIBUTE = "webkvm_access"
View = Callable[..., HttpResponseBase]
Decorator = Callable[[View], View]


def _too_often(request: HttpRequest, access: Access, view: View) -> HttpResponseBase | None:
    """The 429 answer of a polled route asked too often by this user (before any check or host call)."""
    if not access.polled:
        return None
    from webkvm import rate_limit

    return rate_limit.check(request, f"{view.__module__}.{view.__qualname__}")


def _check(request: HttpRequest, access: Access, kwargs: Mapping[str, Any]) -> None:
    if access.permission == ADMIN:
        permissions.require_admin(request, object_name=request.path)
    # LOGIN and OWNER: LoginRequiredMiddleware already sent anonymous users to the login page; an OWNER
    # view refuses (403, audited) what is not the user's.


def route(declared: Operation | Access) -> Decorator:
    """The check of a route that does not name a VM: admin, or anybody logged in, or public."""
    access = declared.access if isinstance(declared, Operation) else declared

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if (too_often := _too_often(request, access, view)) is not None:
                return too_often
            _check(request, choice(access, kwargs), kwargs)
            return view(request, *args, **kwargs)

        setattr(wrapped, ACCESS_ATTRIBUTE, access)
        if access.permission == PUBLIC:
            wrapped.login_required = False  # type: ignore[attr-defined]  # LoginRequiredMiddleware reads it
        return wrapped

    return decorate


def vm_route(declared: Operation | Access) -> Decorator:
    """The check of a route naming a VM (`host` and `vm` arguments): the view gets `ref` (a VMRef) in
    their place, found only after the check, so a refusal leaks nothing."""
    access = declared.access if isinstance(declared, Operation) else Access(declared.permission, "vm", declared.by,
                                                                            declared.choices, declared.polled)

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, host: str, vm: uuid.UUID | str, **kwargs: Any) -> HttpResponseBase:
            from instances.lookup import vm_or_404  # instances imports this module

            if (too_often := _too_often(request, access, view)) is not None:
                return too_often
            needed = choice(access, kwargs).permission
            if needed == ADMIN:
                permissions.require_admin(request, object_name=str(vm))
                needed = VMPermission.VIEW
            return view(request, vm_or_404(request, host, vm, needed), **kwargs)

        setattr(wrapped, ACCESS_ATTRIBUTE, access)
        return wrapped

    return decorate


def access_of(view: Callable[..., Any]) -> Access | None:
    return getattr(view, ACCESS_ATTRIBUTE, None)


# --- the run ----------------------------------------------------------------------------------------


def told(user: Any, exc: VirtError, words: str = "") -> str:
    """The one place a host's failure becomes words for a page, a JSON answer or a message: admins read
    `words` (by default the error's own text, libvirt's and ssh's included); everybody else reads the
    panel's own words ("busy", "db-01 has no disk vdz.") but of the host's words only that it failed.
    The log keeps what they were not shown."""
    if permissions.is_admin(user) or not exc.from_host:
        return words or said(exc)
    log.warning("host error not shown to %s: %s", getattr(user, "username", "?") or "?", exc)
    return _(hidden_words(exc))


def host_trouble(exc: VirtError) -> str:
    """How a host's part of a page names a failed read (virt.errors.host_words), in the active language."""
    return said(host_words(exc))


def label_of(op: Operation) -> str:
    """An operation's label in the active language (the label is marked where the operation is declared)."""
    return _(str(op.label))


@dataclass(frozen=True)
class Outcome(Generic[T]):
    name: str  # the object's name as audited
    value: T | None = None
    error: str = ""  # in words; empty when it worked
    field_problem: bool = False  # bad input the host judged: nothing changed, nothing audited
    exception: VirtError | None = None  # what failed, for callers that tell failures apart
    message: str = ""  # what the user was (or, quiet, would have been) told when it worked

    @property
    def ok(self) -> bool:
        return not self.error


def _words(text: str | Callable[[T], str], value: T) -> str:
    """The words as given: a Text of the virt layer stays English here (str), for the audit record."""
    return text(value) if callable(text) else text


def _shown(text: str | Callable[[T], str], value: T) -> str:
    """The words for the user: a message of ours (a Text, a Message) in the active language."""
    words = _words(text, value)
    return said(words) if isinstance(words, Said) else str(words)


def perform(request: HttpRequest, op: Operation, *, host: Host | None, name: str, work: Callable[[], T],
            done: str | Callable[[T], str], detail: str | Callable[[T], str] = "",
            form: forms.BaseForm | None = None, quiet: bool = False,
            audited_name: Callable[[T], str] | None = None, asked: str = "") -> Outcome[T]:
    """Run work() once: one audit record (result, duration) and one message (or a form error).

    `done` is the message when it worked, `detail` the audit record's detail (`done` unless given),
    `asked` what was asked in words, kept in the record of a failure (`detail` when it is a text);
    `quiet` leaves the messages to the caller (a page that shows the outcome itself)."""
    started = time.monotonic()
    host_name = host.name if host is not None else ""

    def record(result: str, text: str, object_name: str) -> None:
        audit.record(request, op.name, object_type=op.target, object_name=object_name, host_name=host_name,
                     result=result, detail=text, duration_ms=int((time.monotonic() - started) * 1000))

    try:
        value = work()
    except FieldProblem as exc:
        problem = said(exc)
        if form is not None:
            form.add_error(exc.field if exc.field in form.fields else None, problem)
        elif not quiet:
            messages.error(request, problem)
        return Outcome(name, error=problem, field_problem=True, exception=exc)
    except NotFound:
        raise Http404(_("No such %(what)s on this host.")
                      % {"what": audit.object_type_words(op.target)}) from None
    except VirtError as exc:
        # What was asked stays in the record of a failure too.
        asked_words = asked or (detail if isinstance(detail, str) else "")
        record(AuditResult.FAILED, f"{asked_words}: {exc}" if asked_words else str(exc), name)
        failed = _("%(action)s: not done: %(reason)s") % {"action": label_of(op), "reason": told(request.user, exc)}
        if form is not None:
            form.add_error(None, failed)
        elif not quiet:
            messages.error(request, failed)
        return Outcome(name, error=said(exc), exception=exc)
    object_name = audited_name(value) if audited_name is not None else name
    message = _shown(done, value)
    with translation.override(settings.LANGUAGE_CODE):  # the audit log reads alike whoever acted
        record(AuditResult.OK, _words(detail or done, value), object_name)
    if not quiet:
        messages.success(request, message)
    return Outcome(object_name, value, message=message)


def on_vm(request: HttpRequest, op: Operation, ref: Any, fn: Callable[[libvirt.virDomain], T], *,
          done: str | Callable[[T], str], detail: str | Callable[[T], str] = "",
          form: forms.BaseForm | None = None, quiet: bool = False) -> Outcome[T]:
    """perform() of fn(domain) on the VM `ref` names, under its lock when the operation takes it.
    The audit record names the VM (its name at the time) and carries its UUID."""

    def run(dom: libvirt.virDomain) -> tuple[str, T]:
        return str(dom.name()), fn(dom)

    def work() -> tuple[str, T]:
        if op.lock:
            result: tuple[str, T] = ref.call_locked(run, op.timeout)
        else:
            result = ref.call(run, op.timeout)
        return result

    def named(text: str | Callable[[T], str]) -> Callable[[tuple[str, T]], str]:
        return lambda pair: _("%(name)s: %(done)s") % {"name": pair[0], "done": _shown(text, pair[1])}

    asked = f"uuid {ref.uuid}" + (f"; {detail}" if isinstance(detail, str) and detail else "")

    def audited(pair: tuple[str, T]) -> str:
        return f"uuid {ref.uuid}; {_words(detail or done, pair[1])}"

    outcome = perform(request, op, host=ref.host, name=ref.uuid, work=work, done=named(done), detail=audited,
                      form=form, quiet=quiet, audited_name=lambda pair: pair[0], asked=asked)
    value = outcome.value[1] if outcome.value is not None else None
    return Outcome(outcome.name, value, outcome.error, outcome.field_problem, outcome.exception, outcome.message)


def on_host(request: HttpRequest, op: Operation, host: Host, name: str, fn: Callable[[libvirt.virConnect], T], *,
            done: str | Callable[[T], str], detail: str | Callable[[T], str] = "",
            form: forms.BaseForm | None = None, quiet: bool = False) -> Outcome[T]:
    """perform() of fn(connection) on `host`, for objects of the host (pools, volumes, networks); the
    shared reads of the host are refreshed afterwards."""
    return perform(request, op, host=host, name=name, work=lambda: services.change(host, fn, op.timeout),
                   done=done, detail=detail, form=form, quiet=quiet)


def refused(request: HttpRequest, op: Operation, *, host: Host | None, name: str, reason: str) -> None:
    """Audit an operation the panel itself refused before asking the host (bad input, a rule)."""
    audit.record(request, op.name, object_type=op.target, object_name=name, host_name=host.name if host else "",
                 result=AuditResult.FAILED, detail=f"refused: {reason}")


def host_or_404(name: str) -> Host:
    return get_object_or_404(Host, name=name)


def start_job(request: HttpRequest, op: Operation, *, host: Host | None, name: str, params: dict[str, Any],
              summary: str | Said = "", form: forms.BaseForm | None = None, quiet: bool = False) -> Any:
    """Hand the operation to a job worker; returns the Job (its page shows the progress, and the job
    writes the operation's audit record when it ends), or None when it could not start: then the
    refusal is audited and said (on the form when there is one; `quiet`: raised, for the API to answer)."""
    from jobs import runner  # jobs imports this module's callers

    try:
        return runner.start(request, op.job, host, runner.Target(op.target, name), params, summary=summary)
    except VirtError as exc:
        refused(request, op, host=host, name=name, reason=str(exc))
        failed = _("%(action)s: not started: %(reason)s") % {"action": label_of(op), "reason": told(request.user, exc)}
        if quiet:
            raise
        if form is not None:
            form.add_error(None, failed)
        else:
            messages.error(request, failed)
        return None
