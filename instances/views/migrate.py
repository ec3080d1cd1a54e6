"""Migrating VMs: the form with the pre-flight results, the progress pages (one VM, or a batch from the
fleet view or a host evacuation), cancel, and the JSON the pages poll.

The work runs in virt.migrate jobs (background threads). This module adds what the panel owes every
action: the permission check (the change grant on the VM and admin rights on both hosts), the
per-VM locks, one audit record per migration, and VM grants that follow the VM to its new host.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.db import connections
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hosts import services
from hosts.models import Host
from instances.host_rows import host_rows
from instances.lookup import VMRef, vm_or_404
from virt import migrate
from virt.domains import DomainRow
from virt.errors import InvalidInput, Unreachable, VirtError
from virt.migrate_checks import Endpoint, Finding, Options, judge, source_facts, target_facts, unreachable
from virt.uri import validate_hostname
from webkvm import audit, permissions
from webkvm.models import AuditResult, VMGrant, VMPermission

CHECK_TIMEOUT = 20.0  # the target's checks refresh the pools the VM's disks would be in
MAX_SELECTED = 200


class MigrateForm(forms.Form):
    target = forms.ChoiceField(label="Target host")
    copy_storage = forms.BooleanField(
        required=False, label="Copy non-shared storage",
        help_text="Full copy of the VM's disks into a pool with the same path on the target (live only).")
    peer_to_peer = forms.BooleanField(
        required=False, label="Peer-to-peer", help_text="The source host's libvirtd talks to the target itself.")
    tunnelled = forms.BooleanField(
        required=False, label="Tunnelled", help_text="Data travels inside the libvirtd connection (peer-to-peer).")
    keep_source = forms.BooleanField(required=False, label="Keep the definition on the source host")
    max_downtime_ms = forms.IntegerField(required=False, min_value=1, max_value=60000,
                                         label="Maximum downtime (ms)", help_text="Empty: libvirt's default.")
    bandwidth_mib = forms.IntegerField(required=False, min_value=1, max_value=1000000,
                                       label="Bandwidth limit (MiB/s)", help_text="Empty: unlimited.")
    migration_address = forms.CharField(
        required=False, max_length=253, label="Target's migration address",
        help_text="Where the target receives the data (an address the source can reach). Empty: the "
                  "target's own setting.")

    def __init__(self, targets: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        target = self.fields["target"]
        assert isinstance(target, forms.ChoiceField)
        target.choices = [(name, name) for name in targets]

    def clean_migration_address(self) -> str:
        value = str(self.cleaned_data.get("migration_address") or "").strip()
        if not value:
            return ""
        try:
            validate_hostname(value)
        except InvalidInput as exc:
            raise forms.ValidationError(str(exc)) from None
        if value.lower() == "localhost" or value.startswith("127.") or value.strip("[]") == "::1":
            raise forms.ValidationError("A loopback address means the source host itself: give the target's.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("tunnelled"):
            data["peer_to_peer"] = True  # a tunnel is a peer-to-peer connection
            if data.get("migration_address"):
                self.add_error("migration_address", "A tunnelled migration has no separate data address.")
        return data

    def options(self) -> Options:
        data = self.cleaned_data
        return Options(copy_storage=bool(data.get("copy_storage")), peer_to_peer=bool(data.get("peer_to_peer")),
                       tunnelled=bool(data.get("tunnelled")), keep_source=bool(data.get("keep_source")),
                       max_downtime_ms=data.get("max_downtime_ms"), bandwidth_mib=data.get("bandwidth_mib"),
                       migration_address=data.get("migration_address") or "")


# ---------------------------------------------------------------- permissions and jobs


def require_migrate(request: HttpRequest, source: Host, vm_uuid: str, target: Host | None = None) -> None:
    """The change grant on the VM, and admin rights on the source and the target host (403 and audited)."""
    permissions.require(request, VMPermission.CHANGE, host=source, vm_uuid=vm_uuid)
    for host in (source, target):
        if host is not None:  # host-level objects are admin-only
            permissions.require(request, VMPermission.CHANGE, host=host, object_name=f"migrate {vm_uuid}")


def endpoint(host: Host) -> Endpoint:
    try:
        return Endpoint(host.name, host.spec())
    except ValueError as exc:  # a stored value that no longer validates
        raise InvalidInput(f"{host.name}: {exc}") from None


def _lock(source: Host, target: Host, vm_uuid: str) -> None:
    """The VM's lock on both hosts, or Busy."""
    services.vm_locks.acquire(str(source.pk), vm_uuid)
    try:
        services.vm_locks.acquire(str(target.pk), vm_uuid)
    except VirtError:
        services.vm_locks.release(str(source.pk), vm_uuid)
        raise


