"""Migrating VMs (admins): the form of one VM with the pre-flight results, and the form for the VMs ticked
on the fleet view. Starting answers with the job's page: the work runs as a durable job
(instances/migrate_jobs.py), which checks again, migrates, and writes the one audit record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from hosts import services
from hosts.models import Host
from instances import migrate_jobs
from instances import operations as ops
from instances.host_rows import host_rows
from instances.lookup import VMRef
from instances.migrate_jobs import Planned
from instances.views.bulk import selected
from jobs.models import Job
from virt.domains import DomainRow
from virt.errors import InvalidInput, InvalidState, Text, Unreachable, VirtError
from virt.migrate_checks import Finding, Options, VMFacts, judge, source_facts, target_facts, unreachable
from virt.uri import validate_hostname
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import refused

CHECK_TIMEOUT = 20.0  # the target's checks refresh the pools the VM's disks would be in


class MigrateForm(forms.Form):
    target = forms.ChoiceField(label=gettext_lazy("Target host"))
    copy_storage = forms.BooleanField(
        required=False, label=gettext_lazy("Copy non-shared storage"),
        help_text=gettext_lazy("Full copy of the VM's disks into a pool with the same path on the target (live "
                               "only)."))
    peer_to_peer = forms.BooleanField(
        required=False, label=gettext_lazy("Peer-to-peer"),
        help_text=gettext_lazy("The source host's libvirtd talks to the target itself."))
    tunnelled = forms.BooleanField(
        required=False, label=gettext_lazy("Tunnelled"),
        help_text=gettext_lazy("Data travels inside the libvirtd connection (peer-to-peer)."))
    keep_source = forms.BooleanField(required=False, label=gettext_lazy("Keep the definition on the source host"))
    max_downtime_ms = forms.IntegerField(required=False, min_value=1, max_value=60000,
                                         label=gettext_lazy("Maximum downtime (ms)"),
                                         help_text=gettext_lazy("Empty: libvirt's default."))
    bandwidth_mib = forms.IntegerField(required=False, min_value=1, max_value=1000000,
                                       label=gettext_lazy("Bandwidth limit (MiB/s)"),
                                       help_text=gettext_lazy("Empty: unlimited."))
    migration_address = forms.CharField(
        required=False, max_length=253, label=gettext_lazy("Target's migration address"),
        help_text=gettext_lazy("Where the target receives the data (an address the source can reach). Empty: the "
                               "target's own setting."))

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
            raise forms.ValidationError(said(exc)) from None
        if value.lower() == "localhost" or value.startswith("127.") or value.strip("[]") == "::1":
            raise forms.ValidationError(_("A loopback address means the source host itself: give the target's."))
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("tunnelled"):
            data["peer_to_peer"] = True  # a tunnel is a peer-to-peer connection
            if data.get("migration_address"):
                self.add_error("migration_address", _("A tunnelled migration has no separate data address."))
        return data

    def options(self) -> Options:
        data = self.cleaned_data
        return Options(copy_storage=bool(data.get("copy_storage")), peer_to_peer=bool(data.get("peer_to_peer")),
                       tunnelled=bool(data.get("tunnelled")), keep_source=bool(data.get("keep_source")),
                       max_downtime_ms=data.get("max_downtime_ms"), bandwidth_mib=data.get("bandwidth_mib"),
                       migration_address=data.get("migration_address") or "")


def options_for(options: Options, live: bool) -> Options:
    """A shut-off VM moves offline: the options that only make sense live are dropped."""
    return options if live else Options(keep_source=options.keep_source)


# ---------------------------------------------------------------- one VM


def targets_of(source: Host) -> list[str]:
    """The hosts a VM of `source` may move to: every other host."""
    return list(Host.objects.exclude(pk=source.pk).values_list("name", flat=True))


def _check(ref: VMRef, target: Host, options: Options) -> list[Finding]:
    """The pre-flight findings (nothing changes)."""
    vm = ref.call(source_facts, CHECK_TIMEOUT)
    try:
        peer_uri = migrate_jobs.endpoint(target).peer_uri
        tgt = services.call(target, lambda conn: target_facts(conn, vm), CHECK_TIMEOUT)
    except Unreachable as exc:
        return [unreachable(target.name, str(exc))]
    except VirtError as exc:
        return [Finding("target", Text(gettext_noop("{name} could not be checked: {error}"), name=target.name,
                                       error=Text.of(exc)),
                        Text(gettext_noop("Check {name} (Hosts → {name}), then check again."), name=target.name))]
    return judge(vm, tgt, ref.host.name, target.name, options, peer_uri)


@dataclass
class Checked:
    """A migration the request checked: its target, the pre-flight findings (the page shows them) and the job
    once it started."""

    target: Host
    findings: list[Finding]
    job: Job | None = None

    @property
    def problems(self) -> list[str]:
        return [f.problem for f in self.findings if f.blocking]


class Blocked(InvalidState):
    """The pre-flight checks refused the migration: nothing started (an API caller hears 409)."""


def check(request: HttpRequest, ref: VMRef, form: MigrateForm, vm: VMFacts, *, starting: bool) -> Checked | None:
    """The valid form's target and pre-flight findings (nothing changes); None with a field error for copying
    the storage of a shut-off VM, refused and audited when `starting`. VirtError: the VM's host failed."""
    target = get_object_or_404(Host, name=form.cleaned_data["target"])
    options = form.options()
    if options.copy_storage and not vm.active:
        form.add_error("copy_storage", _("Storage is copied during a live migration: start the VM, or untick this."))
        if starting:
            refused(request, ops.MIGRATE, host=ref.host, name=vm.name, reason="copy storage of a shut-off VM")
        return None
    return Checked(target, _check(ref, target, options))


