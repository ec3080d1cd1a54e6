"""Virtual networks and their DHCP hosts (fixed addresses), admins only like the pages.

Each endpoint validates the page's own form and runs the page's own function (networks/views.py,
networks/actions.py: the declared operation, its one audit record); see api/base.py. Stopping or deleting
a network VMs use needs the same confirmation as the page: `acknowledge`, the UUIDs of those VMs (the
detail lists them), checked against the VMs using it at the moment of the request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import path, reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import ApiView, Done, Serializer, answer, data_of, declared, form_schema, page_of, valid
from api.errors import Conflict
from hosts import services
from hosts.models import Host
from networks import actions as pages
from networks import operations as ops
from networks import views as network_pages
from networks.forms import FixedHostForm, NetworkForm
from virt import networks
from virt.interfaces import InterfaceReport, host_interfaces
from virt.reads import NETWORKS
from webkvm.i18n import said
from webkvm.operations import ADMIN, Access, Outcome, by_method, host_or_404, page

# POST .../actions/<action>/: the page's simple actions and stop (confirmed like the page's stop).
ACTIONS = {**ops.SIMPLE, "stop": ops.STOP}
ACTION = Access(ADMIN, by="action", choices=ACTIONS)
CONFIRM_WORDS = ("When VMs use the network, send `acknowledge`: their UUIDs (the detail's `users`), in the body "
                 "or as ?acknowledge=UUID,UUID; otherwise 409 not_confirmed and nothing is done.")
IPV4 = ("ipv4_address", "ipv4_dhcp_start", "ipv4_dhcp_end")


# --- what is answered ---------------------------------------------------------------------------------

class FixedHostOut(Serializer):
    mac = serializers.CharField(help_text="empty for IPv6 hosts (matched by name)")
    ip = serializers.CharField()
    name = serializers.CharField()


class SubnetOut(Serializer):
    address = serializers.CharField(help_text="the host's address with its prefix, e.g. 10.213.1.1/24")
    family = serializers.IntegerField(help_text="4 or 6")
    dhcp_ranges = serializers.ListField(child=serializers.ListField(child=serializers.CharField()),
                                        help_text="[start, end] pairs")
    dhcp_hosts = FixedHostOut(many=True)


class NetworkOut(Serializer):
    name = serializers.CharField()
    uuid = serializers.CharField()
    mode = serializers.CharField(help_text="nat, route, open, isolated, bridge, macvtap (or libvirt's own word)")
    macvtap_mode = serializers.CharField()
    bridge = serializers.CharField()
    forward_dev = serializers.CharField()
    devices = serializers.ListField(child=serializers.CharField(), help_text="host NICs of a macvtap network")
    subnets = SubnetOut(many=True)
    domain = serializers.CharField()
    active = serializers.BooleanField()
    autostart = serializers.BooleanField()
    persistent = serializers.BooleanField()
    connections = serializers.IntegerField()
    url = serializers.URLField()


class NetworkPage(Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = NetworkOut(many=True)


class NetworkUserOut(Serializer):
    name = serializers.CharField()
    uuid = serializers.CharField()
    active = serializers.BooleanField()


class LeaseOut(Serializer):
    mac = serializers.CharField()
    ip = serializers.CharField(help_text="with its prefix")
    hostname = serializers.CharField()
    client_id = serializers.CharField()
    family = serializers.IntegerField()
    expires = serializers.IntegerField(allow_null=True, help_text="epoch seconds; null: never")


class NetworkDetailOut(NetworkOut):
    users = NetworkUserOut(many=True, help_text="VMs with a NIC on it (now or from their next boot)")
    leases = LeaseOut(many=True, allow_null=True, help_text="null: not known (see leases_note)")
    leases_note = serializers.CharField()
    xml = serializers.CharField()


class NetworkCreated(Serializer):
    message = serializers.CharField()
    name = serializers.CharField()
    url = serializers.URLField()


class NetworkConfirmation(Serializer):
    acknowledge = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="the UUIDs of the VMs using the network (its detail's `users`); needed when any does")


def _fixed(host: networks.FixedHost) -> dict[str, str]:
    return {"mac": host.mac, "ip": host.ip, "name": host.name}


def _network(request: Request, host: Host, info: networks.NetworkInfo) -> dict[str, Any]:
    return {
        "name": info.name, "uuid": info.uuid, "mode": info.mode, "macvtap_mode": info.macvtap_mode,
        "bridge": info.bridge, "forward_dev": info.forward_dev, "devices": list(info.devices),
        "subnets": [{"address": s.address, "family": s.family, "dhcp_ranges": [list(r) for r in s.dhcp_ranges],
                     "dhcp_hosts": [_fixed(h) for h in s.hosts]} for s in info.subnets],
        "domain": info.domain, "active": info.active, "autostart": info.autostart, "persistent": info.persistent,
        "connections": info.connections, "url": _url(request, host, info.name),
    }


def _url(request: Request, host: Host, name: str) -> str:
    return request.build_absolute_uri(reverse("api:network", args=[host.name, name]))


def _detail(request: Request, host: Host, detail: networks.NetworkDetail) -> dict[str, Any]:
    leases = None if detail.leases is None else [
        {"mac": lease.mac, "ip": lease.ip, "hostname": lease.hostname, "client_id": lease.client_id,
         "family": lease.family, "expires": lease.expires or None} for lease in detail.leases]
    return {**_network(request, host, detail.info),
            "users": [{"name": u.name, "uuid": u.uuid, "active": u.active} for u in detail.users],
            "leases": leases, "leases_note": detail.leases_note, "xml": detail.xml}


# --- networks -----------------------------------------------------------------------------------------

class NetworkList(ApiView):
    access = by_method(GET=page(ADMIN), POST=ops.CREATE)

    @extend_schema(summary="A host's networks (admins)", responses=NetworkPage, operation_id="networks_list")
    def get(self, request: Request, host: str) -> Response:
        target = host_or_404(host)
        rows = services.read(target, NETWORKS)  # the list page's own shared read
        paginator = LimitOffsetPagination()
        chosen = page_of(paginator, rows, request, self)
        return paginator.get_paginated_response([_network(request, target, info) for info in chosen])

    @extend_schema(summary="Create a network: NAT, routed, open, isolated, bridged or macvtap (admins)",
                   description="Fields left out take the page's own choices: NAT, a subnet and DHCP range this "
                               "host does not use yet, started now. `hosts`: lines of 'MAC IP [name]' (IPv4) or "
                               "'IP name' (IPv6).",
                   operation_id="network_create", request=form_schema(NetworkForm, "NetworkCreate"),
                   responses={201: NetworkCreated})
    def post(self, request: Request, host: str) -> Response:
        target = host_or_404(host)
        data = data_of(request, NetworkForm)
        facts = network_pages.host_facts(request, target, str(data.get("name", "")))
        if not any(field in data for field in IPV4):  # the page's preselected free subnet and DHCP range
            data = {**NetworkForm(facts).initial, **data}
        form = NetworkForm(facts, data)
        valid(form)
        outcome = network_pages.create_network_from(request, target, form, quiet=True)
        name = form.to_spec().name
        return answer(outcome, form, data={"name": name, "url": _url(request, target, name)}, created=True)


class Network(ApiView):
    access = by_method(GET=page(ADMIN), DELETE=ops.DELETE)

    @extend_schema(summary="One network with its fixed addresses, DHCP leases and the VMs using it (admins)",
                   responses=NetworkDetailOut, operation_id="network_detail")
    def get(self, request: Request, host: str, name: str) -> Response:
        target = host_or_404(host)
        detail = services.call(target, lambda conn: networks.network_detail(conn, name), network_pages.DETAIL_TIMEOUT)
        return Response(_detail(request, target, detail))

    @extend_schema(summary="Delete a network's definition (admins)", operation_id="network_delete",
                   description=CONFIRM_WORDS,
                   request=NetworkConfirmation, responses={200: Done})
    def delete(self, request: Request, host: str, name: str) -> Response:
        return _confirmed(request, host_or_404(host), name, "delete")


class NetworkAction(ApiView):
    access = ACTION

    @extend_schema(summary="Start, stop, autostart or no-autostart a network (admins)",
                   description="stop: " + CONFIRM_WORDS,
                   operation_id="network_action", request=NetworkConfirmation, responses={200: Done},
                   parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH, enum=sorted(ACTIONS))])
    def post(self, request: Request, host: str, name: str, action: str) -> Response:
        target = host_or_404(host)
        if action == "stop":
            return _confirmed(request, target, name, action)
        return answer(pages.simple_action(request, target, name, action, quiet=True))


def _acknowledged(request: Request) -> str:
    """The UUIDs the caller confirmed (a list or a comma-separated text, in the body or the query), as the
    page's confirmation box carries them (actions.users_key)."""
    given: Any = request.data.get("acknowledge") if isinstance(request.data, Mapping) else None
    if given is None:
        given = request.query_params.get("acknowledge", "")
    if isinstance(given, str):
        given = given.split(",")
    if not isinstance(given, list):
        return ""
    return ",".join(sorted(str(u).strip().lower() for u in given if str(u).strip()))


