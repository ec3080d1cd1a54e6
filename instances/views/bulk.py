"""Actions on the VMs ticked on the VM list (and the user's home page): start, shut down, force off, delete.
Migrating the ticked VMs is instances/views/migrate.py's.

Each VM goes through the one permission check (webkvm/permissions.py, the same grants the rows were drawn
from) and runs the VM page's own declared operation (instances/operations.py: its lock, its audit record);
one summary then says what happened to each: done, skipped (its state does not allow it), refused (no
grant), failed. Force off and delete are confirmed first on a page listing the VMs (delete: keep or delete
their volumes); GET of the URL leads back to the list, never to a bare 405.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import libvirt
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, ngettext_lazy, pgettext
from django.views.decorators.http import require_http_methods

from hosts import services
from hosts.models import Host
from instances import operations as ops
from instances.fleet import visible
from instances.host_rows import STATE_CODES, host_rows
from instances.lookup import VMRef
from instances.views.config_common import shown
from instances.views.delete import forget
from virt import lifecycle
from virt.delete import delete_plan, delete_vm
from virt.domains import DomainRow
from virt.errors import HOST_BUSY, HOST_UNAVAILABLE
from webkvm import audit
from webkvm.i18n import said
from webkvm.models import AuditResult, VMGrant
from webkvm.operations import Operation, on_vm, route, told
from webkvm.permissions import is_admin

MAX_SELECTED = 200  # ticked VMs one request acts on
NAMES_SHOWN = 10  # names a summary lists per outcome before "and N more"


@dataclass(frozen=True)
class Bulk:
    name: str  # the form's value
    done: Promise  # the summary's start, by the number of VMs done: "Started 3 VMs" (ngettext_lazy, "count")
    skipped: str | Promise  # why a VM whose state does not allow it is left alone
    permission: str
    confirm: str | Promise = ""  # a sentence to confirm first


BULK: dict[str, Bulk] = {b.name: b for b in [
    Bulk("start", ngettext_lazy("Started %(count)s VM", "Started %(count)s VMs", "count"),
         gettext_lazy("already running"), ops.POWER),
    Bulk("shutdown", ngettext_lazy("Asked to shut down %(count)s VM", "Asked to shut down %(count)s VMs", "count"),
         gettext_lazy("not running"), ops.POWER),
    Bulk("destroy", ngettext_lazy("Forced off %(count)s VM", "Forced off %(count)s VMs", "count"),
         gettext_lazy("not running"), ops.POWER, confirm=lifecycle.ACTIONS["destroy"].confirm),
    Bulk("delete", ngettext_lazy("Deleted %(count)s VM", "Deleted %(count)s VMs", "count"),
         gettext_lazy("running: tick “force off” to delete it"), ops.DELETE,
         confirm=gettext_lazy("Their definitions are removed from their hosts: this cannot be undone.")),
]}
# What became of a VM the panel did not (or could not) act on, as the summary and the confirmation name it.
OUTCOMES = {"skipped": ngettext_lazy("%(count)s skipped", "%(count)s skipped", "count"),
            "refused": ngettext_lazy("%(count)s refused", "%(count)s refused", "count"),
            "failed": ngettext_lazy("%(count)s failed", "%(count)s failed", "count")}
OUTCOME_WORDS = {"skipped": gettext_lazy("skipped"), "refused": gettext_lazy("refused"),
                 "failed": gettext_lazy("failed")}


@dataclass
class Item:
    host: Host
    uuid: str
    name: str  # as the user may read it; "" for a VM they may not see
    row: DomainRow | None  # from the host's shared read; None when the host did not answer or has no such VM
    outcome: str = ""  # "" (to run), done, skipped, refused, failed
    why: str = ""

    @property
    def label(self) -> str:
        return self.name or _("a VM you may not see")

    @property
    def outcome_words(self) -> str:
        return str(OUTCOME_WORDS.get(self.outcome, self.outcome))


def selected(request: HttpRequest) -> list[tuple[Host, str]]:
    """The VMs ticked on the list ("host/uuid"), of hosts the panel knows, each once."""
    return ticked(request.POST.getlist("vm"))


def ticked(keys: list[str]) -> list[tuple[Host, str]]:
    """VMs named "host/uuid" (the list's checkboxes, an API caller's list), of hosts the panel knows, each once."""
    hosts = {h.name: h for h in Host.objects.all()}
    chosen: list[tuple[Host, str]] = []
    for key in dict.fromkeys(keys[:MAX_SELECTED]):
        name, _, raw = key.partition("/")
        try:
            vm_uuid = str(uuid.UUID(raw))
        except ValueError:
            continue
        if name in hosts:
            chosen.append((hosts[name], vm_uuid))
    return chosen


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse("instances:list")


def _operation(bulk: Bulk, row: DomainRow | None) -> Operation:
    """The VM page's operation for this VM: a start restores a saved state where there is one."""
    if bulk.name == "delete":
        return ops.DELETE_VM
    if bulk.name == "start" and row is not None and row.managed_save:
        return ops.ACTIONS["restore"]
    return ops.ACTIONS[bulk.name]


