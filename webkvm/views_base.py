"""Helpers every app's views share: per-host pages that show libvirt failures, and
changes whose input the host may still refuse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import libvirt
from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from hosts import services
from hosts.models import Host
from virt.devices import FieldProblem
from virt.errors import InvalidInput, VirtError
from virt.reads import Read
from webkvm.i18n import said
from webkvm.operations import Operation, Outcome, host_trouble, perform, refused, told

T = TypeVar("T")


def host_page(request: HttpRequest, host_name: str, template: str, key: str,
              fetch: Callable[[Any], Any] | Read[Any], timeout: float | None = None) -> HttpResponse:
    """A per-host page built from one libvirt call (a shared Read where several people look at the same
    thing): the value under `key`, or the host's failure in words ("busy: ...", "unreachable: ...")
    with 503 (an unreachable host never turns into a 500)."""
    host = get_object_or_404(Host, name=host_name)
    context: dict[str, Any] = {"host": host}
    try:
        if isinstance(fetch, Read):
            context[key] = services.read(host, fetch, timeout)
        else:
            context[key] = services.call(host, fetch, timeout)
    except VirtError as exc:
        context["error"] = told(request.user, exc, host_trouble(exc))
        return render(request, template, context, status=503)
    return render(request, template, context)


def on_host_checked(request: HttpRequest, op: Operation, host: Host, name: str,
                    fn: Callable[[libvirt.virConnect], T], *, form: forms.Form, rejects: type[InvalidInput],
                    done: str | Callable[[T], str], place: Callable[[Any], str | None] | None = None,
                    detail: str | Callable[[T], str] = "", audit_refusal: bool = True,
                    quiet: bool = False) -> Outcome[T]:
    """on_host() (webkvm/operations.py) for a change whose input the host may still refuse before it
    changes anything: `rejects` (an InvalidInput carrying `problems`, each with a field and a message).
    Each problem becomes an error of the form field `place` names (by default its own field if the form
    has it; None: the form as a whole), and the refusal is audited once (`refused`) unless
    `audit_refusal` is false; `quiet` leaves the success message to the caller (the API). Anything else
    goes as in on_host()."""
    rejected: list[InvalidInput] = []
    where = place or (lambda problem: problem.field if problem.field in form.fields else None)

    def work() -> T:
        try:
            return services.change(host, fn, op.timeout)
        except rejects as exc:
            rejected.append(exc)
            problems = getattr(exc, "problems", [])
            if not problems:
                raise FieldProblem("", "{problem}", problem=exc) from None
            # perform() puts the first on its field, the others follow below
            raise FieldProblem(where(problems[0]) or "", "{problem}", problem=problems[0].message) from None

    outcome = perform(request, op, host=host, name=name, work=work, done=done, detail=detail, form=form,
                      quiet=quiet)
    if outcome.field_problem and rejected:
        for problem in getattr(rejected[0], "problems", [])[1:]:
            field = where(problem)
            words = said(problem.message)
            if words not in form.errors.get(field or NON_FIELD_ERRORS, []):
                form.add_error(field, words)
        if audit_refusal:
            refused(request, op, host=host, name=name, reason=str(rejected[0]))
    return outcome

