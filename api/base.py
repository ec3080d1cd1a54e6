"""What every API endpoint shares: the declared access checked before the view runs, forms as the one
validation of pages and API, outcomes and jobs as JSON answers, and forms described in the schema.

An endpoint is an `ApiView` with `access = by_method(GET=..., POST=ops.X)` (or one Access/Operation for
every method). `initial()` runs the pages' own check for the request's method: admins, or the VM's grant
through instances.lookup.vm_or_404 (the view then finds `self.ref`), before any libvirt call. A change
validates the page's own form (`valid(form)`: 400 with the form's field errors), runs the page's own
declared operation quietly (one audit record, marked as made through the API) and answers with
`answer(outcome)` or, for a job, `accepted(job)` (202 and the job's URL). Host failures become JSON errors
in api/errors.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from django import forms
from django.http import Http404, HttpResponseBase
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from rest_framework import serializers, status
from rest_framework.exceptions import MethodNotAllowed, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.auth import via
from instances.lookup import VMRef, vm_or_404
from jobs.models import Job
from webkvm import languages, permissions
from webkvm.models import VMPermission
from webkvm.operations import ACCESS_ATTRIBUTE, ADMIN, VM_GRANTS, Access, Operation, Outcome, choice


class ApiView(APIView):
    """An API endpoint whose declared access (per method) is checked before its handler runs."""

    access: ClassVar[Access | Operation]
    ref: VMRef  # the VM the URL names (routes whose access targets a VM), found after the check

    @classmethod
    def declared_access(cls) -> Access:
        return cls.access.access if isinstance(cls.access, Operation) else cls.access

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        # A token's user is known only now: answer in their language (the read-only and throttle refusals
        # that follow too), unless the request's Accept-Language asks for one.
        if request.auth is not None and "HTTP_ACCEPT_LANGUAGE" not in request.META:
            code = languages.of_user(request.user)
            translation.activate(code)
            request._request.LANGUAGE_CODE = code

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, read-only tokens, throttles
        request._request.webkvm_via = via(request)  # audit.record reads it (webkvm/audit.py)
        self.check(request, kwargs)

    def check(self, request: Request, kwargs: Mapping[str, Any]) -> None:
        declared = self.declared_access()
        access = declared.of_method(request.method or "GET") if declared.methods else declared
        if access is None:
            raise MethodNotAllowed(request.method or "")
        access = choice(access, kwargs)
        # A route naming a VM finds it after the check (admins' operations too: vm_route does the same).
        if "vm" in kwargs and "host" in kwargs and access.permission in (ADMIN, *VM_GRANTS):
            needed = access.permission
            if needed == ADMIN:
                permissions.require_admin(request, object_name=str(kwargs["vm"]))
                needed = VMPermission.VIEW
            self.ref = vm_or_404(request, kwargs["host"], kwargs["vm"], needed)
        elif access.permission == ADMIN:
            permissions.require_admin(request, object_name=request.path)


def declared(view: type[ApiView]) -> Callable[..., HttpResponseBase]:
    """The Django view of an API class, carrying its declared access for the route walk
    (tests/unit/test_routes.py). DRF authenticates (token or session) inside the view, so
    LoginRequiredMiddleware leaves it alone: an anonymous caller gets 401 in JSON, not the login page."""
    function = view.as_view()
    setattr(function, ACCESS_ATTRIBUTE, view.declared_access())
    function.login_required = False
    return function


# --- input: the pages' own forms ------------------------------------------------------------------------

def data_of(request: Request, form: type[forms.BaseForm] | None = None) -> dict[str, Any]:
    """The JSON body as a form's data (a JSON object; anything else is a 400). With the form's class, a field
    the caller left out takes the page's initial value (the choice the page preselects), so callers send
    only what they mean to set."""
    data = request.data
    if not isinstance(data, Mapping):
        raise ValidationError({"non_field_errors": [_("The body must be a JSON object.")]})
    filled = dict(data)
    if form is not None:
        for name, field in fields_of(form).items():
            if name not in filled and field.initial is not None and not callable(field.initial):
                filled[name] = field.initial
    return filled


def fields_of(form: type[forms.BaseForm]) -> dict[str, forms.Field]:
    """The declared fields of a form class (Form and ModelForm alike: their metaclass sets base_fields)."""
    fields: dict[str, forms.Field] = form.base_fields  # type: ignore[attr-defined]
    return fields


def valid(form: forms.BaseForm) -> dict[str, Any]:
    """The form's cleaned data, or 400 with its errors per field (the page's own words), nothing done."""
    if not form.is_valid():
        raise ValidationError(field_errors(form))
    return dict(form.cleaned_data)


def field_errors(form: forms.BaseForm) -> dict[str, list[str]]:
    return {("non_field_errors" if name == "__all__" else name): [str(m) for m in messages]
            for name, messages in form.errors.items()}


# --- output -------------------------------------------------------------------------------------------

class Done(serializers.Serializer):
    message = serializers.CharField(help_text="what was done, in words")


class Accepted(serializers.Serializer):
    job = serializers.IntegerField()
    url = serializers.URLField(help_text="the job's API URL: GET it until `active` is false")


def answer(outcome: Outcome[Any], form: forms.BaseForm | None = None, *, message: str = "",
           data: Mapping[str, Any] | None = None, created: bool = False) -> Response:
    """The JSON answer of an operation run quietly: 200 (201 when `created`) with its message and `data`;
    bad input the host judged (a taken name): 400 with the form's field errors; a failure: raised for
    api/errors.py to answer with its code (vm_busy, invalid_state, host_unavailable, not_done...)."""
    if outcome.ok:
        body = {"message": message or outcome.message or outcome_words(outcome), **(data or {})}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
    if outcome.field_problem and form is not None and form.errors:
        raise ValidationError(field_errors(form))
    if outcome.exception is not None:
        raise outcome.exception
    raise ValidationError({"non_field_errors": [outcome.error]})


def said(outcome: Outcome[Any], words: Callable[[Any], str] | str | None = None) -> str:
    """The page's message of an operation that worked: "<the VM's name>: <what was done>" (by default the
    virt layer's own words, the value of a device change)."""
    if not outcome.ok:
        return ""  # answer() raises the failure
    value = outcome.value
    text = words(value) if callable(words) else words if words is not None else str(value)
    return _("%(name)s: %(done)s") % {"name": outcome.name, "done": text}


