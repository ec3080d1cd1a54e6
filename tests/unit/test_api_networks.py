"""Networks (with their DHCP hosts) and flavors through the API with tokens: each operation with libvirt (or
the database) as the witness and its one audit record, and the forms' bad-input tables answered with field
errors and nothing created."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from hosts.models import Host
from instances.models import Flavor
from tests.unit import test_api_access, test_networks_views
from tests.unit.test_api_access import TokenClient
from tests.unit.test_instance_create import BAD_FLAVORS
from tests.unit.test_networks import BAD, GOOD, WEB_UUID
from tests.unit.test_networks_views import BAD_FIXED, PAGE_BAD, ask, names, xml_of
from virt.networks import NetworkSpec
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db
callers = test_api_access.callers  # fixtures: a token per persona; the host of test_networks.WORLD
net_host = test_networks_views.net_host

NETS = "/api/v1/networks/nethost/"
VIA = "through the API, token admin-token"


def record(action: str) -> AuditEvent:
    """The one audit record of `action` (made by the admin's token)."""
    found = AuditEvent.objects.get(action=action)
    assert found.username == "api-admin" and VIA in found.detail, (found.username, found.detail)
    return found


def state(host: Host, name: str) -> tuple[bool, bool]:
    return ask(host, lambda conn: (bool(conn.networkLookupByName(name).isActive()),
                                   bool(conn.networkLookupByName(name).autostart())))


# --- reads --------------------------------------------------------------------------------------------


def test_host_interfaces_as_the_page_shows_them(callers: dict[str, TokenClient], net_host: Host,
                                               admin_client: Any) -> None:
    url = "/api/v1/hosts/nethost/interfaces/"
    report = callers["admin"].get(url)
    assert report.status_code == 200, report.content
    body = report.json()
    page = admin_client.get("/networks/nethost/interfaces/").content.decode()
    assert body["source"] == "interface API" and body["problems"] == []
    names = [interface["name"] for interface in body["interfaces"]]
    assert names and all(f'data-interface="{name}"' in page for name in names)
    by_name = {i["name"]: i for i in body["interfaces"]}
    assert by_name["eth0"]["mac"] == "52:54:00:aa:00:01" and "192.168.77.5/24" in page
    assert any("192.168.77.5/24" in i["addresses"] for i in body["interfaces"])
    assert "br0" in body["bridges"] and "eth0" in body["nics"] and by_name["br0"]["kind"] == "bridge"
    assert callers["admin"].get("/api/v1/hosts/no-such-host/interfaces/").status_code == 404
    for persona in ("user-view", "outsider"):  # an admins' read of a host: others hear what no host answers
        assert callers[persona].get(url).json() == callers[persona].get("/api/v1/hosts/nope/interfaces/").json()
        assert callers[persona].get(url).status_code == 404


def test_host_interfaces_of_an_unreachable_host(callers: dict[str, TokenClient], db: None, tmp_path: Any) -> None:
    Host.objects.create(name="gone", transport="test", path=str(tmp_path / "no-such-world.xml"))
    answer = callers["admin"].get("/api/v1/hosts/gone/interfaces/")
    assert answer.status_code in (409, 503) and answer.json()["message"], answer.content


def test_list_and_detail_as_the_pages_show_them(callers: dict[str, TokenClient], net_host: Host) -> None:
    admin = callers["admin"]
    listed = admin.get(NETS).json()
    assert listed["count"] == 2 and [n["name"] for n in listed["results"]] == ["lan", "spare"]
    lan = listed["results"][0]
    assert (lan["mode"], lan["bridge"], lan["active"]) == ("nat", "virbr9", True)
    assert lan["subnets"][0]["address"] == "192.168.150.1/24"
    assert lan["subnets"][0]["dhcp_ranges"] == [["192.168.150.10", "192.168.150.100"]]
    detail = admin.get(lan["url"]).json()
    assert detail["subnets"][0]["dhcp_hosts"] == [{"mac": "52:54:00:00:01:01", "ip": "192.168.150.5", "name": "web"}]
    assert detail["users"] == [{"name": "web-01", "uuid": WEB_UUID, "active": True}]
    assert "leases" in detail and "<name>lan</name>" in detail["xml"]
    assert admin.get(NETS + "nope/").json()["code"] == "not_found"
    assert admin.get("/api/v1/networks/no-such-host/").status_code == 404
    for persona in ("user-view", "user-change", "outsider"):  # networks are the admins' (as the pages): others
        assert callers[persona].get(NETS).status_code == 404  # hear what a network that does not exist answers
        assert callers[persona].get(NETS + "lan/").json() == callers[persona].get(NETS + "nope/").json()


# --- create -------------------------------------------------------------------------------------------

CREATED = [
    ("nat with DHCP and a fixed address", {"name": "api-nat", "ipv4_address": "10.213.1.1/24",
                                           "ipv4_dhcp_start": "10.213.1.100", "ipv4_dhcp_end": "10.213.1.200",
                                           "hosts": "52:54:00:00:00:10 10.213.1.10 h1", "autostart": True},
     "nat", True),
    ("routed, not started", {"name": "api-route", "mode": "route", "ipv4_address": "10.213.2.1/24",
                             "start": False}, "route", False),
    ("isolated on the free subnet the page offers", {"name": "api-iso", "mode": "isolated"}, None, True),
    ("bridged to a host bridge", {"name": "api-br", "mode": "bridge", "host_bridge": "br0"}, "bridge", True),
]


@pytest.mark.parametrize(("body", "forward", "active"), [c[1:] for c in CREATED], ids=[c[0] for c in CREATED])
def test_create_each_kind(callers: dict[str, TokenClient], net_host: Host, body: dict[str, Any], forward: str | None,
                          active: bool) -> None:
    refused = callers["user-change"].post(NETS, body)
    assert refused.status_code == 404 and names(net_host) == ["lan", "spare"]
    response = callers["admin"].post(NETS, body)
    assert response.status_code == 201, response.content
    assert response.json()["url"].endswith(f"{NETS}{body['name']}/")
    xml = xml_of(net_host, body["name"])
    assert xml.forward_mode == forward
    assert state(net_host, body["name"]) == (active, bool(body.get("autostart")))
    if body["name"] == "api-nat":
        ip = xml.ips[0]
        assert (ip.address, ip.dhcp_ranges[0].start, ip.dhcp_ranges[0].end) == (
            "10.213.1.1", "10.213.1.100", "10.213.1.200")
        assert [(h.mac, h.ip, h.name) for h in ip.dhcp_hosts] == [("52:54:00:00:00:10", "10.213.1.10", "h1")]
    if body.get("mode") == "isolated":
        assert xml.ips and xml.ips[0].address  # the page's free subnet was taken
    assert record("network.create").result == "ok"


def _form(changes: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """test_networks.BAD's spec changes as the create form's fields (JSON)."""
    spec: NetworkSpec = dataclasses.replace(GOOD, **changes)
    data: dict[str, Any] = {"name": spec.name, "mode": spec.mode, "macvtap_mode": spec.macvtap_mode,
                            "domain": spec.domain, "hosts": "\n".join(h.label() for h in spec.hosts)}
    data["host_bridge" if spec.mode == "bridge" else "bridge_name"] = spec.bridge
    data["nic" if spec.mode == "macvtap" else "forward_dev"] = spec.dev
    for family, addressing in (("ipv4", spec.ipv4), ("ipv6", spec.ipv6)):
        data[f"{family}_address"] = addressing.address if addressing else ""
        data[f"{family}_dhcp_start"] = addressing.dhcp_start if addressing else ""
        data[f"{family}_dhcp_end"] = addressing.dhcp_end if addressing else ""
    return data, spec.mode


def _field(field: str, mode: str) -> str:
    if field == "bridge":
        return "host_bridge" if mode == "bridge" else "bridge_name"
    if field == "dev":
        return "nic" if mode == "macvtap" else "forward_dev"
    return field


# The form ignores addresses for a bridged network (its page shows none): nothing to refuse there.
NOT_FORM_INPUT = {"bridged network with addresses"}
BAD_CASES = [(*_form(b[1]), b[2], b[0]) for b in BAD if b[0] not in NOT_FORM_INPUT]
PAGE_CASES = [({**_form({})[0], **changes}, "nat", field, f"page: {field} {changes}") for changes, field in PAGE_BAD]


@pytest.mark.parametrize(("body", "mode", "field"), [c[:3] for c in BAD_CASES + PAGE_CASES],
                         ids=[c[3] for c in BAD_CASES + PAGE_CASES])
def test_bad_input_is_a_field_error_and_nothing_is_created(callers: dict[str, TokenClient], net_host: Host,
                                                          body: dict[str, Any], mode: str, field: str) -> None:
    response = callers["admin"].post(NETS, body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["code"] == "invalid" and _field(field, mode) in answer["fields"], answer
    assert names(net_host) == ["lan", "spare"]  # libvirt defined nothing
    assert not AuditEvent.objects.filter(action="network.create").exists()


def test_a_body_that_is_not_an_object_is_refused(callers: dict[str, TokenClient], net_host: Host) -> None:
    response = callers["admin"].post(NETS, ["api-nat"])
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert names(net_host) == ["lan", "spare"]


# --- actions, stop and delete with the page's confirmation --------------------------------------------


def test_start_autostart_stop_and_a_libvirt_refusal(callers: dict[str, TokenClient], net_host: Host) -> None:
    ask(net_host, lambda conn: conn.networkLookupByName("spare").destroy())  # the test driver starts every network
    admin, url = callers["admin"], NETS + "spare/actions/"
    assert callers["user-view"].post(url + "start/").status_code == 404 and state(net_host, "spare") == (False, False)
    started = admin.post(url + "start/")
    assert started.status_code == 200 and started.json()["message"] == "Network spare started."
    assert state(net_host, "spare") == (True, False)
    again = admin.post(url + "start/")  # already running: libvirt says so
    assert again.status_code == 409 and again.json()["code"] in ("not_done", "invalid_state")
    assert admin.post(url + "autostart/").status_code == 200 and state(net_host, "spare") == (True, True)
    assert admin.post(url + "no-autostart/").status_code == 200 and state(net_host, "spare") == (True, False)
    assert admin.post(url + "stop/").status_code == 200 and state(net_host, "spare") == (False, False)  # unused
    assert admin.post(url + "explode/").status_code == 404
    assert admin.get(url + "start/").json()["code"] == "method_not_allowed"
    events = list(AuditEvent.objects.filter(object_type="network").order_by("pk").values_list("action", "result"))
    assert events == [("network.start", "ok"), ("network.start", "failed"), ("network.autostart", "ok"),
                      ("network.no-autostart", "ok"), ("network.stop", "ok")]
    assert all(VIA in e.detail for e in AuditEvent.objects.filter(object_type="network"))


def test_stop_and_delete_of_a_network_in_use_need_its_vms_named(callers: dict[str, TokenClient],
                                                                 net_host: Host) -> None:
    admin = callers["admin"]
    refused = admin.post(NETS + "lan/actions/stop/")
    assert refused.status_code == 409 and refused.json()["code"] == "not_confirmed"
    assert WEB_UUID in refused.json()["message"] and state(net_host, "lan")[0]
    stale = admin.post(NETS + "lan/actions/stop/", {"acknowledge": ["00000000-0000-4000-8000-000000000000"]})
    assert stale.status_code == 409 and state(net_host, "lan")[0]
    assert admin.post(NETS + "lan/actions/stop/", {"acknowledge": [WEB_UUID.upper()]}).status_code == 200
    assert not state(net_host, "lan")[0]
    events = list(AuditEvent.objects.filter(action="network.stop").order_by("pk").values_list("result", "detail"))
    assert [r for r, _ in events] == ["failed", "failed", "ok"] and "refused: not confirmed" in events[0][1]
    assert "web-01" in events[-1][1] and VIA in events[-1][1]
    assert admin.call("DELETE", NETS + "lan/").json()["code"] == "not_confirmed" and "lan" in names(net_host)
    assert admin.call("DELETE", NETS + f"lan/?acknowledge={WEB_UUID}").status_code == 200
    assert admin.call("DELETE", NETS + "spare/").status_code == 200  # no VM uses it: nothing to confirm
    assert names(net_host) == []
    assert admin.call("DELETE", NETS + "spare/").status_code == 404
    assert [e.result for e in AuditEvent.objects.filter(action="network.delete").order_by("pk")] == [
        "failed", "ok", "ok"]


# --- DHCP hosts ---------------------------------------------------------------------------------------


def test_fixed_address_added_and_removed(callers: dict[str, TokenClient], net_host: Host) -> None:
    admin, hosts = callers["admin"], NETS + "lan/dhcp-hosts/"
    assert callers["user-change"].post(hosts, {"mac": "52:54:00:00:01:0a", "ip": "192.168.150.9"}).status_code == 404
    added = admin.post(hosts, {"mac": "52:54:00:00:01:0A", "ip": "192.168.150.9", "name": "api"})
    assert added.status_code == 201, added.content
    assert added.json()["mac"] == "52:54:00:00:01:0a"
    fixed = [(h.mac, h.ip, h.name) for h in xml_of(net_host, "lan").ips[0].dhcp_hosts]
    assert fixed == [("52:54:00:00:01:01", "192.168.150.5", "web"), ("52:54:00:00:01:0a", "192.168.150.9", "api")]
    assert record("network.host-add").detail.startswith("52:54:00:00:01:0a 192.168.150.9 api")
    removed = admin.call("DELETE", hosts + "192.168.150.5/")
    assert removed.status_code == 200 and "52:54:00:00:01:01 192.168.150.5 web removed" in removed.json()["message"]
    assert [h.ip for h in xml_of(net_host, "lan").ips[0].dhcp_hosts] == ["192.168.150.9"]
    assert record("network.host-remove").result == "ok"
    gone = admin.call("DELETE", hosts + "192.168.150.5/")
    assert gone.status_code == 404 and "no fixed address 192.168.150.5" in gone.json()["message"]
    assert admin.post(NETS + "nope/dhcp-hosts/", {"mac": "52:54:00:00:01:0b", "ip": "10.0.0.9"}).status_code == 404


@pytest.mark.parametrize(("body", "field"), BAD_FIXED)
def test_bad_fixed_address_is_a_field_error(callers: dict[str, TokenClient], net_host: Host, body: dict[str, str],
                                            field: str) -> None:
    before = xml_of(net_host, "lan").to_xml()
    response = callers["admin"].post(NETS + "lan/dhcp-hosts/", body)
    assert response.status_code == 400 and field in response.json()["fields"], response.content
    assert xml_of(net_host, "lan").to_xml() == before
    assert not AuditEvent.objects.filter(object_type="network").exists()


# --- flavors ------------------------------------------------------------------------------------------

FLAVOR = {"name": "m1.small", "vcpus": 1, "memory_mib": 2048, "disk_gib": 20, "description": "small"}


def test_flavor_create_update_delete(callers: dict[str, TokenClient]) -> None:
    admin = callers["admin"]
    for persona in ("user-view", "user-change", "outsider"):
        assert callers[persona].get("/api/v1/flavors/").status_code == 403
        assert callers[persona].post("/api/v1/flavors/", FLAVOR).status_code == 403
    assert not Flavor.objects.exists()
    created = admin.post("/api/v1/flavors/", FLAVOR)
    assert created.status_code == 201, created.content
    flavor = Flavor.objects.get(name="m1.small")
    assert created.json()["id"] == flavor.pk and created.json()["message"] == "Flavor m1.small saved."
    url = created.json()["url"]
    assert admin.get("/api/v1/flavors/").json()["results"][0]["name"] == "m1.small"
    assert admin.call("PATCH", url, {"vcpus": 2}).json()["vcpus"] == 2
    flavor.refresh_from_db()
    assert (flavor.vcpus, flavor.memory_mib, flavor.description) == (2, 2048, "small")  # the rest kept
    replaced = admin.call("PUT", url, {"name": "m1.big", "vcpus": 4, "memory_mib": 8192, "disk_gib": 80})
    assert replaced.status_code == 200 and admin.get(url).json()["description"] == ""
    assert admin.call("PUT", url, {"vcpus": 4}).json()["fields"].keys() >= {"name", "memory_mib", "disk_gib"}
    assert admin.call("DELETE", url).json()["message"] == "Flavor m1.big deleted."
    assert not Flavor.objects.exists() and admin.get(url).status_code == 404
    events = AuditEvent.objects.filter(action__startswith="flavor.").order_by("pk")
    assert [(e.action, e.object_name) for e in events] == [
        ("flavor.create", "m1.small"), ("flavor.update", "m1.small"), ("flavor.update", "m1.big"),
        ("flavor.delete", "m1.big")]
    assert all(VIA in e.detail and e.username == "api-admin" for e in events)


@pytest.mark.parametrize("change", BAD_FLAVORS)
def test_bad_flavors_are_field_errors(callers: dict[str, TokenClient], change: dict[str, str]) -> None:
    response = callers["admin"].post("/api/v1/flavors/", {**FLAVOR, **change})
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert set(change) <= set(response.json()["fields"]), response.json()
    assert not Flavor.objects.exists() and not AuditEvent.objects.filter(action__startswith="flavor.").exists()


def test_a_taken_flavor_name_is_a_field_error(callers: dict[str, TokenClient]) -> None:
    Flavor.objects.create(name="m1.small", vcpus=1, memory_mib=512, disk_gib=1)
    other = Flavor.objects.create(name="m1.large", vcpus=8, memory_mib=8192, disk_gib=80)
    response = callers["admin"].call("PATCH", f"/api/v1/flavors/{other.pk}/", {"name": "m1.small"})
    assert response.status_code == 400 and "name" in response.json()["fields"]
    other.refresh_from_db()
    assert other.name == "m1.large"


def test_an_unreachable_host_and_a_late_refusal(callers: dict[str, TokenClient], net_host: Host, tmp_path: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from virt.networks import NetworkInputError, Problem

    Host.objects.create(name="gone", transport="test", path=str(tmp_path / "no-such-world.xml"))
    admin = callers["admin"]
    assert admin.get("/api/v1/networks/gone/").json()["code"] == "host_unavailable"
    assert admin.post("/api/v1/networks/gone/", {"name": "api-nat"}).status_code == 503
    assert AuditEvent.objects.get(action="network.create").detail.startswith("refused: gone could not be asked")

    def refuse(*_: Any, **__: Any) -> None:
        raise NetworkInputError([Problem("bridge", "virbr7 appeared on the host meanwhile.")])

    monkeypatch.setattr("networks.views.create_network", refuse)
    late = admin.post(NETS, {"name": "api-nat", "bridge_name": "virbr7"})
    assert late.status_code == 400 and late.json()["fields"] == {"bridge_name": ["virbr7 appeared on the host "
                                                                                 "meanwhile."]}
    assert names(net_host) == ["lan", "spare"]
    assert AuditEvent.objects.filter(action="network.create", host_name="nethost").get().result == "failed"
