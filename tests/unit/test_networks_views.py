"""Network pages on the test driver: admin only, forms with field errors, confirmations, audit, libvirt asked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from tests.unit.test_networks import WEB_UUID, WORLD
from virt.xml.network import Network
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def net_host(db: None, tmp_path: Path) -> Host:
    world = tmp_path / "world.xml"
    world.write_text(WORLD)
    return Host.objects.create(name="nethost", transport="test", path=str(world))


def ask(host: Host, fn: Any) -> Any:
    """Ask libvirt itself, through the panel's own connection to that host (the test driver keeps state there)."""
    return services.call(host, fn)


def names(host: Host) -> list[str]:
    return ask(host, lambda conn: sorted(n.name() for n in conn.listAllNetworks(0)))


def xml_of(host: Host, name: str) -> Network:
    return Network.from_xml(ask(host, lambda conn: conn.networkLookupByName(name).XMLDesc(0)))


def form(**changes: str) -> dict[str, str]:
    data = {"name": "test-nat", "mode": "nat", "bridge_name": "", "forward_dev": "", "host_bridge": "", "nic": "",
            "macvtap_mode": "bridge", "ipv4_address": "10.213.1.1/24", "ipv4_dhcp_start": "10.213.1.100",
            "ipv4_dhcp_end": "10.213.1.200", "ipv6_address": "", "ipv6_dhcp_start": "", "ipv6_dhcp_end": "",
            "hosts": "", "domain": "", "start": "on"}
    data.update(changes)
    return {k: v for k, v in data.items() if v != "off"}