def outcome_words(outcome: Outcome[Any]) -> str:
    value = outcome.value
    if isinstance(value, str):
        return value
    if isinstance(value, tuple) and value and isinstance(value[-1], str):
        return value[-1]
    return _("Done.")


def accepted(job: Job | None, request: Request) -> Response:
    """The answer of a long operation: 202 with the job's API URL (follow it until it is no longer active).
    `job` is None only when start_job(..., quiet=False) refused; API callers pass quiet=True."""
    if job is None:
        raise Http404(_("The job did not start."))
    url = request.build_absolute_uri(reverse("api:job", args=[job.pk]))
    return Response({"job": job.pk, "url": url}, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


# --- the schema: a form described as a request body -----------------------------------------------------

def _field(field: forms.Field) -> serializers.Field:
    # Kept lazy: the schema is written in the language of whoever asks for it.
    common: dict[str, Any] = {"required": field.required, "help_text": field.help_text or field.label or ""}
    if isinstance(field, forms.BooleanField):
        return serializers.BooleanField(required=False, help_text=common["help_text"])
    if isinstance(field, forms.IntegerField):
        return serializers.IntegerField(**common)
    if isinstance(field, forms.MultipleChoiceField):
        return serializers.ListField(child=serializers.CharField(), **common)
    if isinstance(field, forms.ModelChoiceField | forms.ModelMultipleChoiceField):
        return serializers.CharField(**common)  # rows of the database: listing them would query at import
    if isinstance(field, forms.ChoiceField):
        static = [str(value) for value, _ in list(field.choices) if value not in ("", None)]  # type: ignore[arg-type]
        if static:
            return serializers.ChoiceField(choices=static, **common)
        return serializers.CharField(**common)  # choices the host offers at run time
    return serializers.CharField(**common)


_SCHEMAS: dict[str, type[serializers.Serializer]] = {}


def form_schema(form: type[forms.BaseForm], name: str, **fields: serializers.Field) -> type[serializers.Serializer]:
    """A serializer describing `form`'s fields (for the schema only; the form validates). Choices set from
    the host at run time are described as strings. `fields` adds or replaces fields."""
    if name in _SCHEMAS:
        return _SCHEMAS[name]
    described: dict[str, Any] = {}
    for field_name, field in fields_of(form).items():
        described[field_name] = _field(field)
    described.update(fields)
    schema = type(name, (serializers.Serializer,), described)
    _SCHEMAS[name] = schema
    return schema
