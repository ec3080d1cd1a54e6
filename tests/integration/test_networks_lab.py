"""Virtual networks and host interfaces on the lab's real libvirtd (qemu:///system).

A NAT network with DHCP really runs dnsmasq; a fixed address added live lands in libvirt's XML and in
dnsmasq's hosts file; the machine's firewall rules and forwarding switches are left as found.
Networks made here are named test-* and removed by the fixtures even when a test fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from virt import networks
from virt.interfaces import INTERFACE_API, NODE_DEVICES, host_interfaces, via_node_devices
from virt.networks import Addressing, FixedHost, NetworkSpec
from virt.xml.network import Network
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db]
PID_DIR = Path("/run/libvirt/network")
FORWARDING = {4: Path("/proc/sys/net/ipv4/ip_forward"), 6: Path("/proc/sys/net/ipv6/conf/all/forwarding")}
# libvirt makes these chains, and the jumps to them, once per daemon lifetime and expects them to stay:
# deleting them makes every later network start fail ("No chain/target/match by that name").
SKELETON = re.compile(r"^\S+ (:LIBVIRT_[A-Z]+ - \[0:0\]|-A (INPUT|FORWARD|OUTPUT|POSTROUTING) -j LIBVIRT_[A-Z]+)$")


def _others(conn: libvirt.virConnect, mine: set[str]) -> tuple[set[str], set[str]]:
    """Bridges and subnets of active networks that are not ours (other tests may run at the same time)."""
    bridges, subnets = set(), set()
    for info in networks.list_networks(conn):
        if info.active and info.name not in mine:
            bridges |= {info.bridge} if info.bridge else set()
            subnets |= {str(s.network) for s in info.subnets}
    return bridges, subnets


def _ruleset() -> list[str]:
    """Every firewall rule, as iptables-save/ip6tables-save (and nft, where installed) print them."""
    lines = []
    for cmd in (["iptables-save"], ["ip6tables-save"], ["nft", "list", "ruleset"]):
        if shutil.which(cmd[0]) is None:
            continue
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout
        for line in out.splitlines():
            if line.strip() and not line.startswith("#"):  # comments carry the time of the dump
                lines.append(f"{cmd[0]} " + re.sub(r"\[\d+:\d+\]", "[0:0]", line.strip()))  # packet counters
    return lines


@dataclass
class Firewall:
    """The machine's firewall and forwarding switches as found, to compare with afterwards."""

    conn: libvirt.virConnect
    mine: set[str] = field(default_factory=set)
    rules: list[str] = field(default_factory=list)
    forwarding: dict[int, str] = field(default_factory=dict)
    others_before: tuple[set[str], set[str]] = (set(), set())

    def _rules_and_others(self) -> tuple[list[str], tuple[set[str], set[str]]]:
        """The ruleset, with the other networks active just before or just after it was read."""
        first = _others(self.conn, self.mine)
        rules = _ruleset()
        second = _others(self.conn, self.mine)
        return rules, (first[0] | second[0], first[1] | second[1])

    def snapshot(self) -> None:
        self.rules, self.others_before = self._rules_and_others()
        self.forwarding = {family: path.read_text() for family, path in FORWARDING.items()}

    def mentions_ours(self, bridge: str, subnet: str) -> list[str]:
        return [line for line in _ruleset() if re.search(rf"\b{re.escape(bridge)}\b", line) or subnet in line]

    def restore_forwarding(self) -> bool:
        """libvirt turns forwarding on for NAT/routed networks and never off; put it back unless others need it."""
        others_forward = any(n.active and n.mode in ("nat", "route") and n.name not in self.mine
                             for n in networks.list_networks(self.conn))
        if others_forward:
            return False
        for family, path in FORWARDING.items():
            if path.read_text() != self.forwarding[family]:
                path.write_text(self.forwarding[family])
        return True

    def assert_as_found(self) -> None:
        restored = self.restore_forwarding()
        if restored:
            assert {f: p.read_text() for f, p in FORWARDING.items()} == self.forwarding
        # Rules of networks other tests run meanwhile (present at either end) are theirs to check.
        after_rules, (bridges_after, subnets_after) = self._rules_and_others()
        bridges, subnets = self.others_before[0] | bridges_after, self.others_before[1] | subnets_after

        def comparable(lines: list[str]) -> list[str]:
            return sorted(line for line in lines
                          if not any(re.search(rf"\b{re.escape(b)}\b", line) for b in bridges)
                          and not any(s in line for s in subnets))

        before, after = comparable(self.rules), comparable(after_rules)
        skeleton_added = [line for line in after if SKELETON.match(line) and line not in before]
        assert [line for line in after if line not in skeleton_added] == before


