"""Home page, the audit log and the answer to a locked-out log-in."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET

from webkvm.i18n import said
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
    from instances import quotas  # instances imports webkvm
    from instances.fleet import Filters
    from instances.views.fleet import fleet_context

    # A user with a quota may make VMs themselves: their page says so, with what is left.
    mine = {"quota_left": said(quotas.left(request.user))} if quotas.limits_for(request.user) else {}
    if not VMGrant.objects.filter(user_id=request.user.pk or 0).exists():
        return render(request, "home.html", {"nothing": True, **mine})
    return render(request, "home.html", {**fleet_context(request, Filters.from_query(request.GET), None), **mine})


class AuditFilters(forms.Form):
    """The audit log's filters, on the page and in the API (GET /api/v1/audit/)."""

    user = forms.CharField(required=False, help_text=gettext_lazy("exactly this user name"))
    action = forms.CharField(required=False, help_text=gettext_lazy("actions starting with this, e.g. vm. or vm.start"))
    result = forms.ChoiceField(required=False, choices=[("", gettext_lazy("any")), *AuditResult.choices])
    host = forms.CharField(required=False, help_text=gettext_lazy("exactly this host name"))
    object = forms.CharField(required=False, help_text=gettext_lazy("exactly this object name"))
    q = forms.CharField(required=False,
                        help_text=gettext_lazy("part of the object's name, the host's name or the detail"))
    since = forms.DateTimeField(required=False, label=gettext_lazy("from"),
                                help_text=gettext_lazy("from this time on (ISO 8601)"))
    until = forms.DateTimeField(required=False, label=gettext_lazy("to"),
                                help_text=gettext_lazy("up to this time (ISO 8601)"))


def audit_events(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The events the filters choose, newest first; a filter that is not valid chooses nothing away (the page
    ignores it; the API refuses it before asking)."""
    chosen: dict[str, Any] = getattr(filters, "cleaned_data", {})  # is_valid() keeps only valid fields

    def text(key: str) -> str:
        return str(chosen.get(key) or "").strip()[:100]

    events = AuditEvent.objects.all()
    if user := text("user"):
        events = events.filter(username=user)
    if action := text("action"):
        events = events.filter(action__startswith=action)
    if result := text("result"):
        events = events.filter(result=result)
    if host := text("host"):
        events = events.filter(host_name=host)
    if name := text("object"):
        events = events.filter(object_name=name)
    if q := text("q"):
        events = events.filter(Q(object_name__icontains=q) | Q(host_name__icontains=q) | Q(detail__icontains=q))
    if chosen.get("since"):
        events = events.filter(time__gte=chosen["since"])
    if chosen.get("until"):
        events = events.filter(time__lte=chosen["until"])
    return events


@require_GET
@route(page(ADMIN))
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilters(request.GET)
    form.is_valid()  # the page leaves out what is not valid, and says so on the field
    filters = {key: request.GET.get(key, "").strip()[:100] for key in form.fields}
    page = Paginator(audit_events(form), 50).get_page(request.GET.get("page"))
    return render(request, "audit/list.html", {"page": page, "filters": filters, "results": AuditResult.choices,
                                               "problems": [(form.fields[name].label or name, error)
                                                            for name, errors in form.errors.items()
                                                            for error in errors]})


def login_locked_out(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes' answer to a log-in while the address or user name is locked out: the log-in page, saying
    why and for how long, with 429 (the password is not even checked)."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    said = ngettext("Too many failed log-ins from your address or for this user name: log-in is locked for "
                    "%(minutes)d minute after the last attempt. Try again later, or ask an admin.",
                    "Too many failed log-ins from your address or for this user name: log-in is locked for "
                    "%(minutes)d minutes after the last attempt. Try again later, or ask an admin.",
                    minutes) % {"minutes": minutes}
    username = str((credentials or {}).get("username", ""))[:150]
    form = AuthenticationForm(request, initial={"username": username})
    return render(request, "registration/login.html", {"form": form, "locked_out": said,
                                                       "next": request.POST.get("next", "")[:2000]}, status=429)
