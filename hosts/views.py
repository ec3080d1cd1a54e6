"""Host pages: list with live state, add/edit with ssh key pinning, overview with usage graphs.

The functions doing the work of an operation (save, remove, test, confirm the machine) are the page's and
the API's (api/hosts.py); the operations' pages are generated from the declarations
(webkvm/operation_views.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from django.contrib import messages
from django.core import signing
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from hosts import machine, services, shares
from hosts import operations as ops
from hosts.forms import HostForm
from hosts.models import Host
from virt.errors import Said, VirtError
from virt.hostinfo import HostSummary, host_summary
from virt.reads import HOST_SUMMARY, HOST_USAGE
from virt.ssh import HostKey, keyscan
from virt.uri import Transport
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import ADMIN, Operation, Outcome, View, host_trouble, page, perform, route

PIN_SALT = "hosts.pin-ssh-keys"


@require_GET
@route(page(ADMIN))
def host_list(request: HttpRequest) -> HttpResponse:
    hosts = list(Host.objects.all())
    outcomes = services.read_many(hosts, HOST_SUMMARY)
    return render(request, "hosts/list.html", {"outcomes": outcomes})


@require_GET
@route(page(ADMIN))
def host_detail(request: HttpRequest, name: str) -> HttpResponse:
    host = get_object_or_404(Host, name=name)
    summary, error = None, ""
    try:
        summary = services.read(host, HOST_SUMMARY)
    except VirtError as exc:
        error = host_trouble(exc)
    return render(request, "hosts/detail.html", {
        "host": host, "summary": summary, "error": error, "status": services.status(host),
        "shared": shares.listed(host), "share_form": shares.ShareForm(host),
    })


@require_GET
@route(page(ADMIN, polled=True))
def host_usage(request: HttpRequest, name: str) -> JsonResponse:
    host = get_object_or_404(Host, name=name)
    try:
        sample = services.read(host, HOST_USAGE)
    except VirtError as exc:
        return JsonResponse({"error": said(exc)}, status=503)
    return JsonResponse(sample.as_dict())


_CONNECTED = "connected to {hypervisor} on {hostname}, libvirt {version}, {vms} VMs."


def _connected(summary: HostSummary, template: str = _CONNECTED) -> str:
    return template.format(hypervisor=summary.hypervisor, hostname=summary.hostname,
                           version=summary.libvirt_version, vms=summary.domains_total)


def connection_test(request: HttpRequest, host: Host, *, quiet: bool = False) -> Outcome[HostSummary]:
    """host.test: ask the host for its summary (the page and the API)."""
    return perform(request, ops.TEST, host=host, name=host.name, work=lambda: services.call(host, host_summary),
                   done=lambda summary: tested_words(host, summary), detail=_connected, quiet=quiet)


def tested_words(host: Host, summary: HostSummary) -> str:
    return _("{host}: connected to {hypervisor} on {hostname}, libvirt {version}, {vms} VMs.").format(
        host=host.name, hypervisor=summary.hypervisor, hostname=summary.hostname, version=summary.libvirt_version,
        vms=summary.domains_total)


def nothing_to_confirm(host: Host) -> str:
    return _("%(host)s: nothing to confirm, it answers as its recorded machine.") % {"host": host.name}


def confirm_machine(request: HttpRequest, host: Host, *, quiet: bool = False) -> Outcome[Said]:
    """host.confirm_machine, for a host holding an unconfirmed machine (the caller checks it has one)."""
    return perform(request, ops.CONFIRM_MACHINE, host=host, name=host.name, work=lambda: machine.confirm(host),
                   done=lambda words: confirmed_words(host, words), detail=lambda words: f"{host.name}: {words}.",
                   quiet=quiet)


def confirmed_words(host: Host, words: Said | str) -> str:
    return _("%(host)s: %(words)s.") % {"host": host.name, "words": said(words)}


def _pinned_keys_from_token(token: str, hostname: str, port: int | None) -> list[HostKey] | None:
    try:
        data = signing.loads(token, salt=PIN_SALT, max_age=900)
    except signing.BadSignature:
        return None
    if data.get("hostname") != hostname or data.get("port") != port:
        return None
    return [HostKey.parse(line) for line in data.get("keys", [])]


def _needs_keys(form: HostForm, host: Host | None, rescan: bool) -> bool:
    data = form.cleaned_data
    if data["transport"] != Transport.SSH:
        return False
    if host is None or not host.ssh_host_keys or rescan:
        return True
    # The stored values, as the form found them: validation has already written the new ones on `host`.
    stored = form.initial
    return bool(stored.get("transport") != Transport.SSH or stored.get("hostname") != data["hostname"]
                or stored.get("port") != data["port"])


@dataclass(frozen=True)
class KeyCheck:
    """What the ssh host keys need before a host is saved: nothing (`pinned` None: keep those pinned, or the
    transport needs none), keys to pin with the save, or keys the admin must compare first (`token` set)."""

    pinned: list[HostKey] | None = None
    scanned: list[HostKey] = field(default_factory=list)
    token: str = ""  # signed: the scanned keys, which the admin's next request accepts
    changed: bool = False  # none of the scanned keys is one of those pinned: the host's keys changed

    @property
    def to_confirm(self) -> bool:
        return bool(self.token)


def check_keys(form: HostForm, host: Host | None, asked: Mapping[str, Any]) -> KeyCheck | None:
    """The ssh host keys a valid form needs (page and API); `asked` holds rescan_host_key, host_keys_token and
    accept_host_key. None: ssh-keyscan failed, said on the form's hostname field."""
    data = form.cleaned_data
    if not _needs_keys(form, host, bool(asked.get("rescan_host_key"))):
        return KeyCheck()
    token = str(asked.get("host_keys_token") or "")
    if token and asked.get("accept_host_key"):
        keys = _pinned_keys_from_token(token, data["hostname"], data["port"])
        if keys is not None:
            return KeyCheck(pinned=keys)
    try:
        scanned = keyscan(data["hostname"], data["port"])
    except VirtError as exc:
        form.add_error("hostname", said(exc))
        return None
    pinned = {k.fingerprint for k in host.pinned_keys} if host and host.ssh_host_keys else set()
    return KeyCheck(scanned=scanned, changed=bool(pinned) and not pinned & {k.fingerprint for k in scanned},
                    token=signing.dumps({"hostname": data["hostname"], "port": data["port"],
                                         "keys": [k.line() for k in scanned]}, salt=PIN_SALT))