@pytest.fixture
def firewall(lab_conn: libvirt.virConnect) -> Iterator[Firewall]:
    """Requested before the network fixtures, so it is torn down after them."""
    state = Firewall(lab_conn)
    state.snapshot()
    yield state
    state.restore_forwarding()  # in case the test failed half way


@pytest.fixture
def made(lab_conn: libvirt.virConnect, firewall: Firewall) -> Iterator[list[str]]:
    """Names of networks a test makes; stopped and undefined afterwards whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(libvirt.libvirtError):
            net = lab_conn.networkLookupByName(name)
            if net.isActive():
                net.destroy()
            if net.isPersistent():
                net.undefine()


def free_subnet(conn: libvirt.virConnect) -> int:
    """A third octet x for 10.213.x.0/24 that no network on the daemon nor the machine uses."""
    taken = [s.network for n in networks.list_networks(conn) for s in n.subnets]
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    taken += [ipaddress.ip_network(m) for m in re.findall(r"^(\d+\.\d+\.\d+\.\d+/\d+)", routes, re.M)]
    for x in random.sample(range(100, 250), 150):
        candidate = ipaddress.ip_network(f"10.213.{x}.0/24")
        if not any(candidate.overlaps(t) for t in taken if t.version == 4):
            return x
    raise AssertionError("no free 10.213.x.0/24")


def dnsmasq_pid(name: str) -> int | None:
    """The pid of the dnsmasq libvirt runs for `name`, if it really runs (zombies do not count)."""
    pidfile = PID_DIR / f"{name}.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().split()[0])
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return None
    if state == "Z" or not cmdline[0].endswith(b"dnsmasq"):
        return None
    assert any(arg.endswith(f"/{name}.conf".encode()) for arg in cmdline), cmdline
    return pid


def hostsfile(name: str) -> str:
    """dnsmasq's dhcp-hostsfile for the network, found through its config file."""
    conf = Path(f"/var/lib/libvirt/dnsmasq/{name}.conf").read_text()
    match = re.search(r"^dhcp-hostsfile=(.+)$", conf, re.M)
    assert match, conf
    path = Path(match.group(1))
    return path.read_text() if path.exists() else ""


def fixed_in(xml: str) -> list[tuple[str | None, str | None, str | None]]:
    return [(h.mac, h.ip, h.name) for ip in Network.from_xml(xml).ips for h in ip.dhcp_hosts]


def test_nat_network_with_dhcp_and_a_live_fixed_address(lab_conn: libvirt.virConnect, firewall: Firewall,
                                                        made: list[str]) -> None:
    name, x = f"test-{uuid.uuid4().hex[:8]}", free_subnet(lab_conn)
    made.append(name)
    firewall.mine.add(name)
    spec = NetworkSpec(name, "nat", ipv4=Addressing(f"10.213.{x}.1/24", f"10.213.{x}.100", f"10.213.{x}.200"),
                       hosts=(FixedHost(f"10.213.{x}.10", "52:54:00:d1:00:10", "db"),), domain="test.example")
    info = networks.create_network(lab_conn, spec, start=True)
    assert info.active and info.bridge.startswith("virbr") and info.addresses == (f"10.213.{x}.1/24",)

    # dnsmasq really runs for it, with the fixed address from the definition.
    assert dnsmasq_pid(name) is not None
    assert f"52:54:00:d1:00:10,10.213.{x}.10,db" in hostsfile(name)
    assert FORWARDING[4].read_text().strip() == "1"  # NAT needs forwarding: libvirt turned it on
    assert firewall.mentions_ours(info.bridge, f"10.213.{x}.0/24")  # and added its rules
    detail = networks.network_detail(lab_conn, name)
    assert detail.leases == () and detail.leases_note == ""  # the real daemon reports leases (none yet)

    # Added live: the running network's XML, its definition and dnsmasq's hosts file all have it.
    networks.add_fixed_host(lab_conn, name, FixedHost(f"10.213.{x}.11", "52:54:00:D1:00:11", "web"))
    net = lab_conn.networkLookupByName(name)
    assert ("52:54:00:d1:00:11", f"10.213.{x}.11", "web") in fixed_in(net.XMLDesc(0))
    assert ("52:54:00:d1:00:11", f"10.213.{x}.11", "web") in fixed_in(
        net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
    assert f"52:54:00:d1:00:11,10.213.{x}.11,web" in hostsfile(name)
    pid = dnsmasq_pid(name)
    assert pid is not None

    # Removed live, the same way.
    networks.remove_fixed_host(lab_conn, name, f"10.213.{x}.11")
    assert fixed_in(net.XMLDesc(0)) == [("52:54:00:d1:00:10", f"10.213.{x}.10", "db")]
    assert fixed_in(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)) == fixed_in(net.XMLDesc(0))
    assert "52:54:00:d1:00:11" not in hostsfile(name)
    assert dnsmasq_pid(name) == pid  # the same dnsmasq, told of the change

    # Stopped: dnsmasq gone, our rules gone. Undefined: libvirt forgets it.
    networks.stop(lab_conn, name)
    assert dnsmasq_pid(name) is None and not net.isActive()
    assert firewall.mentions_ours(info.bridge, f"10.213.{x}.0/24") == []
    networks.delete(lab_conn, name)
    assert name not in {n.name() for n in lab_conn.listAllNetworks(0)}
    firewall.assert_as_found()


