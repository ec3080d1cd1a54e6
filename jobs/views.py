"""The job pages: one page per job (and its JSON, which the page polls), the list, and Cancel.

Admins see every job; anybody else sees only the jobs they started (a refusal is a 403, audited, as
on the other admin pages). Each page first ends the jobs whose worker is gone (jobs/reconcile.py).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from jobs import runner
from jobs.models import Job, JobState
from jobs.reconcile import reconcile
from virt.errors import Busy, gettext_noop
from webkvm.i18n import said
from webkvm.operations import LOGIN, OWNER, page, route
from webkvm.permissions import is_admin, require_admin

log = logging.getLogger(__name__)


def _reconciled() -> None:
    try:
        reconcile()
    except Exception:  # a page must show even when tidying up fails; the next one tries again
        log.exception("reconciling jobs failed")


def _job_or_403(request: HttpRequest, job_id: int) -> Job:
    job = Job.objects.select_related("host", "owner").filter(pk=job_id).first()
    if is_admin(request.user):
        if job is None:
            raise Http404("No such job.")
        return job
    if job is not None and job.owner_id is not None and job.owner_id == request.user.pk and request.user.is_active:
        return job
    require_admin(request, object_name=f"job {job_id}")  # raises PermissionDenied and audits it
    raise AssertionError("unreachable")


def as_json(job: Job, user: Any) -> dict[str, Any]:
    """The job as its page's script reads it, in the active language (the reader's): `state` is the code,
    `state_label` its word; label, summary, phase and result are said in that language."""
    kind = runner.kind_of(job)
    return {
        "id": job.pk, "kind": job.kind, "label": job.kind_label, "summary": job.shown_summary,
        "target": {"type": job.target_type, "name": job.target_name}, "host": job.host.name if job.host else None,
        "state": job.state, "state_label": job.state_label, "active": job.active, "phase": job.shown_phase,
        "done": job.done, "total": job.total, "unit": kind.unit if kind else "", "percent": job.percent,
        "result": job.shown_result_for(user), "seconds": job.seconds,
        "can_cancel": can_cancel(job), "link": _link(job),
    }


def can_cancel(job: Job) -> bool:
    kind = runner.kind_of(job)
    return job.state == JobState.QUEUED or (job.state == JobState.RUNNING and kind is not None and kind.cancellable
                                            and not job.cancel_requested)


def _link(job: Job) -> str | None:
    kind = runner.kind_of(job)
    return kind.link(job) if kind is not None and kind.link is not None else None


# The link to what a job made or changed, by the kind of its target, unless its kind words it.
_SHOW = {"vm": gettext_noop("Show vms"), "volume": gettext_noop("Show volumes"), "pool": gettext_noop("Show pools"),
         "network": gettext_noop("Show networks"), "host": gettext_noop("Show hosts")}


def _link_text(job: Job) -> str:
    kind = runner.kind_of(job)
    if kind is not None and kind.link_text:
        return gettext(kind.link_text)
    shown = _SHOW.get(job.target_type)
    return gettext(shown) if shown else f"Show {job.target_type}s"


@require_GET
@route(page(LOGIN))  # admins see every job, anybody else their own
def job_list(request: HttpRequest) -> HttpResponse:
    _reconciled()
    jobs = Job.objects.select_related("host", "owner")
    if not is_admin(request.user):
        jobs = jobs.filter(owner_id=request.user.pk)
    filters = {key: request.GET.get(key, "").strip()[:64] for key in ("state", "kind")}
    if filters["state"] in JobState.values:
        jobs = jobs.filter(state=filters["state"])
    if filters["kind"]:
        jobs = jobs.filter(kind=filters["kind"])
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    rows = [(job, job.shown_result_for(request.user)) for job in page]
    kinds = sorted(((k.name, gettext(k.label)) for k in runner.KINDS.values()), key=lambda k: k[1])
    return render(request, "jobs/list.html", {"page": page, "rows": rows, "filters": filters,
                                              "states": JobState.choices, "kinds": kinds})


@require_GET
@route(page(OWNER))  # the job's owner or an admin: _job_or_403
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    _reconciled()
    job = _job_or_403(request, job_id)
    kind = runner.kind_of(job)
    children = job.children.select_related("host").order_by("pk")
    return render(request, "jobs/detail.html", {"job": job, "result": job.shown_result_for(request.user),
                                                "label": job.kind_label,
                                                "unit": kind.unit if kind else "", "can_cancel": can_cancel(job),
                                                "link": _link(job), "link_text": _link_text(job),
                                                "children": [(child, child.shown_result_for(request.user))
                                                             for child in children]})


@require_GET
@route(page(OWNER, polled=True))  # the job's owner or an admin: _job_or_403
def job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    _reconciled()
    return JsonResponse(as_json(_job_or_403(request, job_id), request.user))


@require_POST
@route(page(OWNER))  # the job's owner or an admin: _job_or_403
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_or_403(request, job_id)
    try:
        messages.info(request, cancel(request, job))
    except Busy as exc:
        messages.error(request, said(exc))
    return redirect(job)


def cancel(request: HttpRequest, job: Job) -> str:
    """Cancel: a queued job at once, a running one of a cancellable kind at its next step; what happened in
    words, in the active language (an ended job is left as it is). Raises Busy for a running job that cannot be
    stopped."""
    return runner.request_cancel(job, request.user.get_username())