def _before(job: migrate.MigrationJob) -> None:
    """Batch members take their locks when their turn comes."""
    _lock(job.context["source_host"], job.context["target_host"], job.vm_uuid)
    job.context["locked"] = True


def _follow_grants(source: Host, target: Host, vm_uuid: str, keep: bool) -> None:
    """Grants name a VM by host and UUID: they go with it (and are copied when the source keeps it)."""
    for grant in VMGrant.objects.filter(host=source, vm_uuid=vm_uuid):
        VMGrant.objects.update_or_create(user=grant.user, host=target, vm_uuid=vm_uuid, defaults={
            "vm_name": grant.vm_name, "can_console": grant.can_console, "can_power": grant.can_power,
            "can_change": grant.can_change, "can_delete": grant.can_delete})
        if not keep:
            grant.delete()


def audit_detail(job: migrate.MigrationJob) -> str:
    report = job.report
    progress = job.progress
    parts = [f"uuid {job.vm_uuid}", f"from {job.source.name} to {job.target.name}",
             f"options: {job.options.describe(job.live is not False)}"]
    if job.wall_s is not None:
        parts.append(f"duration {job.wall_s:.2f} s")
    if progress.elapsed_ms is not None:
        parts.append(f"libvirt job {progress.elapsed_ms} ms")
    if progress.downtime_ms is not None:
        parts.append(f"downtime {progress.downtime_ms} ms")
    if report is not None:
        parts.append(f"result: {report.outcome}: {report.message}")
    problems = [f.problem for f in job.findings if f.blocking]
    if problems:
        parts.append("pre-flight: " + " / ".join(problems))
    return "; ".join(parts)


def _after(job: migrate.MigrationJob) -> None:
    """Runs in the job's thread when it ends: locks, grants, the audit record."""
    ctx = job.context
    source, target = ctx["source_host"], ctx["target_host"]
    try:
        if ctx.pop("locked", False):
            services.vm_locks.release(str(source.pk), job.vm_uuid)
            services.vm_locks.release(str(target.pk), job.vm_uuid)
        report = job.report
        if report is None or report.outcome == "skipped":
            return
        if report.vm_host == target.name:
            _follow_grants(source, target, job.vm_uuid, job.options.keep_source)
        audit.record(None, "vm.migrate", object_type="vm", object_name=job.vm_name, host_name=source.name,
                     result=AuditResult.OK if report.outcome == "done" else AuditResult.FAILED,
                     detail=audit_detail(job), user=ctx["user"], remote_addr=ctx["remote_addr"])
    finally:
        connections.close_all()  # this thread's own database connections


def make_job(request: HttpRequest, source: Host, target: Host, vm_uuid: str, vm_name: str, options: Options,
             *, lock_now: bool) -> migrate.MigrationJob:
    """A job with the panel's hooks. lock_now: take the VM's locks in this request (Busy is raised here);
    otherwise the job takes them when its turn comes."""
    job = migrate.MigrationJob(vm_uuid, vm_name, endpoint(source), endpoint(target), options,
                               before=None if lock_now else _before, after=_after)
    job.context.update(source_host=source, target_host=target, user=request.user,
                       remote_addr=request.META.get("REMOTE_ADDR"))
    if lock_now:
        _lock(source, target, job.vm_uuid)
        job.context["locked"] = True
    return job


# ---------------------------------------------------------------- one VM


def _targets(source: Host) -> list[str]:
    return list(Host.objects.exclude(pk=source.pk).values_list("name", flat=True))