def test_create_nat_network_through_the_page(admin_client: Client, lab_host: Host, lab_conn: libvirt.virConnect,
                                             firewall: Firewall, made: list[str]) -> None:
    name, x = f"test-{uuid.uuid4().hex[:8]}", free_subnet(lab_conn)
    made.append(name)
    firewall.mine.add(name)
    data = {"name": name, "mode": "nat", "macvtap_mode": "bridge", "ipv4_address": f"10.213.{x}.1/24",
            "ipv4_dhcp_start": f"10.213.{x}.50", "ipv4_dhcp_end": f"10.213.{x}.99", "start": "on"}
    created = admin_client.post(reverse("networks:create", args=[lab_host.name]), data)
    assert created.status_code == 302, created.content.decode()[:3000]
    net = lab_conn.networkLookupByName(name)
    assert net.isActive() and dnsmasq_pid(name) is not None
    desc = Network.from_xml(net.XMLDesc(0))
    assert (desc.forward_mode, desc.ips[0].address, desc.ips[0].prefix) == ("nat", f"10.213.{x}.1", 24)

    listing = admin_client.get(reverse("networks:list", args=[lab_host.name])).content.decode()
    row = listing[listing.index(f'data-network="{name}"'):]
    row = row[:row.index("</tr>")]
    assert "active" in row and f"10.213.{x}.1/24" in row and "nat" in row

    page = admin_client.get(reverse("networks:detail", args=[lab_host.name, name])).content.decode()
    assert 'id="leases"' in page and "No leases." in page

    add = admin_client.post(reverse("networks:host_add", args=[lab_host.name, name]),
                            {"mac": "52:54:00:d2:00:20", "ip": f"10.213.{x}.20", "name": "cache"})
    assert add.status_code == 302
    assert "52:54:00:d2:00:20,10.213." in hostsfile(name)
    clash = admin_client.post(reverse("networks:create", args=[lab_host.name]),
                              {**data, "name": f"{name}-2", "ipv4_dhcp_start": "", "ipv4_dhcp_end": ""})
    assert "overlaps" in clash.content.decode() and f"{name}-2" not in {n.name() for n in lab_conn.listAllNetworks(0)}

    delete = reverse("networks:confirm", args=[lab_host.name, name, "delete"])
    assert admin_client.post(delete, {"confirm": "yes"}).status_code == 302
    assert name not in {n.name() for n in lab_conn.listAllNetworks(0)}
    assert dnsmasq_pid(name) is None
    actions = list(AuditEvent.objects.filter(object_name=name).order_by("pk").values_list("action", "result"))
    assert actions == [("network.create", "ok"), ("network.host-add", "ok"), ("network.delete", "ok")]
    firewall.assert_as_found()


def test_host_interfaces_of_the_lab(admin_client: Client, lab_host: Host, lab_conn: libvirt.virConnect) -> None:
    report = host_interfaces(lab_conn)
    found = {i.name: i for i in report.interfaces}
    assert report.source in (INTERFACE_API, NODE_DEVICES)
    assert "lo" in found and found["lo"].kind == "loopback"
    # Node devices describe the same NICs, with the kernel's MAC addresses.
    by_node = {i.name: i for i in via_node_devices(lab_conn)}
    assert "lo" in by_node
    for name in set(found) & set(by_node) - {"lo"}:
        mac = Path(f"/sys/class/net/{name}/address").read_text().strip()
        assert found[name].mac == by_node[name].mac == mac
    page = admin_client.get(reverse("networks:interfaces", args=[lab_host.name])).content.decode()
    assert 'data-interface="lo"' in page and report.source in page
