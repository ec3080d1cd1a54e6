"""Evacuate a host (admins): live-migrate every running VM to a chosen host (or spread them over the others
by free memory), optionally moving the shut-off ones offline in the same run.

The run is one host.evacuate job whose steps are vm.migrate jobs, one after another
(instances/migrate_jobs.py); its page lists them, with Cancel for the rest.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts import services
from hosts.models import Host
from instances import migrate_jobs
from instances import operations as ops
from instances.host_rows import host_rows
from instances.migrate_jobs import Planned
from instances.views.migrate import MigrateForm, options_for
from jobs.models import Job
from virt import migrate
from virt.domains import DomainRow
from virt.errors import InvalidState, Unreachable, host_words
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import refused

SPREAD = "__spread__"


class EvacuateForm(MigrateForm):
    include_shut_off = forms.BooleanField(required=False, label=gettext_lazy("Also move the shut-off VMs (offline)"))

    def __init__(self, targets: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(targets, *args, **kwargs)
        target = self.fields["target"]
        assert isinstance(target, forms.ChoiceField)
        target.choices = [(SPREAD, _("spread over the other hosts by free memory")),
                          *[(name, name) for name in targets]]
        self.fields["copy_storage"].help_text = _("For the running VMs: full copy of their disks.")


def _free_memory(hosts: list[Host]) -> tuple[dict[str, int], list[str]]:
    """Free memory per reachable host, and the ones that did not answer."""
    free, down = {}, []
    for outcome in services.call_many(hosts, lambda conn: int(conn.getFreeMemory())):
        if outcome.ok and outcome.value is not None:
            free[outcome.host.name] = outcome.value
        else:
            down.append(f"{outcome.host.name} ({outcome.words})")
    return free, down


def _plan(rows: list[DomainRow], choice: str, targets: list[Host]) -> tuple[dict[str, str], list[str]]:
    """VM uuid -> target host name."""
    if choice != SPREAD:
        return {row.uuid.lower(): choice for row in rows}, []
    free, down = _free_memory(targets)
    # Running VMs need their memory at once; shut-off ones are planned after them, by their size too.
    return migrate.spread([(row.uuid.lower(), row.max_memory_kib * 1024) for row in rows], free), down


def evacuate_host(request: HttpRequest, source: Host, form: EvacuateForm, *, quiet: bool = False,
                  rows: list[DomainRow] | None = None) -> Job | None:
    """Plan where each VM goes, then start one job whose steps migrate them one after another; None when
    refused (nothing to move, no target answered: audited and said on the form; `quiet`: raised, for the
    API to answer). `rows`: the host's VMs as the caller already read them."""
    rows = rows if rows is not None else host_rows(source).rows
    others = list(Host.objects.exclude(pk=source.pk))
    choice = form.cleaned_data["target"]
    targets = others if choice == SPREAD else [h for h in others if h.name == choice]
    chosen = [r for r in rows if r.active] + ([r for r in rows if not r.active]
                                              if form.cleaned_data.get("include_shut_off") else [])
    plan, down = _plan(chosen, choice, targets)
    if not chosen or not plan:
        reason = "Nothing to move." if not chosen else "No target host answered: " + ", ".join(down)
        refused(request, ops.EVACUATE, host=source, name=source.name, reason=reason)
        if quiet:
            raise InvalidState(reason) if not chosen else Unreachable(reason)
        form.add_error(None, _("Nothing to move.") if not chosen else _("No target host answered: {hosts}").format(
            hosts=", ".join(down)))
        return None
    by_name = {h.name: h for h in targets}
    options = form.options()
    plans = [Planned(source, by_name[plan[row.uuid.lower()]], row.uuid, row.name, options_for(options, row.active),
                     row.active) for row in chosen]
    return migrate_jobs.start_steps(request, ops.EVACUATE, source, source.name, plans,
                                    f"evacuation of {source.name}: {len(plans)} VM(s)", form, quiet=quiet)


def _read(call: Call) -> None:
    """The host's VMs, running and shut off, and the hosts they may go to."""
    rows = host_rows(call.target).rows
    call.context.update(rows=rows, running=[r for r in rows if r.active], shut_off=[r for r in rows if not r.active],
                        others=list(Host.objects.exclude(pk=call.target.pk)))


# The job's page lists the steps; an evacuation that did not start shows the form again, saying why.
evacuate = operation_view(OperationPage(
    ops.EVACUATE, template="instances/evacuate.html", find=_read,
    unavailable=lambda call, exc: said(host_words(exc)),
    form=lambda call, data: EvacuateForm([h.name for h in call.context["others"]], data),
    run=lambda call: evacuate_host(call.request, call.target, cast(EvacuateForm, call.form),
                                   rows=call.context["rows"]),
    then=lambda call, _job: reverse("instances:evacuate", args=[call.target.name])))