def _check(ref: VMRef, target: Host, options: Options) -> tuple[list[Finding], bool | None]:
    """The pre-flight findings (nothing changes), and whether the VM is running (None: unknown)."""
    vm = ref.call(source_facts, CHECK_TIMEOUT)
    try:
        peer_uri = endpoint(target).peer_uri
        tgt = services.call(target, lambda conn: target_facts(conn, vm), CHECK_TIMEOUT)
    except Unreachable as exc:
        return [unreachable(target.name, str(exc))], vm.active
    except VirtError as exc:
        return [Finding("target", f"{target.name} could not be checked: {exc}",
                        f"Check {target.name} (Hosts → {target.name}), then check again.")], vm.active
    return judge(vm, tgt, ref.host.name, target.name, options, peer_uri), vm.active


@require_http_methods(["GET", "POST"])
def migrate_vm(request: HttpRequest, host: str, vm: uuid.UUID) -> HttpResponse:
    """GET: the form, and with ?target= the pre-flight results. POST: start the migration."""
    ref = vm_or_404(request, host, vm, VMPermission.CHANGE)
    require_migrate(request, ref.host, ref.uuid)
    context: dict[str, Any] = {"ref": ref}
    try:
        context["vm"] = ref.call(source_facts, CHECK_TIMEOUT)
    except VirtError as exc:
        context["error"] = str(exc)
        return render(request, "instances/migrate.html", context, status=503)
    bound = request.POST if request.method == "POST" else (request.GET if "target" in request.GET else None)
    form = MigrateForm(_targets(ref.host), bound)
    context["form"] = form
    if bound is None or not form.is_valid():
        return render(request, "instances/migrate.html", context)
    target = get_object_or_404(Host, name=form.cleaned_data["target"])
    require_migrate(request, ref.host, ref.uuid, target)
    options = form.options()
    if options.copy_storage and not context["vm"].active:
        form.add_error("copy_storage", "Storage is copied during a live migration: start the VM, or untick this.")
        return render(request, "instances/migrate.html", context)
    if request.method == "GET":
        try:
            findings, _active = _check(ref, target, options)
        except VirtError as exc:
            context["error"] = str(exc)
            return render(request, "instances/migrate.html", context, status=503)
        context.update(target=target, findings=findings, checked=True,
                       blocked=any(f.blocking for f in findings))
        return render(request, "instances/migrate.html", context)
    try:
        job = make_job(request, ref.host, target, ref.uuid, context["vm"].name, options, lock_now=True)
    except VirtError as exc:  # Busy: another action on this VM runs
        messages.error(request, f"Not started: {exc}")
        return render(request, "instances/migrate.html", context)
    migrate.jobs.add(job, owner=request.user.pk)
    job.start()
    return redirect("instances:migration", job.id)


# ---------------------------------------------------------------- progress pages and JSON


def _item(request: HttpRequest, job_id: str) -> migrate.MigrationJob | migrate.Batch:
    """The job or batch, after the same permission check as starting it (for every VM in it)."""
    found = migrate.jobs.get(job_id)
    if found is None:
        raise Http404("No such migration in this panel process (finished ones are kept for six hours).")
    item, _owner = found
    for job in item.jobs if isinstance(item, migrate.Batch) else [item]:
        require_migrate(request, job.context["source_host"], job.vm_uuid, job.context["target_host"])
    return item


def _links(job: migrate.MigrationJob) -> dict[str, str]:
    """Where the VM is now: its page and console on that host (tickets are per host and VM)."""
    where = job.report.vm_host if job.report else job.source.name
    return {"vm_url": reverse("instances:detail", args=[where, job.vm_uuid]),
            "console_url": reverse("console:page", args=[where, job.vm_uuid])}


def job_json(job: migrate.MigrationJob) -> dict[str, Any]:
    return {**job.snapshot(), **_links(job)}