def migrate_one(request: HttpRequest, ref: VMRef, form: MigrateForm, *, quiet: bool = False,
                vm: VMFacts | None = None) -> Checked | None:
    """Check again, then start the job (`Checked.job`); None when the form got an error. A refusal (pre-flight
    problems, a busy VM) is audited; `quiet`: raised (Blocked, Busy...) for the API to answer. `vm`: the
    facts the caller already read."""
    vm = vm if vm is not None else ref.call(source_facts, CHECK_TIMEOUT)
    checked = check(request, ref, form, vm, starting=True)
    if checked is None:
        return None
    if problems := checked.problems:
        reason = f"to {checked.target.name}: pre-flight: {' / '.join(problems)}"
        refused(request, ops.MIGRATE, host=ref.host, name=vm.name, reason=reason)
        if quiet:
            raise Blocked(f"{ops.MIGRATE.label}: not started: {reason}")
        return checked
    plan = Planned(ref.host, checked.target, ref.uuid, vm.name, form.options(), vm.active)
    checked.job = migrate_jobs.start_one(request, ops.MIGRATE, plan, form, quiet=quiet)
    return checked


def _found(call: Call, checked: Checked | None) -> None:
    """The pre-flight results, for the page (None: a field error, on the form)."""
    if checked is not None:
        call.context.update(target=checked.target, findings=checked.findings, checked=True,
                            blocked=bool(checked.problems))


def _read(call: Call) -> None:
    """The VM's facts; a GET with ?target= checks too (nothing changes). VirtError: the VM's host failed."""
    vm = call.context["vm"] = call.ref.call(source_facts, CHECK_TIMEOUT)
    if not call.posted and "target" in call.request.GET:
        form = call.context["form"] = MigrateForm(targets_of(call.ref.host), call.request.GET)
        if form.is_valid():
            _found(call, check(call.request, call.ref, form, vm, starting=False))


def _start(call: Call) -> Checked | VirtError | None:
    try:
        return migrate_one(call.request, call.ref, cast(MigrateForm, call.form), vm=call.context["vm"])
    except VirtError as exc:
        return exc  # said on the page (503)


