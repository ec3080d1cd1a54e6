"""<network> XML: libvirt virtual networks (NAT, routed, bridged)."""

from __future__ import annotations

from virt.xml.base import XMLObject
from virt.xml.codecs import ON_OFF
from virt.xml.fields import Attr, Children, Text


class DHCPRange(XMLObject):
    tag = "range"
    start = Attr("./@start")
    end = Attr("./@end")


class DHCPHost(XMLObject):
    """A static lease: the guest with this MAC always gets this IP (and name)."""

    tag = "host"
    mac = Attr("./@mac")
    name = Attr("./@name")
    ip = Attr("./@ip")


class IP(XMLObject):
    tag = "ip"
    family = Attr("./@family")  # ipv4 when absent, ipv6
    address = Attr("./@address")
    netmask = Attr("./@netmask")  # IPv4 only; or use prefix
    prefix = Attr("./@prefix", int)
    dhcp_ranges = Children(DHCPRange, "./dhcp/range")
    dhcp_hosts = Children(DHCPHost, "./dhcp/host")


class Network(XMLObject):
    tag = "network"
    name = Text("./name")
    uuid = Text("./uuid")
    forward_mode = Attr("./forward/@mode")  # nat, route, bridge, open; absent = isolated
    forward_dev = Attr("./forward/@dev")
    bridge_name = Attr("./bridge/@name")
    bridge_stp = Attr("./bridge/@stp", ON_OFF)
    bridge_delay = Attr("./bridge/@delay", int)
    mac = Attr("./mac/@address")
    domain_name = Attr("./domain/@name")
    ips = Children(IP, "./ip")
