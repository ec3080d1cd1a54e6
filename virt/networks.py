"""Virtual networks: list, inspect, create, start/stop, autostart, delete, fixed hosts.

Listing costs a fixed number of list calls per host plus one XMLDesc per network (libvirt
has no bulk XML call). Every value that becomes XML is validated here first (Django-free,
so the panel's forms and any other caller share one set of rules) and written through the
typed objects of virt.xml, never into markup.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import libvirt

from virt.errors import InvalidInput, NotFound, Text, gettext_noop, joined, reworded, translate
from virt.interfaces import InterfaceReport, host_interfaces
from virt.xml.domain import Domain
from virt.xml.network import IP, DHCPHost, DHCPRange, ForwardInterface, Network

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPIface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

MODES = ("nat", "route", "open", "isolated", "bridge", "macvtap")
ROUTED_MODES = ("nat", "route", "open", "isolated")  # a bridge of libvirt's own, addresses, DHCP
MACVTAP_MODES = ("bridge", "private", "vepa", "passthrough")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")  # IFNAMSIZ is 16 with the NUL
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
MAX_DOMAIN = 253
FIELDS_OF_FAMILY = {4: "ipv4", 6: "ipv6"}


# --- what the forms hand over ----------------------------------------------------------


@dataclass(frozen=True)
class FixedHost:
    """A static lease: IPv4 by MAC (name optional), IPv6 by name (dnsmasq matches DHCPv6 by DUID or name)."""

    ip: str
    mac: str = ""
    name: str = ""

    def label(self) -> str:
        return " ".join(part for part in (self.mac, self.ip, self.name) if part)


@dataclass(frozen=True)
class Addressing:
    """One <ip>: the host's own address on the network with its prefix, and an optional DHCP range."""

    address: str  # "10.213.1.1/24", "fd00:213::1/64"
    dhcp_start: str = ""
    dhcp_end: str = ""


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    mode: str
    bridge: str = ""  # nat/route/open/isolated: our bridge's name (blank: libvirt picks); bridge: the host bridge
    dev: str = ""  # nat/route: outgoing NIC (optional); macvtap: the host NIC (required)
    macvtap_mode: str = "bridge"
    ipv4: Addressing | None = None
    ipv6: Addressing | None = None
    hosts: tuple[FixedHost, ...] = ()
    domain: str = ""


@dataclass(frozen=True)
class Problem:
    field: str  # the form field it belongs to
    message: str


