"""The host's own network interfaces (physical NICs, bridges), for choosing instead of typing.

libvirt describes them two ways. The interface API (netcf or udev backend) knows types
(ethernet, bridge, bond, vlan) and, with netcf, addresses; many daemons are built or run
without a backend and refuse it. Node devices (udev) exist almost everywhere and report
every net device with MAC, link state and speed, but not whether it is a bridge: there a
virtual device that libvirt did not make for a guest is offered as a possible bridge.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import libvirt
from lxml import etree

from virt.errors import Text, gettext_noop, libvirt_message
from virt.xml.parser import parse_xml

INTERFACE_API = "interface API"
NODE_DEVICES = "node devices"
UNKNOWN_SPEEDS = {0, 4294967295, -1}  # what the kernel reports for "no link speed"
# Devices libvirt makes itself for guests (tap, macvtap) are no choice for a new network.
GUEST_DEVICE_PREFIXES = ("vnet", "macvtap", "macvlan", "tap")


@dataclass(frozen=True)
class HostInterface:
    name: str
    kind: str  # ethernet, bridge, bond, vlan, loopback, virtual
    mac: str = ""
    state: str = "unknown"  # up, down, unknown, ... as the kernel says
    speed_mbps: int | None = None
    addresses: tuple[str, ...] = ()  # "192.0.2.2/24"; only the netcf backend reports them

    @property
    def is_bridge(self) -> bool:
        return self.kind == "bridge"

    @property
    def is_nic(self) -> bool:
        """Usable as the outgoing device of a macvtap network or of NAT/routed forwarding."""
        return self.kind in ("ethernet", "bond", "vlan")


@dataclass(frozen=True)
class InterfaceReport:
    interfaces: tuple[HostInterface, ...] = ()
    source: str = ""  # INTERFACE_API, NODE_DEVICES, or "" when neither answered
    problems: tuple[str, ...] = field(default_factory=tuple)  # why a source was not used, in words

    @property
    def bridges(self) -> tuple[HostInterface, ...]:
        """Bridges for sure (interface API), or the virtual devices that may be one (node devices)."""
        return tuple(i for i in self.interfaces if i.is_bridge or (
            self.source == NODE_DEVICES and i.kind == "virtual" and not i.name.startswith(GUEST_DEVICE_PREFIXES)))

    @property
    def nics(self) -> tuple[HostInterface, ...]:
        """NICs for sure, plus (node devices) the virtual devices that may be a bond or VLAN."""
        return tuple(i for i in self.interfaces if i.is_nic or (
            self.source == NODE_DEVICES and i.kind == "virtual" and not i.name.startswith(GUEST_DEVICE_PREFIXES)))

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Subnets the host itself sits on (empty when the backend does not say)."""
        return [ipaddress.ip_interface(a).network for i in self.interfaces for a in i.addresses]


def _speed(link: etree._Element | None) -> int | None:
    raw = link.get("speed") if link is not None else None
    if raw is None or not raw.lstrip("-").isdigit() or int(raw) in UNKNOWN_SPEEDS:
        return None
    return int(raw)


def _addresses(root: etree._Element) -> tuple[str, ...]:
    found = []
    for ip in root.iter("ip"):
        address, prefix = ip.get("address"), ip.get("prefix")
        try:
            found.append(str(ipaddress.ip_interface(f"{address}/{prefix}")))
        except ValueError:
            continue  # an address without prefix, or junk: not worth failing the list
    return tuple(found)


def from_interface_xml(xml: str, active: bool) -> HostInterface:
    root = parse_xml(xml)
    name = str(root.get("name", ""))
    kind = str(root.get("type") or "ethernet")
    if name == "lo":
        kind = "loopback"
    link = root.find("link")
    state = str(link.get("state")) if link is not None and link.get("state") else ("up" if active else "down")
    mac = root.find("mac")
    return HostInterface(name=name, kind=kind, mac=str(mac.get("address", "")) if mac is not None else "",
                         state=state, speed_mbps=_speed(link), addresses=_addresses(root))


def from_node_device_xml(xml: str) -> HostInterface | None:
    root = parse_xml(xml)
    cap = root.find("capability[@type='net']")
    if cap is None:
        return None
    name = (cap.findtext("interface") or "").strip()
    path = root.findtext("path") or ""
    if name == "lo":
        kind = "loopback"
    elif "/virtual/" in path:
        kind = "virtual"  # a bridge, or a tap, dummy, veth...: node devices do not say which
    else:
        kind = "ethernet"
    link = cap.find("link")
    state = str(link.get("state")) if link is not None and link.get("state") else "unknown"
    return HostInterface(name=name, kind=kind, mac=(cap.findtext("address") or "").strip(), state=state,
                         speed_mbps=_speed(link))


def via_interface_api(conn: libvirt.virConnect) -> tuple[HostInterface, ...]:
    """listAllInterfaces, its active subset, and one XMLDesc per interface."""
    everything = conn.listAllInterfaces(0)
    active = {iface.name() for iface in conn.listAllInterfaces(libvirt.VIR_CONNECT_LIST_INTERFACES_ACTIVE)}
    found = []
    for iface in everything:
        try:
            found.append(from_interface_xml(iface.XMLDesc(0), iface.name() in active))
        except libvirt.libvirtError:
            continue  # vanished meanwhile
    return tuple(found)


def via_node_devices(conn: libvirt.virConnect) -> tuple[HostInterface, ...]:
    """listAllDevices(net) and one XMLDesc per device."""
    found = []
    for dev in conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET):
        try:
            iface = from_node_device_xml(dev.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        if iface is not None and iface.name:
            found.append(iface)
    return tuple(found)


def _sorted(interfaces: tuple[HostInterface, ...]) -> tuple[HostInterface, ...]:
    order = {"bridge": 0, "ethernet": 1, "bond": 1, "vlan": 2, "virtual": 3, "loopback": 4}
    return tuple(sorted(interfaces, key=lambda i: (order.get(i.kind, 3), i.name)))


def _why(exc: libvirt.libvirtError) -> str:
    return libvirt_message(exc)


def host_interfaces(conn: libvirt.virConnect) -> InterfaceReport:
    """The interface API where it works (it knows bridges for sure), node devices otherwise."""
    problems: list[str] = []
    try:
        listed = via_interface_api(conn)
        if listed:
            return InterfaceReport(_sorted(listed), INTERFACE_API)
        problems.append(Text(gettext_noop("the interface API lists no interfaces")))
    except libvirt.libvirtError as exc:
        problems.append(Text(gettext_noop("interface API unavailable: {error}"), error=_why(exc)))
    try:
        return InterfaceReport(_sorted(via_node_devices(conn)), NODE_DEVICES, tuple(problems))
    except libvirt.libvirtError as exc:
        problems.append(Text(gettext_noop("node devices unavailable: {error}"), error=_why(exc)))
    return InterfaceReport((), "", tuple(problems))
