"""Hosts (admins): add over each transport, edit, remove, test, status, capabilities, open to users, confirm
a new machine.

Each change validates the page's own form (hosts/forms.py, hosts/shares.py) and runs the page's own function
(its declared operation: one audit record, marked as made through the API); see api/base.py. No answer ever
holds a credential: the SASL password is stored encrypted and only said to be set, pinned ssh host keys are
shown by fingerprint."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import ApiView, Done, Field, Serializer, answer, data_of, declared, field_errors, form_schema, valid
from hosts import operations as ops
from hosts import services, shares
from hosts import views as pages
from hosts.forms import HostForm
from hosts.models import Host
from virt.capabilities import HostOffer, host_offer
from virt.errors import VirtError
from virt.hostinfo import HostSummary
from virt.reads import HOST_SUMMARY, HOST_USAGE
from webkvm import permissions
from webkvm.models import SharedKind, SharedResource
from webkvm.operations import ADMIN, by_method, host_or_404, host_trouble, page, refused, told

# --- the host record (never a credential) ---------------------------------------------------------------

class HostRecordOut(Serializer):
    name = serializers.CharField()
    transport = serializers.CharField()
    hostname = serializers.CharField()
    port = serializers.IntegerField(allow_null=True)
    username = serializers.CharField()
    path = serializers.CharField()
    tls_pkipath = serializers.CharField()
    sasl_username = serializers.CharField()
    sasl_password_set = serializers.BooleanField(help_text="a SASL password is stored (encrypted; never shown)")
    insecure_tcp = serializers.BooleanField()
    uri = serializers.CharField(help_text="the connection URI, without the panel's internal options")
    ssh_host_keys = serializers.ListField(child=serializers.CharField(), help_text="fingerprints of the pinned keys")
    hypervisor_uuid = serializers.CharField(help_text="the machine the host answered as when first reached")
    unconfirmed_uuid = serializers.CharField(help_text="another machine it answers as now: confirm it")
    grants_suspended = serializers.BooleanField()
    url = serializers.URLField()


def record(request: Request, host: Host) -> dict[str, Any]:
    return {"name": host.name, "transport": host.transport, "hostname": host.hostname, "port": host.port,
            "username": host.username, "path": host.path, "tls_pkipath": host.tls_pkipath,
            "sasl_username": host.sasl_username, "sasl_password_set": bool(host.sasl_password_encrypted),
            "insecure_tcp": host.insecure_tcp, "uri": host.display_uri(),
            "ssh_host_keys": [key.fingerprint for key in host.pinned_keys],
            "hypervisor_uuid": host.hypervisor_uuid, "unconfirmed_uuid": host.unconfirmed_uuid,
            "grants_suspended": permissions.suspended(host),
            "url": request.build_absolute_uri(reverse("api:host", args=[host.name]))}


# --- add and edit: the page's form, and its ssh host key pinning in two requests ------------------------

KEY_STEP: dict[str, Field] = {
    "host_keys_token": serializers.CharField(required=False, help_text="ssh: the token of the answer that "
                                             "showed the host's keys, sent back to accept them"),
    "accept_host_key": serializers.BooleanField(required=False, help_text="ssh: the shown keys are the host's"),
    "rescan_host_key": serializers.BooleanField(required=False, help_text="ssh: scan and pin the host's keys again"),
}
# A ModelForm: api/base.py types its helpers for forms.Form, though they only read base_fields.
HostIn = form_schema(HostForm, "HostIn", **KEY_STEP)


class ScannedKey(Serializer):
    type = serializers.CharField()
    fingerprint = serializers.CharField()


class KeysToConfirm(Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields_ = serializers.DictField()
    ssh_host_keys = ScannedKey(many=True, help_text="compare these with the host's own before accepting them")
    key_changed = serializers.BooleanField(help_text="none of them is a key pinned before: the host's keys changed")
    host_keys_token = serializers.CharField(help_text="send it back with accept_host_key true")


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "on", "1", "yes")


def _key_step(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"host_keys_token": str(data.get("host_keys_token") or ""),
            "accept_host_key": _flag(data.get("accept_host_key")),
            "rescan_host_key": _flag(data.get("rescan_host_key"))}


def _keys_to_confirm(check: pages.KeyCheck) -> Response:
    """The ssh host's keys, for the caller to compare and accept: nothing is saved until it sends them back."""
    words = _("Compare these ssh host keys with the host's own, then send the same request again with "
              "host_keys_token and accept_host_key true.")
    return Response({"code": "invalid", "message": words, "fields": {"accept_host_key": [words]},
                     "ssh_host_keys": [{"type": k.key_type, "fingerprint": k.fingerprint} for k in check.scanned],
                     "key_changed": check.changed, "host_keys_token": check.token},
                    status=status.HTTP_400_BAD_REQUEST)