def errors_on(page: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for field, text in re.findall(r'data-error-for="([^"]+)">([^<]*)<', page.content.decode()):
        found.setdefault(field, []).append(text)
    return found


# --- who may do what -------------------------------------------------------------------


def urls(host: str) -> list[tuple[str, str]]:
    net = [host, "lan"]
    return [
        ("get", reverse("networks:index")),
        ("get", reverse("networks:list", args=[host])),
        ("get", reverse("networks:interfaces", args=[host])),
        ("get", reverse("networks:create", args=[host])),
        ("post", reverse("networks:create", args=[host])),
        ("get", reverse("networks:detail", args=net)),
        ("post", reverse("networks:action", args=[*net, "start"])),
        ("post", reverse("networks:action", args=[*net, "no-autostart"])),
        ("get", reverse("networks:confirm", args=[*net, "stop"])),
        ("post", reverse("networks:confirm", args=[*net, "stop"])),
        ("post", reverse("networks:confirm", args=[*net, "delete"])),
        ("post", reverse("networks:host_add", args=net)),
        ("post", reverse("networks:host_remove", args=net)),
    ]


def test_actions_are_post_only(admin_client: Client, net_host: Host) -> None:
    ask(net_host, lambda conn: conn.networkLookupByName("spare").destroy())
    for name in ("start", "autostart"):
        assert admin_client.get(reverse("networks:action", args=[net_host.name, "spare", name])).status_code == 405
    for name in ("host_add", "host_remove"):
        assert admin_client.get(reverse(f"networks:{name}", args=[net_host.name, "lan"])).status_code == 405
    assert admin_client.post(reverse("networks:action", args=[net_host.name, "spare", "explode"])).status_code == 404
    spare = ask(net_host, lambda conn: conn.networkLookupByName("spare"))
    assert ask(net_host, lambda conn: (spare.isActive(), spare.autostart())) == (0, 0)


def test_post_without_csrf_is_refused(admin_user: Any, net_host: Host) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(reverse("networks:create", args=[net_host.name]), form()).status_code == 403
    assert names(net_host) == ["lan", "spare"]


# --- pages -----------------------------------------------------------------------------


def test_list_and_index(admin_client: Client, net_host: Host) -> None:
    page = admin_client.get(reverse("networks:list", args=[net_host.name])).content.decode()
    row = page[page.index('data-network="lan"'):page.index('data-network="spare"')]
    assert "nat" in row and "virbr9" in row and "192.168.150.1/24" in row and "active" in row
    index = admin_client.get(reverse("networks:index")).content.decode()
    assert 'data-network="lan"' in index and reverse("networks:create", args=[net_host.name]) in index
    host_page = admin_client.get(reverse("hosts:detail", args=[net_host.name])).content.decode()
    assert reverse("networks:list", args=[net_host.name]) in host_page
    assert reverse("networks:index") in host_page  # the nav link


def test_unreachable_host_is_said_in_words(admin_client: Client, db: None, tmp_path: Path) -> None:
    host = Host.objects.create(name="gone", transport="test", path=str(tmp_path / "no-such-world.xml"))
    for url in (reverse("networks:list", args=["gone"]), reverse("networks:create", args=["gone"]),
                reverse("networks:detail", args=["gone", "lan"]), reverse("networks:interfaces", args=["gone"])):
        page = admin_client.get(url)
        text = page.content.decode()
        words = ("did not answer", "could not be asked", "unreachable:")
        assert page.status_code == 503 and any(w in text for w in words), url
    assert admin_client.get(reverse("networks:index")).status_code == 200
    assert host.name in admin_client.get(reverse("networks:index")).content.decode()


def test_interfaces_page(admin_client: Client, net_host: Host) -> None:
    page = admin_client.get(reverse("networks:interfaces", args=[net_host.name])).content.decode()
    assert "interface API" in page
    assert 'data-interface="br0"' in page and 'data-interface="eth0"' in page and "52:54:00:aa:00:01" in page
    assert "192.168.77.5/24" in page


def test_detail_page(admin_client: Client, net_host: Host) -> None:
    page = admin_client.get(reverse("networks:detail", args=[net_host.name, "lan"])).content.decode()
    assert "web-01" in page and reverse("instances:detail", args=[net_host.name, WEB_UUID]) in page
    assert "does not report DHCP leases" in page
    assert 'data-ip="192.168.150.5"' in page and "52:54:00:00:01:01" in page
    assert "DHCP 192.168.150.10 \N{EN DASH} 192.168.150.100" in page
    assert admin_client.get(reverse("networks:detail", args=[net_host.name, "nope"])).status_code == 404


# --- create ----------------------------------------------------------------------------


def test_create_nat_network(admin_client: Client, net_host: Host) -> None:
    data = form(hosts="52:54:00:00:00:10 10.213.1.10 db\nfd00:213::10 db", ipv6_address="fd00:213::1/64",
                domain="lab.example", autostart="on")
    page = admin_client.post(reverse("networks:create", args=[net_host.name]), data)
    assert page.status_code == 302, errors_on(page)
    assert page["Location"] == reverse("networks:detail", args=[net_host.name, "test-nat"])
    net = xml_of(net_host, "test-nat")
    assert (net.forward_mode, net.domain_name) == ("nat", "lab.example")
    assert [(ip.address, ip.prefix) for ip in net.ips] == [("10.213.1.1", 24), ("fd00:213::1", 64)]
    assert [(h.mac, h.ip, h.name) for h in net.ips[0].dhcp_hosts] == [("52:54:00:00:00:10", "10.213.1.10", "db")]
    assert [(h.ip, h.name) for h in net.ips[1].dhcp_hosts] == [("fd00:213::10", "db")]
    ptr = ask(net_host, lambda conn: conn.networkLookupByName("test-nat"))
    assert ask(net_host, lambda conn: (ptr.isActive(), ptr.autostart())) == (1, 1)
    event = AuditEvent.objects.get(action="network.create")
    assert (event.result, event.object_name, event.host_name) == ("ok", "test-nat", "nethost")
    assert "10.213.1.1/24" in event.detail and "autostart" in event.detail


def test_create_form_offers_the_hosts_bridges_and_nics(admin_client: Client, net_host: Host) -> None:
    page = admin_client.get(reverse("networks:create", args=[net_host.name])).content.decode()
    host_bridge = re.search(r'<select name="host_bridge".*?</select>', page, re.S)
    nic = re.search(r'<select name="nic".*?</select>', page, re.S)
    assert host_bridge and 'value="br0"' in host_bridge.group(0) and "virbr9" not in host_bridge.group(0)
    assert nic and 'value="eth0"' in nic.group(0)
    created = admin_client.post(reverse("networks:create", args=[net_host.name]),
                                form(name="test-br", mode="bridge", host_bridge="br0"))
    assert created.status_code == 302
    net = xml_of(net_host, "test-br")
    assert (net.forward_mode, net.bridge_name, len(net.ips)) == ("bridge", "br0", 0)
    created = admin_client.post(reverse("networks:create", args=[net_host.name]),
                                form(name="test-mv", mode="macvtap", nic="eth0", macvtap_mode="vepa"))
    assert created.status_code == 302
    net = xml_of(net_host, "test-mv")
    assert (net.forward_mode, [i.dev for i in net.forward_interfaces]) == ("vepa", ["eth0"])


def test_create_form_falls_back_to_text_when_the_host_reports_no_interfaces(admin_client: Client,
                                                                            test_host: Host) -> None:
    page = admin_client.get(reverse("networks:create", args=[test_host.name])).content.decode()
    assert re.search(r'<input type="text" name="host_bridge"', page)
    assert "reports no bridges" in page
    assert admin_client.post(reverse("networks:create", args=[test_host.name]),
                             form(name="test-br", mode="bridge", host_bridge="br5")).status_code == 302
    assert xml_of(test_host, "test-br").bridge_name == "br5"


PAGE_BAD = [
    ({"name": "../etc"}, "name"),
    ({"name": "x/y"}, "name"),
    ({"name": "lan"}, "name"),
    ({"ipv4_address": "10.213.1.0/24"}, "ipv4_address"),
    ({"ipv4_address": "10.213.1.1/33"}, "ipv4_address"),
    ({"ipv4_address": "192.168.150.200/24"}, "ipv4_address"),  # overlaps lan
    ({"ipv4_dhcp_start": "10.213.9.1"}, "ipv4_dhcp_start"),
    ({"ipv4_dhcp_start": "10.213.1.250"}, "ipv4_dhcp_end"),
    ({"ipv4_address": "", "ipv4_dhcp_start": "10.213.1.5"}, "ipv4_address"),
    ({"hosts": "52:54:00:00:00:10 10.213.1.10\n52:54:00:00:00:10 10.213.1.11"}, "hosts"),
    ({"hosts": "52:54:00:00:00:1 10.213.1.10"}, "hosts"),
    ({"hosts": "52:54:00:00:00:10 10.213.7.10"}, "hosts"),
    ({"hosts": "52:54:00:00:00:10 web"}, "hosts"),
    ({"bridge_name": "virbr-far-too-long"}, "bridge_name"),
    ({"bridge_name": "virbr9"}, "bridge_name"),
    ({"ipv6_address": "fd00::/64"}, "ipv6_address"),
    ({"ipv6_address": "fd00::1/64", "ipv6_dhcp_start": "fd01::5", "ipv6_dhcp_end": "fd01::9"}, "ipv6_dhcp_start"),
    ({"domain": "not a domain"}, "domain"),
    ({"mode": "bridge", "host_bridge": "br9"}, "host_bridge"),
    ({"mode": "macvtap", "nic": ""}, "nic"),
    ({"mode": "macvtap", "nic": "eth7"}, "nic"),
    ({"mode": "warp"}, "mode"),
]


@pytest.mark.parametrize(("changes", "field"), PAGE_BAD)
def test_bad_input_on_the_page(changes: dict[str, str], field: str, admin_client: Client, net_host: Host) -> None:
    page = admin_client.post(reverse("networks:create", args=[net_host.name]), form(**changes))
    assert page.status_code == 200
    assert field in errors_on(page), (errors_on(page), page.content.decode()[:2000])
    assert names(net_host) == ["lan", "spare"]  # libvirt defined nothing
    assert not AuditEvent.objects.filter(action="network.create").exists()


def test_libvirt_failure_on_create_is_shown_and_audited(admin_client: Client, net_host: Host,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from virt.errors import VirtError

    def refuse(conn: libvirt.virConnect, spec: Any, **_: Any) -> None:
        raise VirtError("internal error: Network is already in use by interface eth0")

    monkeypatch.setattr("networks.views.create_network", refuse)
    page = admin_client.post(reverse("networks:create", args=[net_host.name]), form())
    assert page.status_code == 200 and "already in use by interface eth0" in page.content.decode()
    assert AuditEvent.objects.get(action="network.create").result == "failed"


# --- start, stop, autostart, delete with confirmation ------------------------------------


def test_start_autostart_and_a_libvirt_refusal(admin_client: Client, net_host: Host) -> None:
    ask(net_host, lambda conn: conn.networkLookupByName("spare").destroy())  # the test driver starts every network
    url = reverse("networks:action", args=[net_host.name, "spare", "start"])
    assert admin_client.post(url).status_code == 302
    assert ask(net_host, lambda conn: conn.networkLookupByName("spare").isActive())
    page = admin_client.post(url, follow=True)  # already running: libvirt says so
    assert page.status_code == 200 and "Start: not done:" in page.content.decode()
    admin_client.post(reverse("networks:action", args=[net_host.name, "spare", "autostart"]))
    assert ask(net_host, lambda conn: conn.networkLookupByName("spare").autostart())
    results = list(AuditEvent.objects.filter(object_type="network").order_by("pk").values_list("action", "result"))
    assert results == [("network.start", "ok"), ("network.start", "failed"), ("network.autostart", "ok")]


def test_stop_needs_a_confirmation_naming_the_vms(admin_client: Client, net_host: Host) -> None:
    url = reverse("networks:confirm", args=[net_host.name, "lan", "stop"])
    page = admin_client.get(url).content.decode()
    assert "web-01" in page and 'name="acknowledge"' in page
    refused = admin_client.post(url, {"confirm": "yes"})
    assert refused.status_code == 409 and "Tick the box" in refused.content.decode()
    assert ask(net_host, lambda conn: conn.networkLookupByName("lan").isActive())
    stale = admin_client.post(url, {"confirm": "yes", "acknowledge": "00000000-0000-4000-8000-000000000000"})
    assert stale.status_code == 409 and "changed since" in stale.content.decode()
    assert admin_client.post(url, {"confirm": "yes", "acknowledge": WEB_UUID}).status_code == 302
    assert not ask(net_host, lambda conn: conn.networkLookupByName("lan").isActive())
    events = list(AuditEvent.objects.filter(action="network.stop").order_by("pk").values_list("result", "detail"))
    assert [r for r, _ in events] == ["failed", "failed", "ok"] and "web-01" in events[-1][1]


def test_delete_unused_and_used_networks(admin_client: Client, net_host: Host) -> None:
    spare = reverse("networks:confirm", args=[net_host.name, "spare", "delete"])
    assert "No VM uses this network" in admin_client.get(spare).content.decode()
    assert admin_client.get(spare).status_code == 200 and "spare" in names(net_host)  # GET changes nothing
    done = admin_client.post(spare, {"confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == reverse("networks:list", args=[net_host.name])
    assert names(net_host) == ["lan"]
    lan = reverse("networks:confirm", args=[net_host.name, "lan", "delete"])
    assert admin_client.post(lan, {"confirm": "yes"}).status_code == 409
    assert names(net_host) == ["lan"]
    assert admin_client.post(lan, {"confirm": "yes", "acknowledge": WEB_UUID}).status_code == 302
    assert names(net_host) == []


# --- fixed addresses -------------------------------------------------------------------


def test_fixed_address_added_and_removed_through_the_page(admin_client: Client, net_host: Host) -> None:
    add = reverse("networks:host_add", args=[net_host.name, "lan"])
    assert admin_client.post(add, {"mac": "52:54:00:00:01:0A", "ip": "192.168.150.9", "name": "api"}).status_code == 302
    hosts = [(h.mac, h.ip, h.name) for h in xml_of(net_host, "lan").ips[0].dhcp_hosts]
    assert hosts == [("52:54:00:00:01:01", "192.168.150.5", "web"), ("52:54:00:00:01:0a", "192.168.150.9", "api")]
    page = admin_client.get(reverse("networks:detail", args=[net_host.name, "lan"])).content.decode()
    assert 'data-ip="192.168.150.9"' in page
    remove = reverse("networks:host_remove", args=[net_host.name, "lan"])
    assert admin_client.post(remove, {"ip": "192.168.150.5"}).status_code == 302
    assert [h.ip for h in xml_of(net_host, "lan").ips[0].dhcp_hosts] == ["192.168.150.9"]
    events = list(AuditEvent.objects.filter(object_type="network").order_by("pk").values_list("action", "detail"))
    assert events == [("network.host-add", "52:54:00:00:01:0a 192.168.150.9 api"),
                      ("network.host-remove", "52:54:00:00:01:01 192.168.150.5 web")]
    gone = admin_client.post(remove, {"ip": "192.168.150.5"}, follow=True)
    assert "Remove fixed address: not done: Network lan has no fixed address 192.168.150.5." in gone.content.decode()


BAD_FIXED = [
    ({"mac": "52:54:00:00:01:01", "ip": "192.168.150.9"}, "mac"),  # duplicate MAC
    ({"mac": "52:54:00:00:01", "ip": "192.168.150.9"}, "mac"),
    ({"mac": "52:54:00:00:01:0b", "ip": "192.168.151.9"}, "ip"),
    ({"mac": "52:54:00:00:01:0b", "ip": "192.168.150.5"}, "ip"),  # taken
    ({"mac": "52:54:00:00:01:0b", "ip": ""}, "ip"),
    ({"mac": "52:54:00:00:01:0b", "ip": "192.168.150.9", "name": "-bad-"}, "name"),
]


@pytest.mark.parametrize(("data", "field"), BAD_FIXED)
def test_bad_fixed_address_is_a_field_error(data: dict[str, str], field: str, admin_client: Client,
                                            net_host: Host) -> None:
    before = xml_of(net_host, "lan").to_xml()
    page = admin_client.post(reverse("networks:host_add", args=[net_host.name, "lan"]), data)
    assert page.status_code == 200 and field in errors_on(page), errors_on(page)
    assert xml_of(net_host, "lan").to_xml() == before
    assert not AuditEvent.objects.filter(object_type="network").exists()


def test_a_network_the_host_refuses_late_is_a_field_error_audited_as_refused(
        admin_client: Client, net_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    from virt.networks import NetworkInputError, Problem

    def refuse(conn: libvirt.virConnect, spec: Any, **_: Any) -> None:
        raise NetworkInputError([Problem("bridge", "virbr9 appeared on the host meanwhile.")])

    monkeypatch.setattr("networks.views.create_network", refuse)
    page = admin_client.post(reverse("networks:create", args=[net_host.name]), form(bridge_name="virbr7"))
    assert page.status_code == 200
    assert errors_on(page).get("bridge_name") == ["virbr9 appeared on the host meanwhile."], errors_on(page)
    [event] = AuditEvent.objects.filter(action="network.create")
    assert event.result == "failed" and event.detail == "refused: bridge: virbr9 appeared on the host meanwhile."
    assert names(net_host) == ["lan", "spare"]


def test_each_change_writes_one_record_with_its_duration(admin_client: Client, net_host: Host) -> None:
    admin_client.post(reverse("networks:action", args=[net_host.name, "spare", "autostart"]))
    admin_client.post(reverse("networks:confirm", args=[net_host.name, "spare", "delete"]), {"confirm": "yes"})
    events = list(AuditEvent.objects.exclude(action="login").order_by("id"))
    assert [(e.action, e.result, e.object_name, e.host_name) for e in events] == [
        ("network.autostart", "ok", "spare", "nethost"), ("network.delete", "ok", "spare", "nethost")]
    assert all(e.duration_ms is not None for e in events)


# --- a new NAT network starts with a free subnet --------------------------------------------------

def test_a_new_network_is_offered_a_free_subnet_and_posts_as_offered(admin_client: Client, net_host: Host) -> None:
    import ipaddress

    # The first subnets the panel would offer are taken: by a network, and (eth0) by the host itself.
    ask(net_host, lambda conn: conn.networkDefineXML(
        "<network><name>taken</name><ip address='192.168.100.1' prefix='23'/></network>"))
    url = reverse("networks:create", args=[net_host.name])
    page = admin_client.get(url)
    offered = {name: page.context["form"][name].value() for name in ("ipv4_address", "ipv4_dhcp_start",
                                                                       "ipv4_dhcp_end")}
    subnet = ipaddress.ip_interface(offered["ipv4_address"]).network
    assert subnet.is_private and subnet.prefixlen == 24
    used = [ipaddress.ip_interface("192.168.77.5/24").network]  # eth0 of the world
    for net in ask(net_host, lambda conn: [n.XMLDesc(0) for n in conn.listAllNetworks(0)]):
        used += [ipaddress.ip_interface(f"{ip.address}/{ip.prefix or 24}").network
                 for ip in Network.from_xml(net).ips if ip.address]
    assert not any(subnet.overlaps(other) for other in used), (subnet, used)
    start, end = (ipaddress.ip_address(offered[k]) for k in ("ipv4_dhcp_start", "ipv4_dhcp_end"))
    assert start in subnet and end in subnet and start < end
    assert ipaddress.ip_interface(offered["ipv4_address"]).ip not in (start, end)
    html = page.content.decode()
    assert f'value="{offered["ipv4_address"]}"' in html
    # Sent back as offered, it makes the network.
    created = admin_client.post(url, form(name="fresh", **offered))
    assert created.status_code == 302, errors_on(created)
    net = xml_of(net_host, "fresh")
    assert f"{net.ips[0].address}/{net.ips[0].prefix}" == offered["ipv4_address"]


@pytest.mark.parametrize(("networks", "own", "expected"), [
    ((), (), "192.168.100.1/24"),
    (("192.168.100.1/24",), (), "192.168.101.1/24"),
    ((), ("192.168.100.20/24", "192.168.101.1/24"), "192.168.102.1/24"),
    (("192.168.0.1/16",), (), "10.100.0.1/24"),  # the whole 192.168/16 in use
])
def test_the_free_subnet_skips_every_subnet_in_use(networks: tuple[str, ...], own: tuple[str, ...],
                                                    expected: str) -> None:
    from virt.interfaces import HostInterface, InterfaceReport
    from virt.networks import HostNetworks, NetworkInfo, Subnet
    from virt.subnets import free_ipv4

    facts = HostNetworks(
        tuple(NetworkInfo(f"n{i}", "", "nat", subnets=(Subnet(a, 4),)) for i, a in enumerate(networks)),
        InterfaceReport(tuple(HostInterface(f"eth{i}", "ethernet", addresses=(a,)) for i, a in enumerate(own))))
    found = free_ipv4(facts)
    assert found is not None and found.address == expected