def _confirmed(request: Request, target: Host, name: str, action: str) -> Response:
    users = pages.network_and_users(request, target, name, action)[1]
    outcome: Outcome[str] = pages.stop_or_delete(request, target, name, action, users, _acknowledged(request),
                                                 quiet=True)
    if isinstance(outcome.exception, pages.NotConfirmed):
        named = ", ".join(f"{u.name} ({u.uuid})" for u in users)
        raise Conflict(_("Network %(name)s is used by %(vms)s: send acknowledge with their UUIDs to confirm.")
                       % {"name": name, "vms": named}, code="not_confirmed")
    return answer(outcome)


# --- DHCP hosts (fixed addresses) ---------------------------------------------------------------------

class DhcpHosts(ApiView):
    access = by_method(POST=ops.HOST_ADD)

    @extend_schema(summary="Add a fixed address: MAC and IPv4 (name optional), or IPv6 and name (admins)",
                   operation_id="network_dhcp_host_add", request=form_schema(FixedHostForm, "DhcpHost"),
                   responses={201: Done})
    def post(self, request: Request, host: str, name: str) -> Response:
        target = host_or_404(host)
        form = FixedHostForm(data_of(request, FixedHostForm))
        valid(form)
        fixed = form.to_host()  # read first: a field error the host finds takes the field out of cleaned_data
        return answer(pages.add_fixed(request, target, name, form, quiet=True), form, data=_fixed(fixed),
                      created=True)