def _allowed_now(bulk: Bulk, row: DomainRow, force_off: bool) -> bool:
    if bulk.name == "delete":
        return force_off or not row.active
    action = _operation(bulk, row).name.removeprefix("vm.")
    names = {a.name for a in lifecycle.available(STATE_CODES.get(row.state, 0), row.managed_save)}
    return action in names


def _items(request: HttpRequest, bulk: Bulk, force_off: bool) -> list[Item]:
    """The ticked VMs, each judged: the grants first (one query), then their hosts' shared reads (one per
    host, asked at once), then their state."""
    chosen = selected(request)
    seen = visible(request.user)
    admin = seen.grants is None
    names = {} if admin else {(g.host_id, str(g.vm_uuid).lower()): g.vm_name
                              for g in VMGrant.objects.filter(user_id=request.user.pk or 0)}
    rows: dict[tuple[int, str], DomainRow] = {}
    down: dict[int, str] = {}
    hosts = {h.pk: h for h, vm_uuid in chosen if seen.may(h.pk, vm_uuid, ops.VIEW)}
    for outcome in services.each(hosts.values(), host_rows):
        if outcome.value is None:
            down[outcome.host.pk] = outcome.words if admin else said(HOST_BUSY if outcome.busy else HOST_UNAVAILABLE)
            continue
        for found in outcome.value.rows:
            rows[(outcome.host.pk, found.uuid.lower())] = found
    items = []
    for host, vm_uuid in chosen:
        key = (host.pk, vm_uuid)
        row = rows.get(key)
        may_see = seen.may(host.pk, vm_uuid, ops.VIEW)
        item = Item(host, vm_uuid, (row.name if row else names.get(key, "") or vm_uuid) if may_see else "", row)
        if not may_see:
            item.outcome, item.why = "refused", _("no grant")
        elif not seen.may(host.pk, vm_uuid, bulk.permission):
            item.outcome = "refused"
            item.why = _("no power grant") if bulk.permission == ops.POWER else _("no delete grant")
        elif host.pk in down:
            item.outcome, item.why = "failed", down[host.pk]
        elif row is None:
            item.outcome, item.why = "failed", _("no such VM on its host")
        elif not _allowed_now(bulk, row, force_off):
            item.outcome, item.why = "skipped", str(bulk.skipped)
        items.append(item)
    return items


def _audit_unrun(request: HttpRequest, bulk: Bulk, item: Item) -> None:
    """The one record of a VM the panel did not ask its host about: refused, or its host did not answer."""
    result = AuditResult.DENIED if item.outcome == "refused" else AuditResult.FAILED
    audit.record(request, _operation(bulk, item.row).name, object_type="vm", object_name=item.name or item.uuid,
                 host_name=item.host.name, result=result, detail=f"uuid {item.uuid}; {item.outcome}: {item.why}")


