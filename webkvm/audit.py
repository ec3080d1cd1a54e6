"""Writing audit records: one per action, whatever its outcome."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from webkvm.models import AuditEvent, AuditResult


def record(request: HttpRequest | None, action: str, *, object_type: str, object_name: str = "",
           host_name: str = "", result: str = AuditResult.OK, detail: str = "",
           user: Any = None, remote_addr: str | None = None, duration_ms: int | None = None) -> AuditEvent:
    """`user` and `remote_addr` stand in for the request where there is none (the console proxy)."""
    if request is not None:
        user = getattr(request, "user", None)
        remote_addr = request.META.get("REMOTE_ADDR")
    authenticated = bool(user is not None and user.is_authenticated)
    return AuditEvent.objects.create(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "",
        action=action,
        object_type=object_type,
        object_name=object_name[:255],
        host_name=host_name[:100],
        result=result,
        detail=detail[:4000],
        remote_addr=remote_addr,
        duration_ms=duration_ms,
    )
