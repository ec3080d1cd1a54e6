"""Helpers every app's views share: the admin gate and rendering libvirt failures."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse

from webkvm.permissions import require_admin


def admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Hosts, storage and networks are admin-only: 403 (and an audit record) for anybody else."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        require_admin(request, object_name=request.path)
        return view(request, *args, **kwargs)

    return wrapped
