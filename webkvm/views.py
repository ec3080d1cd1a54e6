"""Home page, the audit log and the answer to a locked-out log-in."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from webkvm.models import AuditEvent, AuditResult, VMGrant
from webkvm.operations import ADMIN, LOGIN, page, route
from webkvm.permissions import is_admin


@require_GET
@route(page(LOGIN))  # shows only the VMs granted to the user
def home(request: HttpRequest) -> HttpResponse:
    """Admins land on the hosts; everybody else on their VMs: the VM list's table (state, console, the power
    actions their grants allow, bulk actions), or a word on how to get access while they have none."""
    if is_admin(request.user):
        return redirect("hosts:list")
    from instances.fleet import Filters  # instances imports webkvm
    from instances.views.fleet import fleet_context

    if not VMGrant.objects.filter(user_id=request.user.pk or 0).exists():
        return render(request, "home.html", {"nothing": True})
    return render(request, "home.html", fleet_context(request, Filters.from_query(request.GET), None))


@require_GET
@route(page(ADMIN))
def audit_log(request: HttpRequest) -> HttpResponse:
    events = AuditEvent.objects.all()
    filters = {key: request.GET.get(key, "").strip()[:100] for key in ("user", "action", "result", "q")}
    if filters["user"]:
        events = events.filter(username=filters["user"])
    if filters["action"]:
        events = events.filter(action__startswith=filters["action"])
    if filters["result"] in AuditResult.values:
        events = events.filter(result=filters["result"])
    if filters["q"]:
        q = filters["q"]
        events = events.filter(Q(object_name__icontains=q) | Q(host_name__icontains=q) | Q(detail__icontains=q))
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "audit/list.html", {"page": page, "filters": filters, "results": AuditResult.values})


def login_locked_out(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes' answer to a log-in while the address or user name is locked out: the log-in page, saying
    why and for how long, with 429 (the password is not even checked)."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    said = (f"Too many failed log-ins from your address or for this user name: log-in is locked for "
            f"{minutes} minutes after the last attempt. Try again later, or ask an admin.")
    username = str((credentials or {}).get("username", ""))[:150]
    form = AuthenticationForm(request, initial={"username": username})
    return render(request, "registration/login.html", {"form": form, "locked_out": said,
                                                       "next": request.POST.get("next", "")[:2000]}, status=429)
