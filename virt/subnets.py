"""A free private IPv4 subnet for a new network: one that overlaps no subnet of the host's networks and none
the host itself is on (its interfaces' addresses, where libvirt's interface backend reports them)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from virt.networks import Addressing, HostNetworks


def _candidates() -> Iterator[ipaddress.IPv4Network]:
    """/24s in the order they are offered: 192.168.100-254 (below 100 are the usual home and office LANs;
    libvirt's own default is 192.168.122), then 10.100-255.x, then 172.16-31.x."""
    for third in range(100, 255):
        yield ipaddress.IPv4Network(f"192.168.{third}.0/24")
    for second in range(100, 256):
        for third in range(256):
            yield ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
    for second in range(16, 32):
        for third in range(256):
            yield ipaddress.IPv4Network(f"172.{second}.{third}.0/24")


def used_ipv4(host: HostNetworks) -> list[ipaddress.IPv4Network]:
    """Every IPv4 subnet the host's networks and interfaces are on."""
    found = [s.network for n in host.networks for s in n.subnets] + host.interfaces.networks()
    return [net for net in found if isinstance(net, ipaddress.IPv4Network)]


def free_ipv4(host: HostNetworks) -> Addressing | None:
    """The first free candidate /24 with the host's address .1 and a DHCP range over the rest (.2-.254, as
    libvirt's default network has); None when every candidate is taken."""
    used = used_ipv4(host)
    for net in _candidates():
        if not any(net.overlaps(other) for other in used):
            return Addressing(f"{net[1]}/{net.prefixlen}", str(net[2]), str(net[-2]))
    return None
