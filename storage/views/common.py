"""What the storage views share: host lookup, deadlines, and one audit record per action."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from hosts.models import Host
from webkvm import audit
from webkvm.models import AuditResult

# Building, deleting or refreshing a pool and allocating a volume can take a while on real storage.
ACTION_TIMEOUT = 60.0
LIST_TIMEOUT = 15.0  # a pool of many volumes costs one call per volume


def host_or_404(name: str) -> Host:
    return get_object_or_404(Host, name=name)


def done(request: HttpRequest, action: str, object_type: str, name: str, host: Host, message: str,
         detail: str = "") -> None:
    messages.success(request, message)
    audit.record(request, action, object_type=object_type, object_name=name, host_name=host.name,
                 detail=detail or message)


def failed(request: HttpRequest, action: str, object_type: str, name: str, host: Host, error: object,
           *, show: bool = True) -> None:
    if show:
        messages.error(request, f"{host.name}: {error}")
    audit.record(request, action, object_type=object_type, object_name=name, host_name=host.name,
                 result=AuditResult.FAILED, detail=str(error))
