"""Evacuate a host: live-migrate every running VM to a chosen host (or spread them over the others by
free memory), one at a time, optionally moving the shut-off ones offline in the same run.

The run is a virt.migrate.Batch: its page (instances/views/migrate.py) shows a progress line per VM,
a stop button and the final report. Admins only: it needs admin rights on every host involved.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from hosts import services
from hosts.models import Host
from instances.host_rows import host_rows
from instances.views.migrate import MigrateForm, make_job, require_migrate
from virt import migrate
from virt.domains import DomainRow
from virt.errors import VirtError, host_words
from webkvm import audit, permissions
from webkvm.models import AuditResult, VMPermission

SPREAD = "__spread__"


class EvacuateForm(MigrateForm):
    include_shut_off = forms.BooleanField(required=False, label="Also move the shut-off VMs (offline)")

    def __init__(self, targets: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(targets, *args, **kwargs)
        target = self.fields["target"]
        assert isinstance(target, forms.ChoiceField)
        target.choices = [(SPREAD, "spread over the other hosts by free memory"), *[(name, name) for name in targets]]
        self.fields["copy_storage"].help_text = "For the running VMs: full copy of their disks."


def _free_memory(hosts: list[Host]) -> tuple[dict[str, int], list[str]]:
    """Free memory per reachable host, and the ones that did not answer."""
    free, down = {}, []
    for outcome in services.call_many(hosts, lambda conn: int(conn.getFreeMemory())):
        if outcome.ok and outcome.value is not None:
            free[outcome.host.name] = outcome.value
        else:
            down.append(f"{outcome.host.name} ({outcome.error})")
    return free, down


def _plan(rows: list[DomainRow], choice: str, targets: list[Host]) -> tuple[dict[str, str], list[str]]:
    """VM uuid -> target host name."""
    if choice != SPREAD:
        return {row.uuid.lower(): choice for row in rows}, []
    free, down = _free_memory(targets)
    # Running VMs need their memory at once; shut-off ones are planned after them, by their size too.
    return migrate.spread([(row.uuid.lower(), row.max_memory_kib * 1024) for row in rows], free), down


def _summary(batch: migrate.Batch, host: Host, request_user: Any, remote_addr: str | None) -> None:
    """One audit record for the evacuation itself (each VM has its own vm.migrate record)."""
    try:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(batch.counts().items()))
        audit.record(None, "host.evacuate", object_type="host", object_name=host.name, host_name=host.name,
                     result=AuditResult.OK if batch.counts().get("done", 0) == len(batch.jobs) else AuditResult.FAILED,
                     detail=f"{len(batch.jobs)} VM(s): {counts}" + ("; stopped by the user" if batch.stopped else ""),
                     user=request_user, remote_addr=remote_addr)
    finally:
        connections.close_all()


@require_http_methods(["GET", "POST"])
def evacuate(request: HttpRequest, host: str) -> HttpResponse:
    source = get_object_or_404(Host, name=host)
    permissions.require(request, VMPermission.CHANGE, host=source, object_name=f"evacuate {source.name}")
    others = list(Host.objects.exclude(pk=source.pk))
    context: dict[str, Any] = {"host": source}
    try:
        rows = host_rows(source).rows
    except VirtError as exc:
        context["error"] = host_words(exc)
        return render(request, "instances/evacuate.html", context, status=503)
    running = [r for r in rows if r.active]
    shut_off = [r for r in rows if not r.active]
    form = EvacuateForm([h.name for h in others], request.POST if request.method == "POST" else None)
    context.update(form=form, running=running, shut_off=shut_off, others=others)
    if request.method != "POST" or not form.is_valid():
        return render(request, "instances/evacuate.html", context)
    choice = form.cleaned_data["target"]
    targets = others if choice == SPREAD else [h for h in others if h.name == choice]
    chosen = running + (shut_off if form.cleaned_data.get("include_shut_off") else [])
    for row in chosen:
        for target in targets:
            require_migrate(request, source, row.uuid.lower(), target)
    plan, down = _plan(chosen, choice, targets)
    if not chosen or not plan:
        form.add_error(None, "Nothing to move." if not chosen else
                       "No target host answered: " + ", ".join(down))
        return render(request, "instances/evacuate.html", context)
    by_name = {h.name: h for h in targets}
    options = form.options()
    jobs = []
    for row in chosen:
        # Options that only make sense live are dropped for the shut-off VMs.
        opts = options if row.active else migrate.Options(keep_source=options.keep_source)
        try:
            jobs.append(make_job(request, source, by_name[plan[row.uuid.lower()]], row.uuid, row.name, opts,
                                 lock_now=False))
        except VirtError as exc:  # a host whose stored settings no longer validate
            form.add_error(None, str(exc))
            return render(request, "instances/evacuate.html", context)
    user, addr = request.user, request.META.get("REMOTE_ADDR")
    batch = migrate.Batch(f"Evacuate {source.name}", jobs, after=lambda b: _summary(b, source, user, addr))
    migrate.jobs.add(batch, owner=request.user.pk)
    batch.start()
    return redirect("instances:migration", batch.id)