def _save(request: Request, host: Host | None, form: HostForm) -> Response:
    valid(form)
    check = pages.check_keys(form, host, _key_step(data_of(request)))  # a JSON object: the form read it
    if check is None:  # ssh-keyscan failed: said on the hostname field
        raise ValidationError(field_errors(form))
    if check.to_confirm:
        return _keys_to_confirm(check)
    outcome = pages.save_host(request, host, form, check.pinned, quiet=True)
    saved = outcome.value
    if saved is None:
        return answer(outcome, form)  # raises: what failed
    return answer(outcome, form, message=pages.saved_words(saved), data=record(request, saved), created=host is None)


def create(request: Request) -> Response:
    """host.create (POST hosts/, routed in api/views.py): missing fields take the form's initial values."""
    return _save(request, None, HostForm(data_of(request, HostForm)))


def _changed(request: Request, host: Host) -> HostForm:
    """The form of a partial edit: the host's stored values, then those the caller sent (an empty SASL password
    keeps the stored one, as on the page)."""
    current = HostForm(instance=host).initial
    return HostForm({**current, **data_of(request)}, instance=host)


def _described(value: str) -> Field:
    optional = "None" in value
    kind: dict[str, type[Field]] = {"str": serializers.CharField, "int": serializers.IntegerField,
                                    "float": serializers.FloatField}
    return kind[value.split(" ")[0]](allow_null=optional)


# HostSummary's fields, as virt/hostinfo.py reads them (the page's facts).
HostSummaryOut = type("HostSummaryOut", (Serializer,),
                      {f.name: _described(str(f.type)) for f in dataclasses.fields(HostSummary)})


class HostStatusOut(Serializer):
    state = serializers.CharField(help_text="the connection's state: up, degraded, down or unknown")
    reachable = serializers.BooleanField(help_text="the host answered this request")
    reason = serializers.CharField(help_text="why it did not answer, in words; empty when it did")


class UsageOut(Serializer):
    time = serializers.FloatField(help_text="epoch seconds")
    cpu_busy_ns = serializers.IntegerField(allow_null=True, help_text="cumulative: two samples give the load")
    cpu_total_ns = serializers.IntegerField(allow_null=True)
    memory_total = serializers.IntegerField()
    memory_used = serializers.IntegerField(allow_null=True)
    memory_free = serializers.IntegerField(allow_null=True)
    memory_percent = serializers.FloatField(allow_null=True)


class HostDetailOut(HostRecordOut):
    status = HostStatusOut()
    summary = HostSummaryOut(allow_null=True)
    usage = UsageOut(allow_null=True)


def _live(request: Request, host: Host) -> dict[str, Any]:
    """The page's reads: the summary (within the host's deadline: a dead host answers in seconds, with the
    reason) and, when it answered, a usage sample."""
    try:
        summary = services.read(host, HOST_SUMMARY)
    except VirtError as exc:
        reason = told(request.user, exc, host_trouble(exc))
        return {"status": {"state": services.status(host).state.value, "reachable": False, "reason": reason},
                "summary": None, "usage": None}
    usage = None
    with suppress(VirtError):
        usage = services.read(host, HOST_USAGE).as_dict()
    return {"status": {"state": services.status(host).state.value, "reachable": True, "reason": ""},
            "summary": summary.as_dict(), "usage": usage}


class HostView(ApiView):
    """A host (admins): its record and live state; edit it; remove it from the panel."""

    access = by_method(GET=page(ADMIN), PATCH=ops.UPDATE, DELETE=ops.DELETE)

    @extend_schema(summary="One host: its record, whether it answers (or why not), its facts and usage",
                   operation_id="host_detail", responses={200: HostDetailOut})
    def get(self, request: Request, host: str) -> Response:
        chosen = host_or_404(host)
        return Response({**record(request, chosen), **_live(request, chosen)})

    @extend_schema(summary="Edit a host (send only what changes; no SASL password keeps the stored one)",
                   operation_id="host_update", request=HostIn, responses={200: HostRecordOut, 400: KeysToConfirm})
    def patch(self, request: Request, host: str) -> Response:
        chosen = host_or_404(host)
        return _save(request, chosen, _changed(request, chosen))

    @extend_schema(summary="Remove a host from the panel (nothing on the hypervisor changes)",
                   operation_id="host_delete", responses={200: Done})
    def delete(self, request: Request, host: str) -> Response:
        chosen = host_or_404(host)
        return answer(pages.remove_host(request, chosen, quiet=True), message=pages.removed_words(chosen.name))