def _answer(call: Call, result: Checked | VirtError | None) -> HttpResponse | HttpResponseRedirect:
    if isinstance(result, VirtError):
        call.context["error"] = said(result)
        return render(call.request, "instances/migrate.html", call.context, status=503)
    if result is not None and result.job is not None:
        return redirect(result.job)  # the job's page shows its progress
    _found(call, result)  # refused by the checks, or a field error: nothing started
    return render(call.request, "instances/migrate.html", call.context)


# GET: the form, and with ?target= the pre-flight results. POST: check again, then start the job.
migrate_vm = operation_view(OperationPage(
    ops.MIGRATE, names_vm=True, template="instances/migrate.html", find=_read, unavailable=lambda call, exc: said(exc),
    form=lambda call, data: call.context.get("form") or MigrateForm(targets_of(call.ref.host), data),
    run=_start, answer=_answer,
    then=lambda call, _result: reverse("instances:migrate", args=[call.ref.host.name, call.ref.uuid])))


# ---------------------------------------------------------------- several VMs from the fleet view


Ticked = list[tuple[Host, str, DomainRow | None]]  # a ticked VM's host, UUID and row (None: not found)


def with_rows(chosen: list[tuple[Host, str]]) -> Ticked:
    """The ticked VMs with their rows from each host's shared read (one per host)."""
    rows: dict[tuple[int, str], DomainRow] = {}
    for outcome in services.each({h.pk: h for h, _uuid in chosen}.values(), host_rows):
        for row in outcome.value.rows if outcome.value else []:
            rows[(outcome.host.pk, row.uuid.lower())] = row
    return [(host, vm_uuid, rows.get((host.pk, vm_uuid))) for host, vm_uuid in chosen]


def migrate_selected(request: HttpRequest, vms: Ticked, form: MigrateForm, *, quiet: bool = False) -> Job | None:
    """Start one job whose steps migrate the VMs (those not on the target already) one after another; None
    when refused (said on the form; `quiet`: a refusal by the job queue is raised)."""
    target = get_object_or_404(Host, name=form.cleaned_data["target"])
    options = form.options()
    plans = [Planned(host, target, vm_uuid, row.name if row else vm_uuid,
                     options_for(options, row is None or row.active), row is None or row.active)
             for host, vm_uuid, row in vms if host.pk != target.pk]  # those already there stay
    if not plans:
        form.add_error("target", _("Every ticked VM is already on this host."))
        return None
    return migrate_jobs.start_steps(request, ops.MIGRATE_MANY, target, target.name, plans,
                                    f"migration of {len(plans)} VM(s) to {target.name}", form, quiet=quiet)


class NoneTicked(InvalidInput):
    """The fleet view's form came without a ticked VM."""


def _ticked(call: Call) -> None:
    chosen = selected(call.request)
    if not chosen:
        raise NoneTicked("no VM ticked")
    call.context["vms"] = with_rows(chosen)  # a host that does not answer leaves its VMs without a row


def _none_ticked(call: Call, exc: VirtError) -> HttpResponse:
    if not isinstance(exc, NoneTicked):
        raise exc
    messages.error(call.request, _("Tick the VMs to migrate first."))
    return redirect("instances:list")


# First POST (from the fleet view): the ticked VMs and the form. Second (with go=1): start one job whose steps
# migrate them one after another. The form is on the fleet view: a GET goes there.
migrate_many = operation_view(OperationPage(
    ops.MIGRATE_MANY, host="", template="instances/migrate_many.html", find=_ticked, unreadable=_none_ticked,
    elsewhere=lambda call: reverse("instances:list"),
    confirm_field="go", confirm_when=lambda call: not call.request.POST.get("go"),
    form=lambda call, data: MigrateForm(list(Host.objects.values_list("name", flat=True)),
                                        data if data is not None and data.get("go") else None),
    run=lambda call: migrate_selected(call.request, call.context["vms"], cast(MigrateForm, call.form)),
    then=lambda call, _job: reverse("instances:list")))
