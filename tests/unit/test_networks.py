"""virt.networks and virt.interfaces on libvirt's test driver: every network type, validation, fixed hosts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from virt import networks
from virt.errors import NotFound, VirtError
from virt.interfaces import (
    INTERFACE_API,
    NODE_DEVICES,
    from_interface_xml,
    from_node_device_xml,
    host_interfaces,
)
from virt.networks import Addressing, FixedHost, NetworkInputError, NetworkSpec
from virt.xml.network import Network

WEB_UUID = "11111111-1111-4111-8111-111111111111"
WORLD = f"""<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active>
    <mhz>2400</mhz><model>x86_64</model></cpu>
  <memory>8388608</memory>
  <domain type="test"><name>web-01</name><uuid>{WEB_UUID}</uuid><memory unit="MiB">512</memory><vcpu>1</vcpu>
    <os><type arch="x86_64">hvm</type></os>
    <devices><interface type="network"><mac address="52:54:00:00:01:01"/><source network="lan"/></interface></devices>
  </domain>
  <domain type="test"><name>db-01</name><uuid>22222222-2222-4222-8222-222222222222</uuid>
    <memory unit="MiB">512</memory><vcpu>1</vcpu><os><type arch="x86_64">hvm</type></os>
    <devices><interface type="bridge"><mac address="52:54:00:00:01:02"/><source bridge="lan"/></interface></devices>
  </domain>
  <network><name>lan</name><uuid>44444444-4444-4444-8444-444444444444</uuid><forward mode="nat"/>
    <bridge name="virbr9"/>
    <ip address="192.168.150.1" netmask="255.255.255.0">
      <dhcp><range start="192.168.150.10" end="192.168.150.100"/>
        <host mac="52:54:00:00:01:01" name="web" ip="192.168.150.5"/></dhcp>
    </ip>
  </network>
  <network><name>spare</name><uuid>44444444-4444-4444-8444-444444444445</uuid><bridge name="virbr10"/></network>
  <interface type="ethernet" name="eth0"><start mode="onboot"/><mac address="52:54:00:aa:00:01"/>
    <protocol family="ipv4"><ip address="192.168.77.5" prefix="24"/></protocol></interface>
  <interface type="bridge" name="br0"><start mode="onboot"/>
    <bridge stp="off"><interface type="ethernet" name="eth1"><mac address="52:54:00:aa:00:03"/></interface></bridge>
  </interface>
  <device><name>net_eth0_52_54_00_aa_00_01</name><path>/sys/devices/pci0000:00/0000:00:03.0/net/eth0</path>
    <parent>computer</parent><capability type="net"><interface>eth0</interface><address>52:54:00:aa:00:01</address>
    <link speed="1000" state="up"/><capability type="80203"/></capability></device>
  <device><name>net_br0_52_54_00_aa_00_02</name><path>/sys/devices/virtual/net/br0</path>
    <parent>computer</parent><capability type="net"><interface>br0</interface><address>52:54:00:aa:00:02</address>
    <link state="up"/><capability type="80203"/></capability></device>