class TestedOut(Serializer):
    message = serializers.CharField()
    summary = HostSummaryOut()


class HostTest(ApiView):
    """Ask the host for its summary, as the page's Test connection button (host.test, audited)."""

    access = by_method(POST=ops.TEST)

    @extend_schema(summary="Test the connection (audited); a failure answers 503 or 409 with the reason",
                   operation_id="host_test", request=None, responses={200: TestedOut})
    def post(self, request: Request, host: str) -> Response:
        chosen = host_or_404(host)
        outcome = pages.connection_test(request, chosen, quiet=True)
        if outcome.value is None:
            return answer(outcome)  # raises: the host did not answer (503) or failed (409)
        return answer(outcome, message=pages.tested_words(chosen, outcome.value),
                      data={"summary": outcome.value.as_dict()})


class ConfirmedOut(Serializer):
    message = serializers.CharField()
    confirmed = serializers.BooleanField(help_text="false: nothing to confirm, it answers as its recorded machine")
    hypervisor_uuid = serializers.CharField()


class HostMachineConfirm(ApiView):
    """The host answers as another machine (hosts/machine.py): an admin says it is the right one."""

    access = by_method(POST=ops.CONFIRM_MACHINE)

    @extend_schema(summary="Confirm that the host is now the machine it answers as (its grants count again)",
                   operation_id="host_confirm_machine", request=None, responses={200: ConfirmedOut})
    def post(self, request: Request, host: str) -> Response:
        chosen = host_or_404(host)
        if not chosen.unconfirmed_uuid:
            return Response({"message": pages.nothing_to_confirm(chosen), "confirmed": False,
                             "hypervisor_uuid": chosen.hypervisor_uuid})
        outcome = pages.confirm_machine(request, chosen, quiet=True)
        return answer(outcome, message=pages.confirmed_words(chosen, outcome.value or ""),
                      data={"confirmed": True, "hypervisor_uuid": chosen.hypervisor_uuid})


# --- capabilities: what the host offers a new VM (the create form's whitelist) --------------------------

class PoolOfferOut(Serializer):
    name = serializers.CharField()
    active = serializers.BooleanField()
    available_bytes = serializers.IntegerField()


class MachineAlias(Serializer):
    alias = serializers.CharField()
    machine = serializers.CharField()


class CapabilitiesOut(Serializer):
    arch = serializers.CharField()
    domain_type = serializers.CharField(help_text="the preferred one (kvm when the host has it)")
    domain_types = serializers.ListField(child=serializers.CharField())
    machines = serializers.ListField(child=serializers.CharField())
    current_machines = serializers.ListField(child=serializers.CharField(), help_text="what a new VM should use")
    special_machines = serializers.ListField(child=serializers.CharField())
    machine_aliases = MachineAlias(many=True)
    default_machine = serializers.CharField()
    firmwares = serializers.ListField(child=serializers.CharField())
    cpu_modes = serializers.ListField(child=serializers.CharField())
    max_vcpus = serializers.IntegerField()
    memory_mib = serializers.IntegerField()
    pools = PoolOfferOut(many=True)
    networks = serializers.ListField(child=serializers.CharField())
    bridges = serializers.ListField(child=serializers.CharField())


def _capabilities(offer: HostOffer) -> dict[str, Any]:
    return {"arch": offer.arch, "domain_type": offer.domain_type, "domain_types": list(offer.domain_types),
            "machines": list(offer.machines), "current_machines": list(offer.current_machines),
            "special_machines": list(offer.special_machines),
            "machine_aliases": [{"alias": a, "machine": m} for a, m in offer.machine_aliases],
            "default_machine": offer.default_machine, "firmwares": list(offer.firmwares),
            "cpu_modes": list(offer.cpu_modes), "max_vcpus": offer.max_vcpus, "memory_mib": offer.memory_mib,
            "pools": [{"name": p.name, "active": p.active, "available_bytes": p.available_bytes} for p in offer.pools],
            "networks": list(offer.networks), "bridges": list(offer.bridges)}