class DhcpHost(ApiView):
    access = by_method(DELETE=ops.HOST_REMOVE)

    @extend_schema(summary="Remove the fixed address of an IP (admins)", operation_id="network_dhcp_host_remove",
                   responses={200: Done})
    def delete(self, request: Request, host: str, name: str, ip: str) -> Response:
        outcome = pages.remove_fixed(request, host_or_404(host), name, ip, quiet=True)
        if isinstance(outcome.exception, pages.NoFixedAddress):
            raise NotFound(outcome.error)
        removed = outcome.value
        return answer(outcome, message=_("Network %(name)s: fixed address %(address)s removed.")
                      % {"name": name, "address": removed.label()} if removed else "")


# --- the host's own interfaces (NICs, bridges): the page networks:interfaces ---------------------------

class InterfaceOut(Serializer):
    name = serializers.CharField()
    kind = serializers.CharField(help_text="ethernet, bridge, bond, vlan, loopback or virtual")
    mac = serializers.CharField()
    state = serializers.CharField(help_text="up, down, unknown... as the kernel says")
    speed_mbps = serializers.IntegerField(allow_null=True)
    addresses = serializers.ListField(child=serializers.CharField(), help_text="only the netcf backend says")


class InterfacesOut(Serializer):
    source_ = serializers.CharField(help_text="interface API or node devices; empty when neither answered")
    problems = serializers.ListField(child=serializers.CharField(), help_text="why a source was not used")
    interfaces = InterfaceOut(many=True)
    bridges = serializers.ListField(child=serializers.CharField(),
                                    help_text="what a bridged network may use (node devices: virtual devices "
                                              "that may be a bridge)")
    nics = serializers.ListField(child=serializers.CharField(), help_text="what a macvtap network may use")


def _interfaces(report: InterfaceReport) -> dict[str, Any]:
    return {"source": report.source, "problems": [said(problem) for problem in report.problems],
            "interfaces": [{"name": i.name, "kind": i.kind, "mac": i.mac, "state": i.state,
                            "speed_mbps": i.speed_mbps, "addresses": list(i.addresses)} for i in report.interfaces],
            "bridges": [i.name for i in report.bridges], "nics": [i.name for i in report.nics]}


class HostInterfaces(ApiView):
    access = page(ADMIN)

    @extend_schema(summary="The host's NICs and bridges (admins): what a bridged or macvtap network may use",
                   operation_id="host_interfaces", responses=InterfacesOut)
    def get(self, request: Request, host: str) -> Response:
        # The page's own read, within its deadline.
        report = services.call(host_or_404(host), host_interfaces, network_pages.DETAIL_TIMEOUT)
        return Response(_interfaces(report))


NET = "networks/<str:host>/<str:name>/"
urlpatterns: list[Any] = [
    path("networks/<str:host>/", declared(NetworkList), name="networks"),
    path(NET, declared(Network), name="network"),
    path(NET + "actions/<str:action>/", declared(NetworkAction), name="network-action"),
    path(NET + "dhcp-hosts/", declared(DhcpHosts), name="network-dhcp-hosts"),
    path(NET + "dhcp-hosts/<str:ip>/", declared(DhcpHost), name="network-dhcp-host"),
    path("hosts/<str:host>/interfaces/", declared(HostInterfaces), name="host-interfaces"),
]