</node>
"""


def _quiet(*_: object) -> None:
    """libvirt prints every error to stderr by default; the exceptions are enough."""


@pytest.fixture
def world(tmp_path: Path) -> Path:
    path = tmp_path / "world.xml"
    path.write_text(WORLD)
    return path


@pytest.fixture
def conn(world: Path) -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(_quiet, None)
    connection = libvirt.open(f"test://{world}")
    yield connection
    connection.close()


def names(conn: libvirt.virConnect) -> list[str]:
    return sorted(n.name() for n in conn.listAllNetworks(0))


# --- every type: XML round trip, define, read back, undefine ----------------------------

SPECS = {
    "nat": NetworkSpec("t-nat", "nat", dev="eth0", bridge="virbr21", domain="nat.example",
                       ipv4=Addressing("10.213.1.1/24", "10.213.1.100", "10.213.1.199"),
                       ipv6=Addressing("fd00:213:1::1/64", "fd00:213:1::100", "fd00:213:1::1ff"),
                       hosts=(FixedHost("10.213.1.10", "52:54:00:00:00:10", "db"),
                              FixedHost("fd00:213:1::10", name="db"))),
    "route": NetworkSpec("t-route", "route", ipv4=Addressing("10.213.2.1/24", "10.213.2.2", "10.213.2.50")),
    "open": NetworkSpec("t-open", "open", ipv6=Addressing("fd00:213:3::1/64")),
    "isolated": NetworkSpec("t-isolated", "isolated", ipv4=Addressing("10.213.4.1/28")),
    "isolated-bare": NetworkSpec("t-bare", "isolated"),
    "bridge": NetworkSpec("t-bridge", "bridge", bridge="br0"),
    "macvtap": NetworkSpec("t-macvtap", "macvtap", dev="eth0"),
    "macvtap-vepa": NetworkSpec("t-vepa", "macvtap", dev="eth0", macvtap_mode="vepa"),
    "macvtap-private": NetworkSpec("t-private", "macvtap", dev="eth0", macvtap_mode="private"),
    "macvtap-passthrough": NetworkSpec("t-pass", "macvtap", dev="eth0", macvtap_mode="passthrough"),
}


def described(info: networks.NetworkInfo) -> tuple[Any, ...]:
    return (info.name, info.mode, info.macvtap_mode, info.bridge if info.mode != "macvtap" else "", info.devices,
            [(s.address, s.dhcp_ranges, s.hosts) for s in info.subnets], info.domain)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_type_round_trips_and_is_defined_and_undefined(kind: str, conn: libvirt.virConnect) -> None:
    spec = SPECS[kind]
    assert networks.spec_problems(spec) == []
    xml = networks.build_network_xml(spec)
    ours = networks.parse_network(xml)
    # Our own reading of what we wrote is the spec again.
    expected_mode = spec.mode
    assert (ours.mode, ours.macvtap_mode) == (expected_mode, spec.macvtap_mode if spec.mode == "macvtap" else "")
    assert Network.from_xml(Network.from_xml(xml).to_xml()).to_xml() == Network.from_xml(xml).to_xml()

    before = names(conn)
    info = networks.create_network(conn, spec, start=False)
    assert names(conn) == sorted([*before, spec.name])
    from_libvirt = networks.parse_network(conn.networkLookupByName(spec.name).XMLDesc(0))
    assert described(from_libvirt) == described(ours) == described(info)
    assert not info.active and info.persistent

    networks.delete(conn, spec.name)
    assert names(conn) == before


def test_nat_network_shape(conn: libvirt.virConnect) -> None:
    info = networks.create_network(conn, SPECS["nat"], start=True, autostart=True)
    assert (info.active, info.autostart, info.forward_dev, info.bridge) == (True, True, "eth0", "virbr21")
    assert [s.address for s in info.subnets] == ["10.213.1.1/24", "fd00:213:1::1/64"]
    assert info.subnets[0].dhcp_ranges == (("10.213.1.100", "10.213.1.199"),)
    assert info.hosts == (FixedHost("10.213.1.10", "52:54:00:00:00:10", "db"), FixedHost("fd00:213:1::10", "", "db"))
    xml = conn.networkLookupByName("t-nat").XMLDesc(0)
    assert '<domain name="nat.example" localOnly="yes"/>' in xml.replace("'", '"')


def test_start_failure_leaves_nothing(conn: libvirt.virConnect) -> None:
    """A network that cannot start is undefined again, and the error says so."""

    class FailingStart:
        def __init__(self, real: libvirt.virConnect) -> None:
            self.real = real

        def networkDefineXML(self, xml: str) -> Any:
            net = self.real.networkDefineXML(xml)

            class Net:
                def __getattr__(self, attr: str) -> Any:
                    return getattr(net, attr)

                def create(self) -> None:
                    raise libvirt.libvirtError("bridge could not be made")

            return Net()

        def __getattr__(self, attr: str) -> Any:
            return getattr(self.real, attr)

    before = names(conn)
    with pytest.raises(VirtError) as caught:
        networks.create_network(FailingStart(conn), SPECS["route"])  # type: ignore[arg-type]
    assert "Nothing was kept" in str(caught.value)
    assert names(conn) == before


# --- listing in a fixed number of calls ------------------------------------------------


class Counting:
    """Counts libvirt calls made through a connection and the networks it returns."""

    def __init__(self, real: Any, counts: dict[str, int]) -> None:
        self._real, self._counts = real, counts

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._real, attr)
        if not callable(target):
            return target

        def call(*args: Any) -> Any:
            if attr not in ("name", "UUIDString"):  # kept in the local object: no round trip
                self._counts[attr] = self._counts.get(attr, 0) + 1
            result = target(*args)
            if isinstance(result, list):
                return [Counting(item, self._counts) if isinstance(item, libvirt.virNetwork) else item
                        for item in result]
            return result

        return call


def test_list_costs_four_list_calls_and_one_xml_per_network(conn: libvirt.virConnect) -> None:
    for index in range(5):
        networks.create_network(conn, NetworkSpec(f"extra-{index}", "isolated"), start=index % 2 == 0)
    counts: dict[str, int] = {}
    listed = networks.list_networks(Counting(conn, counts))
    assert len(listed) == 7
    assert counts == {"listAllNetworks": 4, "XMLDesc": 7}
    lan = next(n for n in listed if n.name == "lan")
    assert (lan.mode, lan.bridge, lan.addresses, lan.active, lan.autostart) == (
        "nat", "virbr9", ("192.168.150.1/24",), True, False)
    assert [n.active for n in listed if n.name.startswith("extra-")] == [True, False, True, False, True]


def test_detail_users_and_leases_unsupported(conn: libvirt.virConnect) -> None:
    detail = networks.network_detail(conn, "lan")
    assert [(u.name, u.uuid) for u in detail.users] == [("web-01", WEB_UUID)]  # db-01's bridge is no network NIC
    assert detail.leases is None and "does not report DHCP leases" in detail.leases_note
    assert detail.info.hosts == (FixedHost("192.168.150.5", "52:54:00:00:01:01", "web"),)
    assert networks.network_detail(conn, "spare").users == ()
    with pytest.raises(libvirt.libvirtError):
        networks.network_detail(conn, "nope")
    with pytest.raises(NotFound):
        networks.network_detail(conn, "a/b")


def test_start_stop_autostart_delete(conn: libvirt.virConnect) -> None:
    networks.create_network(conn, NetworkSpec("t-life", "isolated", ipv4=Addressing("10.213.9.1/24")), start=False)
    net = conn.networkLookupByName("t-life")
    networks.start(conn, "t-life")
    assert net.isActive()
    networks.set_autostart(conn, "t-life", True)
    assert net.autostart()
    networks.stop(conn, "t-life")
    assert not net.isActive()
    networks.delete(conn, "t-life")
    assert "t-life" not in names(conn)


# --- fixed addresses, live -------------------------------------------------------------


def hosts_in_libvirt(conn: libvirt.virConnect, name: str) -> list[tuple[str | None, str | None, str | None]]:
    net = Network.from_xml(conn.networkLookupByName(name).XMLDesc(0))
    return [(h.mac, h.ip, h.name) for ip in net.ips for h in ip.dhcp_hosts]


def test_fixed_host_added_and_removed_live(conn: libvirt.virConnect) -> None:
    assert conn.networkLookupByName("lan").isActive()
    networks.add_fixed_host(conn, "lan", FixedHost("192.168.150.6", "52:54:00:00:01:AB", "api"))
    assert hosts_in_libvirt(conn, "lan") == [("52:54:00:00:01:01", "192.168.150.5", "web"),
                                             ("52:54:00:00:01:ab", "192.168.150.6", "api")]
    removed = networks.remove_fixed_host(conn, "lan", "192.168.150.5")
    assert removed == FixedHost("192.168.150.5", "52:54:00:00:01:01", "web")
    assert hosts_in_libvirt(conn, "lan") == [("52:54:00:00:01:ab", "192.168.150.6", "api")]
    with pytest.raises(NotFound):
        networks.remove_fixed_host(conn, "lan", "192.168.150.5")


def test_fixed_ipv6_host_goes_to_the_ipv6_element(conn: libvirt.virConnect) -> None:
    networks.create_network(conn, SPECS["nat"], start=True)
    networks.add_fixed_host(conn, "t-nat", FixedHost("fd00:213:1::20", name="cache"))
    net = Network.from_xml(conn.networkLookupByName("t-nat").XMLDesc(0))
    assert [(h.ip, h.name) for h in net.ips[1].dhcp_hosts] == [("fd00:213:1::10", "db"), ("fd00:213:1::20", "cache")]
    assert len(net.ips[0].dhcp_hosts) == 1


@pytest.mark.parametrize(("host", "field", "words"), [
    (FixedHost("192.168.150.7", "52:54:00:00:01:01"), "mac", "already has a fixed address"),
    (FixedHost("192.168.150.7", "52:54:00:zz:01:01"), "mac", "not a MAC address"),
    (FixedHost("192.168.150.7", "01:00:5e:00:00:01"), "mac", "multicast"),
    (FixedHost("192.168.150.7", ""), "mac", "not a MAC address"),
    (FixedHost("192.168.151.7", "52:54:00:00:01:09"), "ip", "outside the subnet"),
    (FixedHost("192.168.150.1", "52:54:00:00:01:09"), "ip", "host's own address"),
    (FixedHost("192.168.150.255", "52:54:00:00:01:09"), "ip", "broadcast"),
    (FixedHost("192.168.150.5", "52:54:00:00:01:09"), "ip", "already fixed"),
    (FixedHost("192.168.150.999", "52:54:00:00:01:09"), "ip", "not an IP address"),
    (FixedHost("fd00::5", name="x"), "ip", "no IPv6 subnet"),
    (FixedHost("192.168.150.7", "52:54:00:00:01:09", "bad name!"), "name", "not a host name"),
])
def test_fixed_host_refused_before_libvirt(host: FixedHost, field: str, words: str, conn: libvirt.virConnect) -> None:
    before = conn.networkLookupByName("lan").XMLDesc(0)
    with pytest.raises(NetworkInputError) as caught:
        networks.add_fixed_host(conn, "lan", host)
    assert any(p.field == field and words in p.message for p in caught.value.problems), caught.value.problems
    assert conn.networkLookupByName("lan").XMLDesc(0) == before


def test_fixed_host_on_a_stopped_network_changes_its_definition(conn: libvirt.virConnect) -> None:
    networks.create_network(conn, NetworkSpec("t-off", "isolated", ipv4=Addressing("10.213.5.1/24")), start=False)
    networks.add_fixed_host(conn, "t-off", FixedHost("10.213.5.9", "52:54:00:00:05:09"))
    assert hosts_in_libvirt(conn, "t-off") == [("52:54:00:00:05:09", "10.213.5.9", None)]


# --- validation: each bad input a field error, nothing defined -------------------------

GOOD = NetworkSpec("t-good", "nat", ipv4=Addressing("10.213.1.1/24", "10.213.1.100", "10.213.1.200"))
V4 = GOOD.ipv4
assert V4 is not None


def v4(**changes: str) -> Addressing:
    assert V4 is not None
    return dataclasses.replace(V4, **changes)


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("slash in name", {"name": "bad/name"}, "name", "'/'"),
    ("dot-dot in name", {"name": "a..b"}, "name", "'..'"),
    ("control character in name", {"name": "bad\x07name"}, "name", "Control characters"),
    ("name too long", {"name": "n" * 51}, "name", "At most 50"),
    ("name with a space", {"name": "bad name"}, "name", "letters, digits"),
    ("empty name", {"name": ""}, "name", "Give a name"),
    ("name taken", {"name": "lan"}, "name", "already exists"),
    ("unknown mode", {"mode": "weird"}, "mode", "Choose a network type"),
    ("bridge name too long", {"bridge": "virbr-much-too-long"}, "bridge", "at most 15"),
    ("bridge name with a space", {"bridge": "br 0"}, "bridge", "letters, digits"),
    ("bridge name of another network", {"bridge": "virbr9"}, "bridge", "Network lan uses virbr9"),
    ("bridge name of a host interface", {"bridge": "eth0"}, "bridge", "interface named eth0"),
    ("subnet without prefix", {"ipv4": v4(address="10.213.1.1")}, "ipv4_address", "prefix"),
    ("malformed subnet", {"ipv4": v4(address="10.213.1.300/24")}, "ipv4_address", "not an IPV4 address"),
    ("subnet's network address", {"ipv4": v4(address="10.213.1.0/24")}, "ipv4_address", "network or broadcast"),
    ("IPv6 in the IPv4 field", {"ipv4": v4(address="fd00::1/64")}, "ipv4_address", "not an IPV4 address"),
    ("prefix too long", {"ipv4": v4(address="10.213.1.1/31")}, "ipv4_address", "between /8 and /30"),
    ("loopback subnet", {"ipv4": v4(address="127.0.0.2/24")}, "ipv4_address", "loopback"),
    ("overlaps another network", {"ipv4": v4(address="192.168.150.129/25", dhcp_start="", dhcp_end="")},
     "ipv4_address", "overlaps 192.168.150.0/24 of network lan"),
    ("overlaps the host's own subnet", {"ipv4": v4(address="192.168.77.1/23", dhcp_start="", dhcp_end="")},
     "ipv4_address", "the host itself is on"),
    ("DHCP range outside the subnet", {"ipv4": v4(dhcp_start="10.213.2.10")}, "ipv4_dhcp_start", "outside the subnet"),
    ("DHCP range reversed", {"ipv4": v4(dhcp_start="10.213.1.200", dhcp_end="10.213.1.100")}, "ipv4_dhcp_end",
     "before it starts"),
    ("DHCP range half given", {"ipv4": v4(dhcp_end="")}, "ipv4_dhcp_end", "both ends"),
    ("DHCP range over the host's address", {"ipv4": v4(dhcp_start="10.213.1.1")}, "ipv4_dhcp_start",
     "host's own address"),
    ("DHCP range junk", {"ipv4": v4(dhcp_end="10.213.1.x")}, "ipv4_dhcp_end", "not an IP address"),
    ("fixed host outside the subnet", {"hosts": (FixedHost("10.213.9.5", "52:54:00:00:00:05"),)}, "hosts",
     "outside the subnet"),
    ("duplicate MAC", {"hosts": (FixedHost("10.213.1.5", "52:54:00:00:00:05"),
                                 FixedHost("10.213.1.6", "52:54:00:00:00:05"))}, "hosts", "already has a fixed"),
    ("duplicate IP", {"hosts": (FixedHost("10.213.1.5", "52:54:00:00:00:05"),
                                FixedHost("10.213.1.5", "52:54:00:00:00:06"))}, "hosts", "already fixed"),
    ("malformed MAC", {"hosts": (FixedHost("10.213.1.5", "52:54:00:zz:00:05"),)}, "hosts", "not a MAC"),
    ("MAC with dashes", {"hosts": (FixedHost("10.213.1.5", "52-54-00-00-00-05"),)}, "hosts", "not a MAC"),
    ("IPv6 subnet malformed", {"ipv6": Addressing("fd00::zz/64")}, "ipv6_address", "not an IPV6 address"),
    ("IPv6 range outside", {"ipv6": Addressing("fd00:213::1/64", "fd00:214::10", "fd00:214::20")},
     "ipv6_dhcp_start", "outside the subnet"),
    ("IPv6 fixed host without a name", {"ipv6": Addressing("fd00:213::1/64"),
                                        "hosts": (FixedHost("fd00:213::5"),)}, "hosts", "needs a host name"),
    ("NAT without IPv4", {"ipv4": None}, "ipv4_address", "needs an IPv4 subnet"),
    ("bad DNS domain", {"domain": "bad domain"}, "domain", "DNS domain"),
    ("bridged network with addresses", {"mode": "bridge", "bridge": "br0"}, "ipv4_address", "no addresses"),
    ("bridged network without bridge", {"mode": "bridge", "ipv4": None}, "bridge", "Choose the host bridge"),
    ("bridged to an unknown bridge", {"mode": "bridge", "bridge": "br7", "ipv4": None}, "bridge", "no bridge named"),
    ("macvtap without NIC", {"mode": "macvtap", "ipv4": None}, "dev", "Choose the host NIC"),
    ("macvtap on an unknown NIC", {"mode": "macvtap", "dev": "eth9", "ipv4": None}, "dev", "no NIC named eth9"),
    ("macvtap with a bad sub-mode", {"mode": "macvtap", "dev": "eth0", "macvtap_mode": "x", "ipv4": None},
     "macvtap_mode", "Choose bridge"),
    ("isolated with an outgoing NIC", {"mode": "isolated", "dev": "eth0"}, "dev", "Only NAT and routed"),
]


@pytest.mark.parametrize(("changes", "field", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_a_field_error_and_nothing_is_defined(changes: dict[str, Any], field: str, words: str,
                                                            conn: libvirt.virConnect) -> None:
    assert networks.spec_problems(GOOD) == []
    spec = dataclasses.replace(GOOD, **changes)
    before = names(conn)
    with pytest.raises(NetworkInputError) as caught:
        networks.create_network(conn, spec)
    assert any(p.field == field and words in p.message for p in caught.value.problems), caught.value.problems
    assert names(conn) == before  # libvirt was asked to define nothing


# --- host interfaces -------------------------------------------------------------------


class NoInterfaceAPI:
    """A daemon without an interface backend (no netcf, no udev)."""

    def __init__(self, real: libvirt.virConnect, node_devices: bool = True) -> None:
        self.real, self.node_devices = real, node_devices

    def listAllInterfaces(self, flags: int = 0) -> Any:
        raise libvirt.libvirtError("this function is not supported by the connection driver")

    def listAllDevices(self, flags: int = 0) -> Any:
        if not self.node_devices:
            raise libvirt.libvirtError("this function is not supported by the connection driver")
        return self.real.listAllDevices(flags)


def test_interfaces_from_the_interface_api(conn: libvirt.virConnect) -> None:
    report = host_interfaces(conn)
    assert report.source == INTERFACE_API
    assert [(i.name, i.kind) for i in report.interfaces] == [("br0", "bridge"), ("eth0", "ethernet")]
    eth0 = report.interfaces[1]
    assert (eth0.mac, eth0.state, eth0.addresses) == ("52:54:00:aa:00:01", "up", ("192.168.77.5/24",))
    assert [b.name for b in report.bridges] == ["br0"] and [n.name for n in report.nics] == ["eth0"]


def test_interfaces_from_node_devices_when_the_interface_api_is_missing(conn: libvirt.virConnect) -> None:
    report = host_interfaces(NoInterfaceAPI(conn))  # type: ignore[arg-type]
    assert report.source == NODE_DEVICES and "interface API unavailable" in report.problems[0]
    by_name = {i.name: i for i in report.interfaces}
    assert (by_name["eth0"].kind, by_name["eth0"].speed_mbps, by_name["eth0"].mac) == ("ethernet", 1000,
                                                                                        "52:54:00:aa:00:01")
    assert (by_name["br0"].kind, by_name["br0"].speed_mbps) == ("virtual", None)
    assert [b.name for b in report.bridges] == ["br0"]  # a virtual device may be a bridge


def test_no_interfaces_at_all_is_an_empty_report(conn: libvirt.virConnect) -> None:
    report = host_interfaces(NoInterfaceAPI(conn, node_devices=False))  # type: ignore[arg-type]
    assert report.interfaces == () and report.source == "" and len(report.problems) == 2


def test_node_device_xml_of_a_real_host() -> None:
    """As the lab's libvirtd reports them: unknown speed is 2^32-1."""
    iface = from_node_device_xml("""<device><name>net_eth0_02_fc_00_00_00_01</name>
      <path>/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0</path><parent>pci_0000_00_03_0</parent>
      <capability type='net'><interface>eth0</interface><address>02:fc:00:00:00:01</address>
      <link speed='4294967295' state='up'/><feature name='rx'/><capability type='80203'/></capability></device>""")
    assert iface is not None
    assert (iface.name, iface.kind, iface.mac, iface.state, iface.speed_mbps) == (
        "eth0", "ethernet", "02:fc:00:00:00:01", "up", None)
    lo = from_interface_xml("<interface type='ethernet' name='lo'><mtu size='65536'/><link state='unknown'/>"
                            "<mac address='00:00:00:00:00:00'/></interface>", active=False)
    assert (lo.kind, lo.state) == ("loopback", "unknown")
    fast = from_interface_xml("<interface type='ethernet' name='eno1'><link speed='10000' state='down'/>"
                              "</interface>", active=False)
    assert (fast.speed_mbps, fast.state, fast.mac) == (10000, "down", "")