class NetworkInputError(InvalidInput):
    """Input refused before libvirt saw it; `problems` say which field and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("{problems}", problems=joined([Text(gettext_noop("{field}: {message}"), field=p.field,
                                                             message=Text.of(p.message)) for p in problems]))
        self.problems = problems


# --- what libvirt reports ------------------------------------------------------------


@dataclass(frozen=True)
class Subnet:
    address: str  # "10.213.1.1/24"
    family: int  # 4 or 6
    dhcp_ranges: tuple[tuple[str, str], ...] = ()
    hosts: tuple[FixedHost, ...] = ()

    @property
    def network(self) -> IPNet:
        return ipaddress.ip_interface(self.address).network


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    uuid: str
    mode: str  # one of MODES, or libvirt's own word for shapes we do not create (hostdev)
    macvtap_mode: str = ""
    bridge: str = ""
    forward_dev: str = ""
    devices: tuple[str, ...] = ()  # host NICs of a macvtap network
    subnets: tuple[Subnet, ...] = ()
    domain: str = ""
    active: bool = False
    autostart: bool = False
    persistent: bool = True
    connections: int = 0

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(s.address for s in self.subnets)

    @property
    def hosts(self) -> tuple[FixedHost, ...]:
        return tuple(h for s in self.subnets for h in s.hosts)


@dataclass(frozen=True)
class Lease:
    mac: str
    ip: str  # with prefix
    hostname: str
    expires: int  # epoch seconds, 0 = never
    family: int
    client_id: str = ""

    @property
    def expires_at(self) -> datetime | None:
        return datetime.fromtimestamp(self.expires, tz=UTC) if self.expires else None


@dataclass(frozen=True)
class NetworkUser:
    """A VM with a NIC on the network (now, or from its next boot)."""

    name: str
    uuid: str
    active: bool


@dataclass(frozen=True)
class NetworkDetail:
    info: NetworkInfo
    xml: str
    users: tuple[NetworkUser, ...]
    leases: tuple[Lease, ...] | None  # None: not known (network stopped, or the driver cannot tell)
    leases_note: str = ""


@dataclass(frozen=True)
class HostNetworks:
    """Everything a new network must not clash with on one host."""

    networks: tuple[NetworkInfo, ...]
    interfaces: InterfaceReport = field(default_factory=InterfaceReport)

    def named(self, name: str) -> NetworkInfo | None:
        return next((n for n in self.networks if n.name == name), None)


# --- reading ---------------------------------------------------------------------------


def _mode(net: Network) -> tuple[str, str]:
    """Our mode word (and the macvtap sub-mode) for a <network>."""
    forward = net.element.find("forward")
    if forward is None:
        return "isolated", ""
    mode = net.forward_mode or "nat"  # <forward/> without a mode means NAT
    if mode == "bridge":
        return ("bridge", "") if net.bridge_name else ("macvtap", "bridge")
    if mode in ("private", "vepa", "passthrough"):
        return "macvtap", mode
    return mode, ""


def _subnet(ip: IP) -> Subnet | None:
    if not ip.address:
        return None
    try:
        prefix = ip.prefix if ip.prefix is not None else (
            ipaddress.IPv4Network(f"0.0.0.0/{ip.netmask}").prefixlen if ip.netmask else None)
        iface = ipaddress.ip_interface(f"{ip.address}/{prefix}" if prefix is not None else ip.address)
    except ValueError:
        return None  # libvirt accepted it; we just cannot describe it
    hosts = tuple(FixedHost(ip=h.ip or "", mac=(h.mac or "").lower(), name=h.name or "") for h in ip.dhcp_hosts)
    ranges = tuple((r.start or "", r.end or "") for r in ip.dhcp_ranges)
    return Subnet(str(iface), iface.version, ranges, hosts)


def parse_network(xml: str, *, active: bool = False, autostart: bool = False, persistent: bool = True) -> NetworkInfo:
    net = Network.from_xml(xml)
    mode, macvtap_mode = _mode(net)
    subnets = tuple(s for s in (_subnet(ip) for ip in net.ips) if s is not None)
    return NetworkInfo(
        name=net.name or "", uuid=net.uuid or "", mode=mode, macvtap_mode=macvtap_mode,
        bridge=net.bridge_name or "", forward_dev=net.forward_dev or "",
        devices=tuple(i.dev for i in net.forward_interfaces if i.dev) if mode == "macvtap" else (), subnets=subnets,
        domain=net.domain_name or "", active=active, autostart=autostart, persistent=persistent,
        connections=net.connections or 0,
    )


def _uuids(conn: libvirt.virConnect, flag: int) -> set[str]:
    return {str(n.UUIDString()) for n in conn.listAllNetworks(flag)}


def list_networks(conn: libvirt.virConnect) -> list[NetworkInfo]:
    """Four list calls and one XMLDesc per network (name and UUID are known locally)."""
    nets = conn.listAllNetworks(0)
    active = _uuids(conn, libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)
    autostart = _uuids(conn, libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART)
    persistent = _uuids(conn, libvirt.VIR_CONNECT_LIST_NETWORKS_PERSISTENT)
    found = []
    for net in nets:
        uuid = str(net.UUIDString())
        try:
            xml = net.XMLDesc(0)
        except libvirt.libvirtError:
            continue  # undefined meanwhile
        found.append(parse_network(xml, active=uuid in active, autostart=uuid in autostart,
                                   persistent=uuid in persistent))
    return sorted(found, key=lambda n: n.name)


def host_networks(conn: libvirt.virConnect) -> HostNetworks:
    return HostNetworks(tuple(list_networks(conn)), host_interfaces(conn))


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork:
    if not name or "/" in name:
        raise NotFound(gettext_noop("No such network."))
    return conn.networkLookupByName(name)


def _info(net: libvirt.virNetwork) -> NetworkInfo:
    return parse_network(net.XMLDesc(0), active=bool(net.isActive()), autostart=bool(net.autostart()),
                         persistent=bool(net.isPersistent()))


def network_info(conn: libvirt.virConnect, name: str) -> NetworkInfo:
    return _info(_lookup(conn, name))


def network_users(conn: libvirt.virConnect, name: str) -> tuple[NetworkUser, ...]:
    """VMs with a NIC on `name`, read from each VM's XML (the running one and its next-boot one)."""
    users = []
    for dom in conn.listAllDomains(0):
        try:
            active = bool(dom.isActive())
            xmls = [dom.XMLDesc(0)]
            if active and dom.isPersistent():
                xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError:
            continue  # gone meanwhile
        if any(nic.source_network == name for xml in xmls for nic in Domain.from_xml(xml).interfaces
               if nic.type == "network"):
            users.append(NetworkUser(str(dom.name()), str(dom.UUIDString()), active))
    return tuple(sorted(users, key=lambda u: u.name))