def _work(op: Operation, with_volumes: bool, force_off: bool) -> Callable[[libvirt.virDomain], object]:
    """What the VM page's own view runs for the operation (actions.py, delete.py)."""
    if op is not ops.DELETE_VM:
        action = op.name.removeprefix("vm.")
        return lambda dom: lifecycle.perform(dom, action)

    def delete(dom: libvirt.virDomain) -> object:
        keys = [vol.key for vol in delete_plan(dom).deletable] if with_volumes else []
        return delete_vm(dom, keys, force_off=force_off)

    return delete


def _run(request: HttpRequest, bulk: Bulk, item: Item, with_volumes: bool, force_off: bool) -> None:
    ref = VMRef(item.host, item.uuid)
    op = _operation(bulk, item.row)
    try:
        outcome = on_vm(request, op, ref, _work(op, with_volumes, force_off), done=f"{op.label.lower()}: done.",
                        quiet=True)
    except Http404:  # gone since the read: nothing was asked of it
        item.outcome, item.why = "failed", _("no such VM on its host")
        _audit_unrun(request, bulk, item)
        return
    if outcome.ok:
        item.outcome = "done"
        if bulk.name == "delete":
            forget(ref)
        return
    item.outcome = "failed"
    item.why = told(request.user, outcome.exception) if outcome.exception else outcome.error


def _names(items: list[Item], why: bool) -> str:
    listed = [_("{name} ({why})").format(name=i.label, why=i.why) if why else i.label for i in items[:NAMES_SHOWN]]
    more = len(items) - NAMES_SHOWN
    text = pgettext("list separator", ", ").join(listed)
    if more > 0:
        text = ngettext("{names} and {count} more", "{names} and {count} more", more).format(names=text, count=more)
    return text


def _counted(words: Promise, items: list[Item], why: bool) -> str:
    count = str(words % {"count": len(items)})
    return _("{count}: {names}").format(count=count, names=_names(items, why)) if items else count


def summary(bulk: Bulk, items: list[Item]) -> str:
    """'Started 2 VMs: a, b; 1 refused: c (no power grant); 1 failed: d (host unavailable).'"""
    by = {outcome: [i for i in items if i.outcome == outcome] for outcome in ("done", "skipped", "refused", "failed")}
    parts = [_counted(bulk.done, by["done"], False)]
    parts += [_counted(OUTCOMES[o], by[o], True) for o in ("skipped", "refused", "failed") if by[o]]
    return _("{parts}.").format(parts=pgettext("list separator", "; ").join(parts))


@require_http_methods(["GET", "POST"])
@route(ops.BULK)
def bulk(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return redirect("instances:list")  # a reload or a bookmark: the list to tick VMs on
    back = _next(request)
    chosen = BULK.get(request.POST.get("action", ""))
    if chosen is None:
        messages.error(request, _("Choose what to do with the ticked VMs."))
        return redirect(back)
    force_off = request.POST.get("force_off") == "1"
    items = _items(request, chosen, force_off)
    if not items:
        messages.error(request, _("Tick the VMs to act on first."))
        return redirect(back)
    if chosen.confirm and request.POST.get("confirm") != "yes":
        # Ticked VMs the user may not see (no box offers them) are neither listed nor carried on.
        items = [i for i in items if i.name]
        return render(request, "instances/bulk_confirm.html", {
            "bulk": chosen, "confirm": shown(chosen.confirm), "items": items, "next": back, "force_off": force_off,
            "running": any(i.row is not None and i.row.active for i in items),
            "to_run": sum(1 for i in items if not i.outcome), "admin": is_admin(request.user),
        })
    with_volumes = request.POST.get("volumes") == "delete"
    for item in items:
        if item.outcome in ("refused", "failed"):
            _audit_unrun(request, chosen, item)
        elif not item.outcome:
            _run(request, chosen, item, with_volumes, force_off)
    said = summary(chosen, items)
    done = any(i.outcome == "done" for i in items)
    bad = any(i.outcome in ("refused", "failed") for i in items)
    if done and not bad:
        messages.success(request, said)
    elif done or not bad:  # some done, or only skipped ones
        messages.warning(request, said)
    else:
        messages.error(request, said)
    return redirect(back)
