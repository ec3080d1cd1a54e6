"""Home page and the audit log."""

from __future__ import annotations

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
    if is_admin(request.user):
        return redirect("hosts:list")
    grants = VMGrant.objects.filter(user_id=request.user.pk or 0).select_related("host")
    return render(request, "home.html", {"grants": grants})


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
