"""Every API error as JSON: `{"code": "...", "message": "...", "fields": {...}}` (fields only for 400).

The codes are stable (scripts test them); the messages are words for people."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from virt.devices import FieldProblem
from virt.errors import Busy, HostBusy, InvalidState, NotFound, Unreachable, VirtError
from virt.snapshots import NoSuchSnapshot

CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "permission_denied",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_409_CONFLICT: "conflict",
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "too_large",
    status.HTTP_429_TOO_MANY_REQUESTS: "throttled",
}


class Conflict(exceptions.APIException):
    """409: the VM is busy with another operation, a stale edit, a state that does not allow the action."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = gettext_lazy("The object is busy or in a state that does not allow this.")
    default_code = "conflict"


def _words(detail: Any) -> str:
    if isinstance(detail, list):
        return " ".join(_words(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(f"{k}: {_words(v)}" for k, v in detail.items())
    return str(detail)


def _code(exc: exceptions.APIException, status_code: int) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str) and codes not in ("error", "invalid", "permission_denied", "not_found"):
        return codes
    return CODES.get(status_code, codes if isinstance(codes, str) else "error")


class TooLarge(exceptions.APIException):
    """413: a body the panel will not read (a definition larger than it keeps)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = gettext_lazy("The request body is too large.")
    default_code = "too_large"


class Unavailable(exceptions.APIException):
    """503: the host cannot be reached (or asked) now."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = gettext_lazy("The host is unavailable.")
    default_code = "host_unavailable"


def from_host(exc: VirtError, user: Any) -> exceptions.APIException:
    """A failure of the virt layer as an API error with a stable code; the words are those a page shows
    this user in their language (webkvm.operations.told: the host's own text only for admins)."""
    from webkvm.operations import told  # webkvm.operations imports hosts, which is loaded after this module

    words = told(user, exc)
    if isinstance(exc, FieldProblem):
        return exceptions.ValidationError({exc.field or "non_field_errors": [words]})
    if isinstance(exc, (NotFound, NoSuchSnapshot)):
        return exceptions.NotFound(words)
    if isinstance(exc, Busy):
        return Conflict(words, code="vm_busy")
    if isinstance(exc, HostBusy):
        return Conflict(words, code="host_busy")
    if isinstance(exc, InvalidState):
        return Conflict(words, code="invalid_state")
    if isinstance(exc, Unreachable):
        return Unavailable(words)
    return Conflict(words, code="not_done")


def handle(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, VirtError):
        request = context.get("request")
        exc = from_host(exc, getattr(request, "user", None))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or _("Not found."))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(_("You may not do this."))
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    body: dict[str, Any]
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = {"code": "invalid", "message": _("Some fields are not valid."),
                "fields": {k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in fields.items()}}
    else:
        code = _code(exc, response.status_code)
        if isinstance(exc, exceptions.PermissionDenied) and str(exc.detail).startswith("CSRF Failed"):
            code = "csrf_failed"  # a session caller without the CSRF token (tokens need none)
        body = {"code": code, "message": _words(exc.detail)}
    response.data = body
    return response
