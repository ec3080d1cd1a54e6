"""MAC addresses of a host's VMs, and new ones that clash with none of them."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

import libvirt

from virt.xml.domain import Domain

QEMU_OUI = (0x52, 0x54, 0x00)  # the prefix libvirt and QEMU use for generated MACs


def host_macs(conn: libvirt.virConnect) -> set[str]:
    """Every MAC any VM of the host has, live or in its saved definition.

    One definition read per VM (two for a running persistent one): libvirt has no bulk call that
    returns MACs, so this runs only when a NIC or a clone is made, never for a page."""
    macs: set[str] = set()
    for dom in conn.listAllDomains(0):
        try:
            docs = [dom.XMLDesc(0)]
            if dom.isActive() and dom.isPersistent():
                docs.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue  # gone since the listing: its MACs are free again
            raise
        for doc in docs:
            macs.update((nic.mac or "").lower() for nic in Domain.from_xml(doc).interfaces)
    macs.discard("")
    return macs


def fresh_macs(taken: Iterable[str], count: int) -> list[str]:
    """`count` different 52:54:00:xx:xx:xx addresses, none in `taken`."""
    used = {mac.lower() for mac in taken}
    found: list[str] = []
    while len(found) < count:
        mac = ":".join(f"{b:02x}" for b in (*QEMU_OUI, *secrets.token_bytes(3)))
        if mac not in used:
            used.add(mac)
            found.append(mac)
    return found


def random_mac(taken: Iterable[str]) -> str:
    return fresh_macs(taken, 1)[0]
