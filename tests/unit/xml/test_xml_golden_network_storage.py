"""Golden tests for <network>, <pool> and <volume> XML: see Golden in conftest.py for what each case proves."""

import pytest

from tests.unit.xml.cases import GOLDEN, Cases, GoldenCheck
from virt.xml import (
    IP,
    DHCPHost,
    DHCPRange,
    Network,
    StoragePool,
    StorageVolume,
)

CASES = Cases()
case = CASES.case


# --- networks ------------------------------------------------------------------


@case("network-add-dhcp-host")
def add_dhcp_host(net: Network) -> Network:
    ip = net.ips[0]
    assert [h.name for h in ip.dhcp_hosts] == ["db"]
    ip.dhcp_ranges[0].end = "192.168.100.99"
    ip.dhcp_hosts.add(DHCPHost.new(mac="52:54:00:00:00:11", name="web", ip="192.168.100.11"))
    net.domain_name = "lan.example"
    return net


@case("network-route")
def to_routed(net: Network) -> Network:
    assert net.ips[0].prefix == 24 and net.bridge_stp is True
    net.forward_mode, net.forward_dev = "route", "eth0"
    net.bridge_stp, net.bridge_delay = False, 2
    net.ips.add(IP.new(family="ipv6", address="fd00:101::1", prefix=64))
    return net


@case("network-new")
def new_network() -> Network:
    net = Network.new(name="isolated", uuid="dd8fe884-6c02-601e-7551-cca97df1c503")
    net.bridge_name, net.bridge_stp, net.bridge_delay = "virbr12", True, 0
    net.mac = "52:54:00:0a:0b:0d"
    ip = net.ips.add(IP.new(address="10.10.0.1", netmask="255.255.255.0"))
    ip.dhcp_ranges.add(DHCPRange.new(start="10.10.0.100", end="10.10.0.199"))
    ip.dhcp_hosts.add(DHCPHost.new(mac="52:54:00:00:00:20", ip="10.10.0.20"))
    return net


@case("network-macvtap")
def macvtap_to_private(net: Network) -> Network:
    from virt.xml.network import ForwardInterface

    assert net.forward_mode == "bridge" and [i.dev for i in net.forward_interfaces] == ["eth0", "eth1"]
    net.forward_mode = "private"
    net.forward_interfaces.remove(net.forward_interfaces[1])
    net.forward_interfaces.add(ForwardInterface.new(dev="bond0"))
    return net


@case("network-bridge-new")
def new_bridged_network() -> Network:
    return Network.new(name="lan-bridge", uuid="dd8fe884-6c02-601e-7551-cca97df1c505", forward_mode="bridge",
                       bridge_name="br0")


@case("network-nat-dual-stack-new")
def new_dual_stack_nat() -> Network:
    from virt.networks import Addressing, FixedHost, NetworkSpec, build_network_xml

    spec = NetworkSpec(
        name="dual", mode="nat", dev="eth1", bridge="virbr13", domain="dual.example",
        ipv4=Addressing("10.213.7.1/24", "10.213.7.100", "10.213.7.199"),
        ipv6=Addressing("fd00:213:7::1/64", "fd00:213:7::100", "fd00:213:7::1ff"),
        hosts=(FixedHost("10.213.7.10", "52:54:00:00:07:10", "db"), FixedHost("fd00:213:7::10", name="db")),
    )
    net = Network.from_xml(build_network_xml(spec))
    net.uuid = "dd8fe884-6c02-601e-7551-cca97df1c506"
    return net


# --- storage -------------------------------------------------------------------


@case("pool-new")
def new_pool() -> StoragePool:
    return StoragePool.new(
        type="dir",
        name="images",
        uuid="dfe224cb-28fb-8dd0-c4b2-64eb3f0f4502",
        target_path="/var/lib/libvirt/images",
    )


@case("pool-netfs")
def move_nfs_export(pool: StoragePool) -> StoragePool:
    assert (pool.capacity, pool.available) == (100 * 2**30, 50 * 2**30)
    pool.name = "isos2"
    pool.source_host, pool.source_dir = "nas2.example.lan", "/srv/isos"
    return pool


@case("volume-new")
def new_volume() -> StorageVolume:
    vol = StorageVolume.new(name="fresh.qcow2", capacity=10 * 2**30, format="qcow2")
    vol.allocation = 0
    return vol


@case("volume-backing")
def grow_and_rebase(vol: StorageVolume) -> StorageVolume:
    assert vol.capacity == 10 * 2**30 and vol.allocation == 200704
    vol.name = "web1-overlay2.qcow2"
    vol.key = None  # libvirt derives it from the pool
    vol.capacity = 20 * 2**30
    vol.backing_path, vol.backing_format = "/default-pool/debian-12-base.qcow2", "qcow2"
    return vol


def test_every_golden_file_has_a_case() -> None:
    names = {p.name.removesuffix("-in.xml").removesuffix("-out.xml") for p in GOLDEN.glob("*.xml")}
    assert {
        n
        for n in names
        if n.startswith(
            (
                "network-",
                "pool-",
                "volume-",
            )
        )
    } == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, golden: GoldenCheck) -> None:
    golden(name, CASES[name])
