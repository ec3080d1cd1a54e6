"""Network interfaces of an existing VM: add, remove, change source, link up/down.

A NIC is found by its MAC address, which is how libvirt itself tells NICs apart. Changes
reach the running VM where QEMU allows it and the saved definition always.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from virt.create import NIC_MODELS
from virt.devices import CONFIG, LIVE, Definitions, FieldProblem, definitions, device_xml, still_live, update_each
from virt.errors import BadValue, InvalidInput, Term, Text, gettext_noop, said_as
from virt.macs import host_macs, random_mac
from virt.xml.domain import Domain, Interface

SOURCE_KINDS = ("network", "bridge")
_KIND_WORDS = {"network": Term(gettext_noop("network")), "bridge": Term(gettext_noop("bridge"))}
_MAC_RE = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")
# libvirt network and host interface names: no '/', no spaces, no markup.
_SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,254}$")


@dataclass(frozen=True)
class NewNIC:
    kind: str  # network or bridge
    source: str  # the network's or the bridge's name
    model: str = "virtio"
    mac: str = ""  # empty: generated


@dataclass(frozen=True)
class NicRow:
    mac: str
    kind: str
    source: str
    model: str
    link: str  # up, down
    placement: str


# ---- input rules --------------------------------------------------------------------------


def normalise_mac(text: str) -> str:
    """'52-54-00-AB-CD-EF' or '52:54:00:ab:cd:ef' -> '52:54:00:ab:cd:ef'; refuses what no NIC can have."""
    mac = text.strip().lower().replace("-", ":")
    if not _MAC_RE.match(mac):
        raise BadValue(gettext_noop("A MAC address is six pairs of hex digits, e.g. 52:54:00:12:34:56."))
    first = int(mac[:2], 16)
    if first & 1:
        raise BadValue(gettext_noop("This is a multicast address: the first byte of a NIC's MAC must be even."))
    if mac == "00:00:00:00:00:00":
        raise BadValue(gettext_noop("00:00:00:00:00:00 is not a usable MAC address."))
    return mac


def check_source(kind: str, name: str) -> None:
    if kind not in SOURCE_KINDS:
        raise FieldProblem("source", gettext_noop("Choose a virtual network or a host bridge."))
    if not _SOURCE_NAME_RE.match(name):
        if kind == "network":
            raise FieldProblem("source", gettext_noop("Not a valid network name."))
        raise FieldProblem("source", gettext_noop("Not a valid bridge name."))


# ---- device XML (pure: golden-tested) -------------------------------------------------------


def nic_element(nic: NewNIC, mac: str) -> Interface:
    iface = Interface.new(mac=mac, model=nic.model)
    iface.set_source(nic.kind, nic.source)
    return iface


def set_link(iface: Interface, up: bool) -> None:
    iface.link_state = "up" if up else "down"


def _finder(mac: str) -> Callable[[Domain], Interface | None]:
    def find(doc: Domain) -> Interface | None:
        return next((i for i in doc.interfaces if (i.mac or "").lower() == mac), None)

    return find


# ---- reading -------------------------------------------------------------------------------


def nic_rows(defs: Definitions) -> list[NicRow]:
    rows: dict[str, NicRow] = {}
    for doc in (defs.saved, defs.live):
        for iface in doc.interfaces if doc is not None else []:
            mac = (iface.mac or "").lower()
            if not mac or mac in rows:
                continue
            find = _finder(mac)
            in_live = defs.live is not None and find(defs.live) is not None
            in_saved = defs.saved is not None and find(defs.saved) is not None
            rows[mac] = NicRow(mac=mac, kind=iface.type or "", source=iface.source_network or iface.source_bridge or "",
                               model=iface.model or "", link=iface.link_state or "up",
                               placement=defs.placement(in_live, in_saved))
    return list(rows.values())


def _known(defs: Definitions, mac: str) -> Callable[[Domain], Interface | None]:
    find = _finder(mac)
    if not any(find(doc) for doc in (defs.live, defs.saved) if doc is not None):
        raise InvalidInput(gettext_noop("{name} has no network interface with MAC {mac}."), name=defs.name, mac=mac)
    return find


def _mac(text: str) -> str:
    try:
        return normalise_mac(text)
    except ValueError as exc:
        raise said_as(InvalidInput, exc if isinstance(exc, BadValue) else str(exc)) from None


# ---- changes -------------------------------------------------------------------------------


def add_nic(dom: libvirt.virDomain, nic: NewNIC) -> str:
    """Add a NIC: plugged into a running VM at once, and into its saved definition."""
    check_source(nic.kind, nic.source)
    if nic.model not in NIC_MODELS:
        raise FieldProblem("model", gettext_noop("Model: one of {models}."), models=", ".join(NIC_MODELS))
    defs = definitions(dom)
    taken = host_macs(dom.connect())  # live and saved: a NIC may wait in either for the next boot
    if nic.mac:
        try:
            mac = normalise_mac(nic.mac)
        except ValueError as exc:
            raise FieldProblem.of("mac", exc) from None
        if mac in taken:
            raise FieldProblem("mac", gettext_noop("{mac} is already used by a VM on this host."), mac=mac)
    else:
        mac = random_mac(taken)
    flags = (LIVE if defs.running else 0) | (CONFIG if defs.saved is not None else 0)
    dom.attachDeviceFlags(nic_element(nic, mac).to_xml(), flags)
    if nic.kind == "network":
        return Text(gettext_noop("Network interface {mac} ({model}) on network {source} added."), mac=mac,
                    model=nic.model, source=nic.source)
    return Text(gettext_noop("Network interface {mac} ({model}) on bridge {source} added."), mac=mac,
                model=nic.model, source=nic.source)


def remove_nic(dom: libvirt.virDomain, mac_text: str) -> str:
    mac = _mac(mac_text)
    defs = definitions(dom)
    find = _known(defs, mac)
    in_live = defs.live is not None and find(defs.live) is not None
    in_saved = defs.saved is not None and find(defs.saved) is not None
    doc = defs.saved if in_saved else defs.live
    element = find(doc) if doc is not None else None
    assert element is not None
    dom.detachDeviceFlags(device_xml(element), (LIVE if in_live else 0) | (CONFIG if in_saved else 0))
    if in_live and still_live(dom, find):
        return Text(gettext_noop("Network interface {mac} is removed from the saved definition; the guest has not "
                                 "released it yet, so the running VM keeps it until the guest lets go or the VM is "
                                 "shut off."), mac=mac)
    return Text(gettext_noop("Network interface {mac} removed."), mac=mac)


def change_source(dom: libvirt.virDomain, mac_text: str, kind: str, name: str) -> str:
    """Move a NIC to another network or bridge (live where QEMU allows it, and in the saved definition)."""
    mac = _mac(mac_text)
    check_source(kind, name)
    defs = definitions(dom)
    live, _saved = update_each(dom, defs, _known(defs, mac), lambda iface: iface.set_source(kind, name))
    if live and defs.saved is not None:
        return Text(gettext_noop("Network interface {mac} moved to {kind} {name} (now and from the next boot)."),
                    mac=mac, kind=_KIND_WORDS.get(kind, kind), name=name)
    return Text(gettext_noop("Network interface {mac} moved to {kind} {name}."), mac=mac,
                kind=_KIND_WORDS.get(kind, kind), name=name)


def set_link_state(dom: libvirt.virDomain, mac_text: str, up: bool) -> str:
    mac = _mac(mac_text)
    defs = definitions(dom)
    update_each(dom, defs, _known(defs, mac), lambda iface: set_link(iface, up))
    if up:
        return Text(gettext_noop("Link of {mac} is up."), mac=mac)
    return Text(gettext_noop("Link of {mac} is down."), mac=mac)