def _leases(net: libvirt.virNetwork, active: bool) -> tuple[tuple[Lease, ...] | None, str]:
    if not active:
        return None, Text(gettext_noop("The network is not running."))
    try:
        raw = net.DHCPLeases(None, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            return None, Text(gettext_noop("This host's libvirt does not report DHCP leases."))
        return None, Text(gettext_noop("Leases could not be read: {error}"), error=translate(exc))
    leases = tuple(
        Lease(mac=str(r.get("mac") or ""), ip=f"{r.get('ipaddr')}/{r.get('prefix')}",
              hostname=str(r.get("hostname") or ""), expires=int(r.get("expirytime") or 0),
              family=6 if r.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV6 else 4,
              client_id=str(r.get("clientid") or ""))
        for r in raw
    )
    return tuple(sorted(leases, key=lambda lease: (lease.family, lease.ip))), ""


def network_detail(conn: libvirt.virConnect, name: str) -> NetworkDetail:
    net = _lookup(conn, name)
    xml = str(net.XMLDesc(0))
    info = parse_network(xml, active=bool(net.isActive()), autostart=bool(net.autostart()),
                         persistent=bool(net.isPersistent()))
    leases, note = _leases(net, info.active)
    return NetworkDetail(info, xml, network_users(conn, name), leases, note)


# --- validation ------------------------------------------------------------------------


def name_problem(name: str) -> str:
    if not name:
        return Text(gettext_noop("Give a name."))
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return Text(gettext_noop("Control characters are not allowed."))
    if "/" in name or ".." in name:
        return Text(gettext_noop("'/' and '..' are not allowed."))
    if len(name) > 50:
        return Text(gettext_noop("At most 50 characters."))
    if not NAME_RE.match(name):
        return Text(gettext_noop("Use letters, digits, '.', '-' and '_', starting with a letter or digit."))
    return ""


def ifname_problem(name: str) -> str:
    if len(name) > 15:
        return Text(gettext_noop("Interface names have at most 15 characters."))
    if not IFNAME_RE.match(name) or name in (".", ".."):
        return Text(gettext_noop("Use letters, digits, '.', '-' and '_', starting with a letter or digit."))
    return ""


def normal_mac(mac: str) -> str:
    return mac.strip().lower()


def mac_problem(mac: str) -> str:
    if not MAC_RE.match(mac):
        if not mac:
            return Text(gettext_noop("(empty) is not a MAC address (six pairs of hex digits joined by ':')."))
        return Text(gettext_noop("{mac} is not a MAC address (six pairs of hex digits joined by ':')."), mac=mac)
    first = int(mac[:2], 16)
    if first & 1 or mac == "00:00:00:00:00:00":
        return Text(gettext_noop("{mac} is a multicast or zero address, never a NIC's own."), mac=mac)
    return ""


def _iface(value: str, family: int) -> tuple[IPIface | None, str]:
    kind = FIELDS_OF_FAMILY[family]
    example = "10.213.1.1/24" if family == 4 else "fd00:213::1/64"
    if "/" not in value:
        return None, Text(gettext_noop("Give the host's address with its prefix length, e.g. {example}."),
                          example=example)
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return None, Text(gettext_noop("{value} is not an {kind} address with a prefix, e.g. {example}."), value=value,
                          kind=kind.upper(), example=example)
    if iface.version != family:
        return None, Text(gettext_noop("{value} is not an {kind} address."), value=value, kind=kind.upper())
    net = iface.network
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified or iface.ip.is_link_local:
        return None, Text(gettext_noop("{ip} is a loopback, multicast, link-local or unspecified address."),
                          ip=str(iface.ip))
    if family == 4 and not 8 <= net.prefixlen <= 30:
        return None, Text(gettext_noop("The IPv4 prefix must be between /8 and /30."))
    if family == 6 and not 8 <= net.prefixlen <= 126:
        return None, Text(gettext_noop("The IPv6 prefix must be between /8 and /126."))
    if iface.ip == net.network_address or (family == 4 and iface.ip == net.broadcast_address):
        return None, Text(gettext_noop("{ip} is the subnet's own network or broadcast address: give the host's "
                                       "address in it, e.g. {example}."), ip=str(iface.ip),
                          example=f"{next(net.hosts())}/{net.prefixlen}")
    return iface, ""


def _addr(value: str) -> IPAddr | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _usable(addr: IPAddr, iface: IPIface) -> str:
    """Why addr cannot be handed to a guest on iface's subnet ('' when it can)."""
    net = iface.network
    if addr.version != iface.version or addr not in net:
        return Text(gettext_noop("{addr} is outside the subnet {net}."), addr=str(addr), net=str(net))
    if addr == net.network_address or (addr.version == 4 and addr == net.broadcast_address):
        return Text(gettext_noop("{addr} is the subnet's network or broadcast address."), addr=str(addr))
    if addr == iface.ip:
        return Text(gettext_noop("{addr} is the host's own address on this network."), addr=str(addr))
    return ""


def _addressing_problems(addressing: Addressing, family: int) -> tuple[IPIface | None, list[Problem]]:
    key = FIELDS_OF_FAMILY[family]
    iface, why = _iface(addressing.address.strip(), family)
    if iface is None:
        return None, [Problem(f"{key}_address", why)]
    problems = []
    start_raw, end_raw = addressing.dhcp_start.strip(), addressing.dhcp_end.strip()
    if bool(start_raw) != bool(end_raw):
        missing = f"{key}_dhcp_end" if start_raw else f"{key}_dhcp_start"
        problems.append(Problem(missing, Text(gettext_noop("Give both ends of the DHCP range, or neither."))))
        return iface, problems
    if not start_raw:
        return iface, problems
    bounds = []
    for part, raw in (("start", start_raw), ("end", end_raw)):
        addr = _addr(raw)
        why = Text(gettext_noop("{value} is not an IP address."), value=raw) if addr is None else _usable(addr, iface)
        if why:
            problems.append(Problem(f"{key}_dhcp_{part}", why))
        else:
            assert addr is not None
            bounds.append(addr)
    if len(bounds) == 2:
        start, end = bounds
        if int(start) > int(end):
            problems.append(Problem(f"{key}_dhcp_end", Text(gettext_noop("The range ends ({end}) before it starts "
                                                                         "({start})."),
                                                            end=str(end), start=str(start))))
        elif int(start) <= int(iface.ip) <= int(end):
            problems.append(Problem(f"{key}_dhcp_start", Text(gettext_noop("The range includes the host's own "
                                                                           "address {ip}."),
                                                              ip=str(iface.ip))))
    return iface, problems


def fixed_host_problems(host: FixedHost, subnets: Iterable[IPIface], taken: Iterable[FixedHost] = (),
                        field_name: str = "hosts") -> list[Problem]:
    """One static lease against the network's subnets and the leases it already has.

    field_name "hosts" (create form, one text field) or "" (fixed host form: mac/ip/name fields).
    """
    def problem(name: str, message: str) -> Problem:
        return Problem(field_name or name, Text(gettext_noop("{host}: {message}"), host=host.label(), message=message)
                       if field_name else message)

    problems = []
    addr = _addr(host.ip)
    if addr is None:
        if not host.ip:
            return [problem("ip", Text(gettext_noop("(empty) is not an IP address.")))]
        return [problem("ip", Text(gettext_noop("{value} is not an IP address."), value=host.ip))]
    matching = [s for s in subnets if s.version == addr.version]
    if not matching:
        return [problem("ip", Text(gettext_noop("the network has no IPv{version} subnet for {addr}."),
                                   version=addr.version, addr=str(addr)))]
    if all(_usable(addr, s) for s in matching):
        problems.append(problem("ip", _usable(addr, matching[0])))
    if addr.version == 4:
        why = mac_problem(host.mac)
        if why:
            problems.append(problem("mac", why))
    elif host.mac:
        problems.append(problem("mac", Text(gettext_noop("IPv6 fixed addresses are given by host name, not MAC "
                                                         "(DHCPv6)."))))
    elif not host.name:
        problems.append(problem("name", Text(gettext_noop("an IPv6 fixed address needs a host name."))))
    if host.name and not LABEL_RE.match(host.name):
        problems.append(problem("name", Text(gettext_noop("{name} is not a host name (letters, digits and '-')."),
                                             name=host.name)))
    for other in taken:
        if host.mac and other.mac == host.mac:
            problems.append(problem("mac", Text(gettext_noop("MAC {mac} already has a fixed address ({ip})."),
                                                mac=host.mac, ip=other.ip)))
        other_addr = _addr(other.ip)
        if other_addr is not None and other_addr == addr:
            problems.append(problem("ip", Text(gettext_noop("{addr} is already fixed for {owner}."), addr=str(addr),
                                               owner=other.mac or other.name)))
        if host.name and other.name == host.name and other_addr is not None and other_addr.version == addr.version:
            problems.append(problem("name", Text(gettext_noop("the name {name} is already used ({ip})."),
                                                 name=host.name, ip=other.ip)))
    return problems


def domain_problem(domain: str) -> str:
    if len(domain) > MAX_DOMAIN or not all(LABEL_RE.match(label) for label in domain.split(".")):
        return Text(gettext_noop("Give a DNS domain such as lab.example (labels of letters, digits and '-', joined "
                                 "by '.')."))
    return ""


def spec_problems(spec: NetworkSpec) -> list[Problem]:
    """Everything that can be checked without asking the host."""
    problems = []
    if why := name_problem(spec.name):
        problems.append(Problem("name", why))
    if spec.mode not in MODES:
        return [*problems, Problem("mode", Text(gettext_noop("Choose a network type.")))]
    if spec.bridge and (why := ifname_problem(spec.bridge)):
        problems.append(Problem("bridge", why))
    if spec.dev and (why := ifname_problem(spec.dev)):
        problems.append(Problem("dev", why))
    if spec.mode in ("bridge", "macvtap"):
        unused = (Text(gettext_noop("A bridge network has no addresses of its own: the LAN it joins provides them."))
                  if spec.mode == "bridge" else
                  Text(gettext_noop("A macvtap network has no addresses of its own: the LAN it joins provides them.")))
        for key, value in (("ipv4_address", spec.ipv4), ("ipv6_address", spec.ipv6), ("hosts", spec.hosts),
                           ("domain", spec.domain)):
            if value:
                problems.append(Problem(key, unused))
        if spec.mode == "bridge" and not spec.bridge:
            problems.append(Problem("bridge", Text(gettext_noop("Choose the host bridge to join."))))
        if spec.mode == "bridge" and spec.dev:
            problems.append(Problem("dev", Text(gettext_noop("A bridged network uses the host bridge, not a NIC."))))
        if spec.mode == "macvtap" and not spec.dev:
            problems.append(Problem("dev", Text(gettext_noop("Choose the host NIC the guests share."))))
        if spec.mode == "macvtap" and spec.macvtap_mode not in MACVTAP_MODES:
            problems.append(Problem("macvtap_mode", Text(gettext_noop("Choose bridge, private, vepa or passthrough."))))
        if spec.mode == "macvtap" and spec.bridge:
            problems.append(Problem("bridge", Text(gettext_noop("A macvtap network has no bridge."))))
        return problems
    if spec.dev and spec.mode not in ("nat", "route"):
        problems.append(Problem("dev",
                                Text(gettext_noop("Only NAT and routed networks forward through a chosen NIC."))))
    if spec.mode == "nat" and spec.ipv4 is None:
        problems.append(Problem("ipv4_address", Text(gettext_noop("A NAT network needs an IPv4 subnet."))))
    if spec.mode in ("route", "open") and spec.ipv4 is None and spec.ipv6 is None:
        problems.append(Problem("ipv4_address", Text(gettext_noop("A route network needs an IPv4 or IPv6 subnet."))
                                if spec.mode == "route" else
                                Text(gettext_noop("A open network needs an IPv4 or IPv6 subnet."))))
    subnets: list[IPIface] = []
    for family, addressing in ((4, spec.ipv4), (6, spec.ipv6)):
        if addressing is not None:
            iface, found = _addressing_problems(addressing, family)
            problems += found
            if iface is not None:
                subnets.append(iface)
    if spec.hosts and not subnets and not any(p.field.endswith("_address") for p in problems):
        problems.append(Problem("hosts", Text(gettext_noop("Fixed addresses need a subnet."))))
    elif subnets:
        for index, host in enumerate(spec.hosts):
            problems += fixed_host_problems(host, subnets, spec.hosts[:index])
    if spec.domain and (why := domain_problem(spec.domain)):
        problems.append(Problem("domain", why))
    if spec.domain and not subnets:
        problems.append(Problem("domain", Text(gettext_noop("A DNS domain needs a subnet (the network's DNS server "
                                                            "lives there)."))))
    return problems


def host_problems(spec: NetworkSpec, host: HostNetworks) -> list[Problem]:
    """Clashes with what the host already has: names, bridges, subnets, interfaces."""
    problems = []
    if host.named(spec.name) is not None:
        problems.append(Problem("name", Text(gettext_noop("A network named {name} already exists on this host."),
                                             name=spec.name)))
    known = {i.name for i in host.interfaces.interfaces}
    network_bridges = {n.bridge: n.name for n in host.networks if n.bridge}
    if spec.mode in ROUTED_MODES and spec.bridge:
        if spec.bridge in network_bridges:
            problems.append(Problem("bridge", Text(gettext_noop("Network {network} uses {bridge} already."),
                                                   network=network_bridges[spec.bridge], bridge=spec.bridge)))
        elif spec.bridge in known:
            problems.append(Problem("bridge", Text(gettext_noop("The host has an interface named {bridge} already."),
                                                   bridge=spec.bridge)))
    if spec.mode == "bridge" and spec.bridge:
        if spec.bridge in network_bridges:
            problems.append(Problem("bridge", Text(gettext_noop("{bridge} belongs to network {network}."),
                                                   bridge=spec.bridge, network=network_bridges[spec.bridge])))
        elif host.interfaces.bridges and spec.bridge not in {b.name for b in host.interfaces.bridges}:
            problems.append(Problem("bridge", Text(gettext_noop("The host has no bridge named {bridge}."),
                                                   bridge=spec.bridge)))
    nics = {n.name for n in host.interfaces.nics}
    if spec.dev and nics and spec.dev not in nics:
        problems.append(Problem("dev", Text(gettext_noop("The host has no NIC named {dev}."), dev=spec.dev)))
    own_nets = host.interfaces.networks()
    for family, addressing in ((4, spec.ipv4), (6, spec.ipv6)):
        key = f"{FIELDS_OF_FAMILY[family]}_address"
        try:
            wanted = ipaddress.ip_interface(addressing.address.strip()).network if addressing else None
        except ValueError:
            continue  # spec_problems says why
        if wanted is None:
            continue
        for other in host.networks:
            for subnet in other.subnets:
                if subnet.network.version == wanted.version and subnet.network.overlaps(wanted):
                    problems.append(Problem(key, Text(gettext_noop("{wanted} overlaps {subnet} of network {network}."),
                                                      wanted=str(wanted), subnet=str(subnet.network),
                                                      network=other.name)))
        for own in own_nets:
            if own.version == wanted.version and own.overlaps(wanted):
                problems.append(Problem(key, Text(gettext_noop("{wanted} overlaps {own}, a subnet the host itself "
                                                               "is on."),
                                                  wanted=str(wanted), own=str(own))))
    return problems


def normalise(spec: NetworkSpec) -> NetworkSpec:
    hosts = tuple(replace(h, mac=normal_mac(h.mac), ip=h.ip.strip(), name=h.name.strip()) for h in spec.hosts)
    return replace(spec, name=spec.name.strip(), bridge=spec.bridge.strip(), dev=spec.dev.strip(),
                   domain=spec.domain.strip().lower(), hosts=hosts)


# --- creating --------------------------------------------------------------------------


def _ip_element(addressing: Addressing, hosts: Iterable[FixedHost]) -> IP:
    iface = ipaddress.ip_interface(addressing.address.strip())
    family = {"family": "ipv6"} if iface.version == 6 else {}
    ip = IP.new(**family, address=str(iface.ip), prefix=iface.network.prefixlen)
    if addressing.dhcp_start.strip():
        ip.dhcp_ranges.add(DHCPRange.new(start=addressing.dhcp_start.strip(), end=addressing.dhcp_end.strip()))
    for host in hosts:
        if ipaddress.ip_address(host.ip).version == iface.version:
            ip.dhcp_hosts.add(_host_element(host))
    return ip


def _host_element(host: FixedHost) -> DHCPHost:
    return DHCPHost.new(mac=host.mac or None, name=host.name or None, ip=host.ip)


def build_network_xml(spec: NetworkSpec) -> str:
    """The <network> for a validated spec (call spec_problems first)."""
    net = Network.new(name=spec.name)
    if spec.mode == "bridge":
        net.forward_mode, net.bridge_name = "bridge", spec.bridge
        return net.to_xml()
    if spec.mode == "macvtap":
        net.forward_mode = spec.macvtap_mode
        net.forward_interfaces.add(ForwardInterface.new(dev=spec.dev))
        return net.to_xml()
    if spec.mode != "isolated":
        net.forward_mode = spec.mode
        if spec.dev:
            net.forward_dev = spec.dev
    if spec.bridge:
        net.bridge_name = spec.bridge
    net.bridge_stp, net.bridge_delay = True, 0
    if spec.domain:
        net.domain_name, net.domain_local_only = spec.domain, True
    for addressing in (spec.ipv4, spec.ipv6):
        if addressing is not None:
            net.ips.add(_ip_element(addressing, spec.hosts))
    return net.to_xml()


def create_network(conn: libvirt.virConnect, spec: NetworkSpec, *, start: bool = True,
                   autostart: bool = False) -> NetworkInfo:
    """Validate against the host as it is now, define, then autostart/start; undefined again on failure."""
    spec = normalise(spec)
    problems = spec_problems(spec) + host_problems(spec, host_networks(conn))
    if problems:
        raise NetworkInputError(problems)
    net = conn.networkDefineXML(build_network_xml(spec))
    try:
        if autostart:
            net.setAutostart(1)
        if start:
            net.create()
        return _info(net)
    except libvirt.libvirtError as exc:
        error = translate(exc)
        try:
            net.undefine()
            kept = Text(gettext_noop("Nothing was kept."))
        except libvirt.libvirtError as undo:
            kept = Text(gettext_noop("Its definition could not be removed ({error}): please remove it by hand."),
                        error=translate(undo))
        raise reworded(error, gettext_noop("{error}. {kept}"), error=Text.of(str(error).rstrip(".")),
                       kept=kept) from None


# --- changing --------------------------------------------------------------------------


def start(conn: libvirt.virConnect, name: str) -> None:
    _lookup(conn, name).create()


def stop(conn: libvirt.virConnect, name: str) -> None:
    _lookup(conn, name).destroy()


def set_autostart(conn: libvirt.virConnect, name: str, enabled: bool) -> None:
    _lookup(conn, name).setAutostart(1 if enabled else 0)


def delete(conn: libvirt.virConnect, name: str) -> None:
    """Stop it if running, then remove its definition (a transient network ends with the stop)."""
    net = _lookup(conn, name)
    persistent = bool(net.isPersistent())
    if net.isActive():
        net.destroy()
    if persistent:
        net.undefine()


def _update_flags(net: libvirt.virNetwork) -> int:
    """Running: change it live (and its definition, if it has one); stopped: the definition only."""
    if net.isActive():
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        if net.isPersistent():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        return int(flags)
    return int(libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG)


def _ip_index(net: Network, addr: IPAddr) -> int:
    """Position of the <ip> whose subnet holds addr: libvirt's parentIndex counts every <ip> in order."""
    for index, ip in enumerate(net.ips):
        subnet = _subnet(ip)
        if subnet is not None and addr in subnet.network:
            return index
    raise NetworkInputError([Problem("ip", Text(gettext_noop("The network has no subnet for {addr}."),
                                                addr=str(addr)))])


def add_fixed_host(conn: libvirt.virConnect, name: str, host: FixedHost) -> None:
    """Add a static lease, live on a running network (dnsmasq is told at once) and in its definition."""
    host = replace(host, mac=normal_mac(host.mac), ip=host.ip.strip(), name=host.name.strip())
    net = _lookup(conn, name)
    desc = Network.from_xml(net.XMLDesc(0))
    info = parse_network(desc.to_xml())
    subnets = [ipaddress.ip_interface(s.address) for s in info.subnets]
    problems = fixed_host_problems(host, subnets, info.hosts, field_name="")
    if problems:
        raise NetworkInputError(problems)
    index = _ip_index(desc, ipaddress.ip_address(host.ip))
    net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, index,
               _host_element(host).to_xml(pretty=False), _update_flags(net))


def remove_fixed_host(conn: libvirt.virConnect, name: str, ip: str) -> FixedHost:
    """Remove the static lease for `ip` (live and from the definition); returns what was removed."""
    net = _lookup(conn, name)
    desc = Network.from_xml(net.XMLDesc(0))
    addr = _addr(ip)
    for index, ip_el in enumerate(desc.ips):
        for element in ip_el.dhcp_hosts:
            if addr is not None and _addr(element.ip or "") == addr:
                # The element exactly as libvirt has it: DELETE matches on every attribute given.
                net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                           index, element.to_xml(pretty=False), _update_flags(net))
                return FixedHost(ip=element.ip or "", mac=element.mac or "", name=element.name or "")
    raise NotFound(gettext_noop("Network {name} has no fixed address {ip}."), name=name, ip=ip)
