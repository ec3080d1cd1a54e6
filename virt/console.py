"""Where a VM's VNC server listens, read from its live definition (never from the client)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import libvirt

from virt.errors import Said, gettext_noop
from virt.xml.domain import Domain

ANY_ADDRESSES = ("", "0.0.0.0", "::")  # noqa: S104  (we read it, never bind: all addresses include loopback)


@dataclass(frozen=True)
class VncDisplay:
    """The first VNC display of a running VM."""

    vm_name: str
    port: int
    listen: str  # an IP address, or "" for all addresses
    has_password: bool

    @property
    def on_loopback(self) -> bool:
        return self.listen in ANY_ADDRESSES or ipaddress.ip_address(self.listen).is_loopback

    def address_on_host(self) -> str:
        """The address to reach it from the hypervisor itself."""
        return "127.0.0.1" if self.listen in ANY_ADDRESSES else self.listen


class NoDisplay(Said, Exception):
    """The VM has no VNC display the console can use; str() says why, in a sysadmin's words (a template of
    ours with its parameters: webkvm.i18n.said shows it translated)."""

    def __init__(self, message: str, /, **params: object) -> None:
        super().__init__(self._say(message, params))


def vnc_display(dom: libvirt.virDomain) -> VncDisplay:
    """The VM's VNC display as the hypervisor runs it now, or NoDisplay."""
    name = str(dom.name())
    if not dom.isActive():
        raise NoDisplay(gettext_noop("{name} is not running: start it to see its screen."), name=name)
    # SECURE: without it libvirt hides the passwd attribute, and a password-protected display
    # would look open.
    xml = Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
    vnc = next((g for g in xml.graphics if g.type == "vnc"), None)
    if vnc is None:
        raise NoDisplay(gettext_noop("{name} has no VNC display (the console needs <graphics type='vnc'>)."), name=name)
    if vnc.port is None or vnc.port <= 0:
        raise NoDisplay(gettext_noop("{name} has a VNC display without a TCP port (a unix socket or none): "
                                     "the console supports TCP displays only."), name=name)
    if vnc.port > 65535:
        raise NoDisplay(gettext_noop("{name} reports VNC port {port}, which is not a TCP port."), name=name,
                        port=vnc.port)
    listen = (vnc.listen or "").strip()
    if listen not in ANY_ADDRESSES:
        try:
            listen = str(ipaddress.ip_address(listen.strip("[]")))
        except ValueError:
            raise NoDisplay(gettext_noop("{name}'s VNC display listens on {listen}, which is not an IP address."),
                            name=name, listen=repr(listen)) from None
    return VncDisplay(vm_name=name, port=vnc.port, listen=listen, has_password=bool(vnc.passwd))
