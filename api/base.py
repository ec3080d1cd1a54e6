"""What every API endpoint shares: the declared access checked before the view runs, forms as the one
validation of pages and API, outcomes and jobs as JSON answers, and forms described in the schema.

An endpoint is an `ApiView` with `access = by_method(GET=..., POST=ops.X)` (or one Access/Operation for
every method). `initial()` runs the pages' own check for the request's method: admins, or the VM's grant
through instances.lookup.vm_or_404 (the view then finds `self.ref`), before any libvirt call; what names an
object the caller may not see (a VM, a host and what it holds, another user's job) answers as what does not
exist: 404 `hidden()`, the refusal still audited. A change validates the page's own form (`valid(form)`:
400 with the form's field errors), runs the page's own declared operation quietly (one audit record, marked
as made through the API) and answers with `answer(outcome)` or, for a job, `accepted(job)` (202 and the
job's URL). Host failures become JSON errors in api/errors.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, cast

from django import forms
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpResponseBase
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from rest_framework import serializers, status
from rest_framework.exceptions import MethodNotAllowed, NotFound, ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.auth import via
from hosts.models import Host
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
        request._request.webkvm_via = via(request)  # type: ignore[attr-defined]  # audit.record reads it (webkvm/audit.py)
        self.check(request, kwargs)

    def check(self, request: Request, kwargs: Mapping[str, Any]) -> None:
        declared = self.declared_access()
        access = declared.of_method(request.method or "GET") if declared.methods else declared
        if access is None:
            raise MethodNotAllowed(request.method or "")
        access = choice(access, kwargs)
        try:
            self._require(request, access, kwargs)
        except PermissionDenied:
            # The refusal is audited. An object on a host (a VM, the host, its pools, volumes, networks) the
            # caller may not see answers as one that does not exist: 404, so names cannot be probed. A VM the
            # caller sees but may not do this with, and the admins' resources that name nothing (hosts/,
            # users/, audit/...) stay 403.
            if "host" not in kwargs or self._sees_vm(request, kwargs):
                raise
            raise hidden() from None

    def _require(self, request: Request, access: Access, kwargs: Mapping[str, Any]) -> None:
        # A route naming a VM finds it after the check (admins' operations too: vm_route does the same).
        if "vm" in kwargs and "host" in kwargs and access.permission in (ADMIN, *VM_GRANTS):
            needed = access.permission
            if needed == ADMIN:
                permissions.require_admin(request, object_name=str(kwargs["vm"]))
                needed = VMPermission.VIEW
            self.ref = vm_or_404(request, kwargs["host"], kwargs["vm"], needed)
        elif access.permission == ADMIN:
            permissions.require_admin(request, object_name=request.path)

    @staticmethod
    def _sees_vm(request: Request, kwargs: Mapping[str, Any]) -> bool:
        if "vm" not in kwargs:
            return False
        host = Host.objects.filter(name=str(kwargs["host"])).first()
        return host is not None and permissions.can(request.user, VMPermission.VIEW, host=host,
                                                    vm_uuid=str(kwargs["vm"]).lower())


def hidden() -> NotFound:
    """The one answer to an object the caller may not see and to one that does not exist (the API's 404)."""
    return NotFound(_("No such object, or you may not see it."))


def job_or_404(request: Request, job_id: int) -> Job:
    """The job the URL names, its owner's or any for an admin (the pages' check, audited); another user's job
    answers as one that does not exist."""
    from jobs.views import _job_or_403  # jobs.views imports the operations this module's callers declare

    try:
        return _job_or_403(request, job_id)
    except PermissionDenied:
        raise hidden() from None


def declared(view: type[ApiView]) -> Callable[..., HttpResponseBase]:
    """The Django view of an API class, carrying its declared access for the route walk
    (tests/unit/test_routes.py). DRF authenticates (token or session) inside the view, so
    LoginRequiredMiddleware leaves it alone: an anonymous caller gets 401 in JSON, not the login page."""
    function = login_not_required(view.as_view())
    setattr(function, ACCESS_ATTRIBUTE, view.declared_access())
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

# A field of the API's serializers: they describe JSON and hold no model, so its types are Any.
Field = serializers.Field[Any, Any, Any, Any]


# What the API's serializers derive from: they describe JSON in the schema (the answers are built as dicts,
# the pages' forms validate), so their instance is Any. A key that is also an attribute of REST framework's
# fields and serializers (`source`, `label`, `fields`, `parent`) is declared with a trailing underscore
# (`source_ = serializers.CharField()`): the key itself has none. No docstring: the schema would give it to
# every serializer as its description.
class Serializer(serializers.Serializer[Any]):
    def get_fields(self) -> dict[str, Field]:
        return {name.removesuffix("_"): field for name, field in super().get_fields().items()}


_Row = TypeVar("_Row")


def page_of(paginator: BasePagination, rows: Sequence[_Row], request: Request, view: APIView) -> list[_Row]:
    """The rows of a list that the request's page asks for (`limit`, `offset`). REST framework pages any
    sequence; the stubs pinned (3.16, the last for django-stubs 5.2) type only a queryset."""
    return paginator.paginate_queryset(cast("QuerySet[Any, _Row]", rows), request, view=view) or []


class Done(Serializer):
    message = serializers.CharField(help_text="what was done, in words")


class Accepted(Serializer):
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

def _field(field: forms.Field) -> Field:
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


_SCHEMAS: dict[str, type[Serializer]] = {}


def form_schema(form: type[forms.BaseForm], name: str, **fields: Field) -> type[Serializer]:
    """A serializer describing `form`'s fields (for the schema only; the form validates). Choices set from
    the host at run time are described as strings. `fields` adds or replaces fields."""
    if name in _SCHEMAS:
        return _SCHEMAS[name]
    described: dict[str, Any] = {}
    for field_name, field in fields_of(form).items():
        described[field_name] = _field(field)
    described.update(fields)
    schema = type(name, (Serializer,), described)
    _SCHEMAS[name] = schema
    return schema