class HostCapabilities(ApiView):
    """What the create form offers on this host (virt/capabilities.py), read in a few libvirt calls."""

    access = page(ADMIN)

    @extend_schema(summary="What the host offers a new VM: machine types, firmware, CPU modes, pools, networks, "
                           "bridges", operation_id="host_capabilities", responses={200: CapabilitiesOut})
    def get(self, request: Request, host: str) -> Response:
        return Response(_capabilities(services.call(host_or_404(host), host_offer)))


# --- open to users (hosts/shares.py) ---------------------------------------------------------------------

class ShareOut(Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=SharedKind.choices)
    label_ = serializers.CharField()
    name = serializers.CharField()
    url = serializers.URLField(help_text="DELETE it to close it to users again")


def _share(request: Request, host: Host, opened: SharedResource) -> dict[str, Any]:
    return {"id": opened.pk, "kind": opened.kind, "label": SharedKind(opened.kind).label, "name": opened.name,
            "url": request.build_absolute_uri(reverse("api:host-share", args=[host.name, opened.pk]))}


def _offer(request: Request, host: Host) -> HostOffer:
    """The names the host has, which the form checks against; a host that cannot be asked: the refusal is
    audited (as on the page) and the failure answered."""
    try:
        return services.call(host, host_offer)
    except VirtError as exc:
        refused(request, ops.SHARE, host=host, name=host.name, reason=f"{host.name} could not be asked: {exc}")
        raise


class HostShares(ApiView):
    """What an admin opened of the host to users who are not admins (webkvm/sharing.py)."""

    access = by_method(GET=page(ADMIN), POST=ops.SHARE)

    @extend_schema(summary="What users who are not admins may use of the host", operation_id="host_shares",
                   responses={200: ShareOut(many=True)})
    def get(self, request: Request, host: str) -> Response:
        chosen = host_or_404(host)
        return Response([_share(request, chosen, opened) for opened in shares.listed(chosen)])

    @extend_schema(summary="Open a network, bridge, pool or ISO library of the host to users",
                   operation_id="host_share", request=form_schema(shares.ShareForm, "ShareIn"),
                   responses={201: ShareOut})
    def post(self, request: Request, host: str) -> Response:
        chosen = host_or_404(host)
        form = shares.ShareForm(chosen, _offer(request, chosen), data_of(request, shares.ShareForm))
        valid(form)
        outcome = shares.open_to_users(request, chosen, form, quiet=True)
        opened = outcome.value
        if opened is None:
            return answer(outcome, form)  # raises: what failed
        return answer(outcome, form, message=shares.opened_words(chosen, opened), data=_share(request, chosen, opened),
                      created=True)


class HostShare(ApiView):
    """One thing opened to users."""

    access = by_method(DELETE=ops.UNSHARE)

    @extend_schema(summary="Close it to users again (what they attached stays)", operation_id="host_unshare",
                   responses={200: Done})
    def delete(self, request: Request, host: str, pk: int) -> Response:
        chosen = host_or_404(host)
        opened = get_object_or_404(SharedResource, pk=pk, host=chosen)
        words = shares.closed_words(chosen, opened)
        return answer(shares.close_to_users(request, chosen, opened, quiet=True), message=words)


# --- the panel's own ssh key (what a qemu+ssh host must accept) -------------------------------------------

class SshKeyOut(Serializer):
    public_key = serializers.CharField(help_text="one authorized_keys line: add it for the user of each "
                                       "qemu+ssh host")


class PanelSshKey(ApiView):
    """The panel's public ssh key, as its page shows it (made on first use)."""

    access = page(ADMIN)

    @extend_schema(summary="The panel's public ssh key, for the authorized_keys of qemu+ssh hosts (admins)",
                   operation_id="panel_ssh_key", responses={200: SshKeyOut})
    def get(self, request: Request) -> Response:
        ident = services.identity()  # the page's own read (hosts.views.panel_ssh_key)
        ident.ensure()
        return Response({"public_key": ident.public_key_line()})


HOST = "hosts/<str:host>/"
urlpatterns: list[Any] = [
    path("hosts/ssh-key/", declared(PanelSshKey), name="panel-ssh-key"),  # before HOST, as on the pages
    path(HOST, declared(HostView), name="host"),
    path(HOST + "test/", declared(HostTest), name="host-test"),
    path(HOST + "capabilities/", declared(HostCapabilities), name="host-capabilities"),
    path(HOST + "shares/", declared(HostShares), name="host-shares"),
    path(HOST + "shares/<int:pk>/", declared(HostShare), name="host-share"),
    path(HOST + "machine/confirm/", declared(HostMachineConfirm), name="host-confirm-machine"),
]
