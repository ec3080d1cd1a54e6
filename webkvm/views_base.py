"""Helpers every app's views share: the admin gate and per-host pages that show libvirt failures."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from hosts import services
from hosts.models import Host
from virt.errors import VirtError, host_words
from virt.reads import Read
from webkvm.permissions import require_admin


def admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Hosts, storage and networks are admin-only: 403 (and an audit record) for anybody else."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        require_admin(request, object_name=request.path)
        return view(request, *args, **kwargs)

    return wrapped


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
        context["error"] = host_words(exc)
        return render(request, template, context, status=503)
    return render(request, template, context)
