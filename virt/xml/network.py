"""<network> XML: libvirt virtual networks (NAT, routed, open, isolated, bridged, macvtap)."""

from __future__ import annotations

from virt.xml.base import XMLObject
from virt.xml.codecs import ON_OFF, YES_NO
from virt.xml.fields import Attr, Children, Text


class DHCPRange(XMLObject):
    tag = "range"
    start = Attr("./@start")
    end = Attr("./@end")


class DHCPHost(XMLObject):
    """A static lease: the guest with this MAC (IPv4) or name (IPv6) always gets this IP."""

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

    @property
    def is_ipv6(self) -> bool:
        return self.family == "ipv6" or ":" in (self.address or "")


class ForwardInterface(XMLObject):
    """A host NIC a macvtap (or passthrough) network hands out to guests."""

    tag = "interface"
    dev = Attr("./@dev")


class Network(XMLObject):
    tag = "network"
    connections = Attr("./@connections", int)  # live XML only: guest NICs attached now
    name = Text("./name")
    uuid = Text("./uuid")
    forward_mode = Attr("./forward/@mode")  # nat, route, open, bridge, private, vepa, passthrough; absent = isolated
    forward_dev = Attr("./forward/@dev")
    forward_interfaces = Children(ForwardInterface, "./forward/interface")
    bridge_name = Attr("./bridge/@name")
    bridge_stp = Attr("./bridge/@stp", ON_OFF)
    bridge_delay = Attr("./bridge/@delay", int)
    mac = Attr("./mac/@address")
    domain_name = Attr("./domain/@name")
    domain_local_only = Attr("./domain/@localOnly", YES_NO)  # answer for the domain, never ask upstream
    ips = Children(IP, "./ip")