@require_GET
def migration(request: HttpRequest, job: str) -> HttpResponse:
    item = _item(request, job)
    context = {"item": item, "status_url": reverse("instances:migration_status", args=[item.id]),
               "cancel_url": reverse("instances:migration_cancel", args=[item.id])}
    if isinstance(item, migrate.Batch):
        return render(request, "instances/migrate_batch.html", {**context, "jobs": item.jobs})
    return render(request, "instances/migrate_job.html", {
        **context, "job": item, "links": _links(item), "options_text": item.options.describe(item.live is not False)})


@require_GET
def migration_status(request: HttpRequest, job: str) -> JsonResponse:
    item = _item(request, job)
    if isinstance(item, migrate.Batch):
        return JsonResponse({**item.snapshot(), "jobs": [job_json(j) for j in item.jobs]})
    return JsonResponse(job_json(item))


@require_POST
def migration_cancel(request: HttpRequest, job: str) -> HttpResponse:
    item = _item(request, job)
    stopped = item.stop() if isinstance(item, migrate.Batch) else item.cancel()
    name = item.title if isinstance(item, migrate.Batch) else item.vm_name
    host = "" if isinstance(item, migrate.Batch) else item.source.name
    audit.record(request, "vm.migrate-cancel", object_type="migration", object_name=name, host_name=host,
                 result=AuditResult.OK if stopped else AuditResult.FAILED,
                 detail=f"job {item.id}" + ("" if stopped else ": it had already finished"))
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse({"stopping": stopped})
    messages.info(request, "Stopping: a running migration is aborted and the VM stays on its source host."
                  if stopped else "It had already finished.")
    return redirect("instances:migration", item.id)


# ---------------------------------------------------------------- several VMs from the fleet view


def _selected(request: HttpRequest) -> list[tuple[Host, str]]:
    """The VMs ticked on the fleet view ("host/uuid"), each after the permission check on its host."""
    hosts = {h.name: h for h in Host.objects.all()}
    chosen: list[tuple[Host, str]] = []
    for key in dict.fromkeys(request.POST.getlist("vm")[:MAX_SELECTED]):
        name, _, raw = key.partition("/")
        try:
            vm_uuid = str(uuid.UUID(raw))
        except ValueError:
            continue
        if name in hosts:
            require_migrate(request, hosts[name], vm_uuid)
            chosen.append((hosts[name], vm_uuid))
    return chosen


@require_POST
def migrate_many(request: HttpRequest) -> HttpResponse:
    """First POST (from the fleet view): the ticked VMs and the form. Second (with go=1): start the batch."""
    chosen = _selected(request)
    if not chosen:
        messages.error(request, "Tick the VMs to migrate first.")
        return redirect("instances:list")
    rows: dict[tuple[int, str], DomainRow] = {}
    for outcome in services.each({h.pk: h for h, _ in chosen}.values(), host_rows):
        for row in outcome.value.rows if outcome.value else []:
            rows[(outcome.host.pk, row.uuid.lower())] = row
    vms = [(host, vm_uuid, rows.get((host.pk, vm_uuid))) for host, vm_uuid in chosen]
    form = MigrateForm(list(Host.objects.values_list("name", flat=True)),
                       request.POST if request.POST.get("go") else None)
    context = {"vms": vms, "form": form}
    if not request.POST.get("go") or not form.is_valid():
        return render(request, "instances/migrate_many.html", context)
    target = get_object_or_404(Host, name=form.cleaned_data["target"])
    options = form.options()
    jobs = []
    for host, vm_uuid, found in vms:
        require_migrate(request, host, vm_uuid, target)
        if host.pk == target.pk:
            continue  # already there
        try:
            jobs.append(make_job(request, host, target, vm_uuid, found.name if found else vm_uuid, options,
                                 lock_now=False))
        except VirtError as exc:
            form.add_error(None, str(exc))
            return render(request, "instances/migrate_many.html", context)
    if not jobs:
        form.add_error("target", "Every ticked VM is already on this host.")
        return render(request, "instances/migrate_many.html", context)
    batch = migrate.Batch(f"{len(jobs)} VM(s) to {target.name}", jobs, after=lambda b: connections.close_all())
    migrate.jobs.add(batch, owner=request.user.pk)
    batch.start()
    return redirect("instances:migration", batch.id)
