"""Writing audit records: one per action, whatever its outcome; repeated refusals counted on one row."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from webkvm.models import AuditEvent, AuditResult

# Identical refusals within this long of a row's first one add to its `repeats` instead of a row each, so
# what anonymous clients (or anybody retrying) can make the table store is one row per kind of refusal,
# client and window.
REPEAT_WINDOW = timedelta(hours=1)


def is_refusal(action: str, result: str) -> bool:
    """Refusals are counted, not listed: denied requests, refused consoles and failed log-ins."""
    return result == AuditResult.DENIED or (action == "login" and result == AuditResult.FAILED)


def record(request: HttpRequest | None, action: str, *, object_type: str, object_name: str = "",
           host_name: str = "", result: str = AuditResult.OK, detail: str = "",
           user: Any = None, remote_addr: str | None = None, duration_ms: int | None = None) -> AuditEvent:
    """`user` and `remote_addr` stand in for the request where there is none (the console proxy)."""
    if request is not None:
        user = getattr(request, "user", None)
        remote_addr = request.META.get("REMOTE_ADDR")
        # Set by the API's views (api/views.py): "through the API, token NAME" (or "..., session").
        if via := getattr(request, "webkvm_via", ""):
            detail = f"{detail} ({via})" if detail else via
    authenticated = bool(user is not None and user.is_authenticated)
    fields: dict[str, Any] = {
        "user": user if authenticated else None,
        "username": user.get_username() if authenticated else "",
        "action": action,
        "object_type": object_type,
        "object_name": object_name[:255],
        "host_name": host_name[:100],
        "result": result,
        "detail": detail[:4000],
        "remote_addr": remote_addr or None,
    }
    if is_refusal(action, result):
        now = timezone.now()
        with transaction.atomic():
            same = AuditEvent.objects.filter(**fields, time__gte=now - REPEAT_WINDOW).order_by("-time", "-id")
            earlier = same.select_for_update().first()
            if earlier is not None:
                AuditEvent.objects.filter(pk=earlier.pk).update(repeats=F("repeats") + 1, last_time=now)
                earlier.refresh_from_db(fields=["repeats", "last_time"])
                return earlier
    return AuditEvent.objects.create(**fields, duration_ms=duration_ms)