def save_host(request: HttpRequest, host: Host | None, form: HostForm, keys: list[HostKey] | None, *,
              quiet: bool = False) -> Outcome[Host]:
    """host.create (`host` None) or host.update of a valid form, pinning `keys` when given (page and API)."""
    op = ops.CREATE if host is None else ops.UPDATE
    detail = form.instance.display_uri()
    if keys is not None:
        detail += "; pinned ssh host key " + ", ".join(k.fingerprint for k in keys)

    def save() -> Host:
        with transaction.atomic():
            saved: Host = form.save(commit=False)
            if keys is not None:
                saved.ssh_host_keys = "".join(k.line() + "\n" for k in keys)
            saved.save()
        services.sync_known_hosts()
        services.registry.forget(str(saved.pk))
        return saved

    # form.instance carries the new name already: the audit record names the host as saved.
    return perform(request, op, host=form.instance, name=form.instance.name, work=save,
                   done=saved_words(form.instance), detail=detail, quiet=quiet)


def saved_words(host: Host) -> str:
    return _("Host %(host)s saved.") % {"host": host.name}


def remove_host(request: HttpRequest, host: Host, *, quiet: bool = False) -> Outcome[None]:
    """host.delete: the panel forgets the host (page and API); nothing on the hypervisor changes."""
    name = host.name

    def remove() -> None:
        services.registry.forget(str(host.pk))
        host.delete()
        services.sync_known_hosts()

    return perform(request, ops.DELETE, host=host, name=name, work=remove, done=removed_words(name),
                   detail=REMOVED.format(name=name), quiet=quiet)


REMOVED = "Host {name} removed from the panel (nothing on the hypervisor was changed)."


def removed_words(name: str) -> str:
    return _("Host {name} removed from the panel (nothing on the hypervisor was changed).").format(name=name)


@require_GET
@route(page(ADMIN))
def panel_ssh_key(request: HttpRequest) -> HttpResponse:
    ident = services.identity()
    ident.ensure()
    return render(request, "hosts/ssh_key.html", {"public_key": ident.public_key_line()})


# --- the pages of the operations, generated from the declarations (webkvm/operation_views.py) -------


def _detail(call: Call, outcome: Outcome[Any] | None = None) -> str:
    return reverse("hosts:detail", kwargs={"name": outcome.name if outcome is not None else call.target.name})


host_test = operation_view(OperationPage(
    ops.TEST, host="name", run=lambda call: connection_test(call.request, call.target),
    then=lambda call, _outcome: _detail(call)))


def _confirm_machine(call: Call) -> Outcome[Said] | None:
    """Lift the suspension of a host's grants after it answered as another machine (hosts/machine.py)."""
    host = call.target
    if not host.unconfirmed_uuid:
        messages.info(call.request, nothing_to_confirm(host))
        return None
    return confirm_machine(call.request, host)


host_confirm_machine = operation_view(OperationPage(
    ops.CONFIRM_MACHINE, host="name", run=_confirm_machine, then=lambda call, _outcome: _detail(call)))


def _save(call: Call) -> Outcome[Host] | None:
    """Save a valid form once its ssh host keys are settled; None: the form shows why not yet (keyscan
    failed on its hostname field, or the keys scanned are shown to compare and accept)."""
    form = cast(HostForm, call.form)
    check = check_keys(form, call.host, call.request.POST)
    if check is None:
        return None
    if check.to_confirm:
        call.context.update({"scanned_keys": check.scanned, "key_changed": check.changed,
                             "host_keys_token": check.token})
        return None
    return save_host(call.request, call.host, form, check.pinned)


def _host_form(call: Call, data: QueryDict | None) -> HostForm:
    call.context["host"] = call.host
    return HostForm(data or None, instance=call.host)


def _editing(declared: Operation, host: str) -> View:
    return operation_view(OperationPage(declared, host=host, template="hosts/form.html", form=_host_form, run=_save,
                                        then=lambda call, outcome: _detail(call, outcome)))


host_create = _editing(ops.CREATE, "")
host_edit = _editing(ops.UPDATE, "name")


def _grants(call: Call) -> None:
    call.context["grants"] = call.target.vm_grants.count()


host_delete = operation_view(OperationPage(
    ops.DELETE, host="name", template="hosts/delete.html", find=_grants,
    run=lambda call: remove_host(call.request, call.target), then=lambda call, _outcome: reverse("hosts:list")))
