"""VNC settings of one VM: password, keymap and listen address.

The password lives only in libvirt's definition. It is read with VIR_DOMAIN_XML_SECURE (without
it libvirt leaves the attribute out, and redefining would silently drop it) and never leaves this
module except as "a password is set". Every change goes to the persistent definition; on a running
VM a new or removed password is also applied live (updateDeviceFlags), while keymap and listen
address wait for the next boot: qemu cannot change them on a running display.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field

import libvirt

from virt.errors import InvalidInput, InvalidState, Text, gettext_noop, translate
from virt.xml.domain import Domain, Graphics

SECURE_CONFIG = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
DEFAULT_LISTEN = "127.0.0.1"
EVERY_ADDRESS = frozenset({"0.0.0.0", "::"})  # noqa: S104 (named so that we can warn about it)
MAX_PASSWORD = 8  # the VNC challenge uses the first 8 characters only: longer ones would mislead
# qemu's keyboard layouts (share/qemu/keymaps); "" leaves the choice to qemu (en-us).
KEYMAPS = ("ar", "bepo", "cz", "da", "de", "de-ch", "en-gb", "en-us", "es", "et", "fi", "fo", "fr", "fr-be",
           "fr-ca", "fr-ch", "hr", "hu", "is", "it", "ja", "lt", "lv", "mk", "nl", "no", "pl", "pt", "pt-br",
           "ru", "sl", "sv", "th", "tr")
EXPOSED_WARNING = Text(gettext_noop("VNC listens on every address of the host: anybody who can reach the host can "
                                    "reach the VM's screen without the panel's console tickets. Prefer 127.0.0.1."))


@dataclass(frozen=True)
class VncChange:
    """What the form asks for. password: None keeps it, "" removes it, anything else replaces it."""

    password: str | None
    keymap: str  # "" for qemu's default
    listen: str


@dataclass(frozen=True)
class VncSettings:
    """What the page shows: never the password itself."""

    present: bool
    has_password: bool = False
    keymap: str = ""
    listen: str = ""
    running: bool = False
    pending: tuple[str, ...] = ()  # settings whose live value differs from the saved one

    @property
    def exposed(self) -> bool:
        return self.listen in EVERY_ADDRESS


@dataclass
class VncReport:
    live: list[str] = field(default_factory=list)
    next_boot: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate_password(value: str) -> str:
    if not 1 <= len(value) <= MAX_PASSWORD:
        raise InvalidInput(gettext_noop("A VNC password has 1 to {most} characters."), most=MAX_PASSWORD)
    if any(not " " <= ch <= "~" for ch in value):
        raise InvalidInput(gettext_noop("A VNC password uses printable ASCII characters only."))
    return value


def validate_listen(value: str) -> str:
    """An IP address literal (no host names: they could resolve to anything), normalised."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise InvalidInput(gettext_noop("Give an IP address such as 127.0.0.1.")) from None


def validate_keymap(value: str) -> str:
    if value and value not in KEYMAPS:
        raise InvalidInput(gettext_noop("Unknown keymap."))
    return value


def first_vnc(dom: Domain) -> Graphics | None:
    return next((g for g in dom.graphics if g.type == "vnc"), None)


def apply_vnc(vnc: Graphics, change: VncChange) -> None:
    """Edit one <graphics type='vnc'> element; everything else in it is kept."""
    if change.password is not None:
        vnc.passwd = change.password or None
        # An old expiry would make a new long-lived password expire at once.
        vnc.element.attrib.pop("passwdValidTo", "")
    vnc.keymap = change.keymap or None
    if vnc.listen != change.listen:
        # A socket or network listener is replaced by the address asked for (VNC has one listener).
        for other in vnc.element.findall("listen"):
            if other.get("type") != "address":
                vnc.element.remove(other)
        vnc.listen = change.listen


def _settings_of(vnc: Graphics) -> tuple[bool, str, str]:
    return bool(vnc.passwd), vnc.keymap or "", vnc.listen or ""


def read_settings(dom: libvirt.virDomain) -> VncSettings:
    config = first_vnc(Domain.from_xml(dom.XMLDesc(SECURE_CONFIG)))
    if config is None:
        return VncSettings(present=False)
    saved = _settings_of(config)
    pending: list[str] = []
    running = bool(dom.isActive())
    if running:
        live_vnc = first_vnc(Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)))
        live = _settings_of(live_vnc) if live_vnc else (False, "", "")
        pending = [what for what, now, later in zip(("password", "keymap", "listen address"), live, saved, strict=True)
                   if now != later]
        if saved[0] and live[0] and live_vnc and config.passwd != live_vnc.passwd:
            pending.append("password")
    return VncSettings(present=True, has_password=saved[0], keymap=saved[1], listen=saved[2], running=running,
                       pending=tuple(dict.fromkeys(pending)))


def update(dom: libvirt.virDomain, change: VncChange) -> VncReport:
    """Save the change in the persistent definition, then apply what qemu can change live."""
    if change.password:
        validate_password(change.password)
    validate_keymap(change.keymap)
    listen = validate_listen(change.listen)
    change = VncChange(change.password, change.keymap, listen)
    if not dom.isPersistent():
        raise InvalidState(gettext_noop("{name} is transient: it has no saved definition to change."), name=dom.name())
    config = Domain.from_xml(dom.XMLDesc(SECURE_CONFIG))
    vnc = first_vnc(config)
    if vnc is None:
        raise InvalidState(gettext_noop("{name} has no VNC display."), name=dom.name())
    apply_vnc(vnc, change)
    dom.connect().defineXMLFlags(config.to_xml(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)

    report = VncReport()
    if listen in EVERY_ADDRESS:
        report.warnings.append(EXPOSED_WARNING)
    if not dom.isActive():
        return report
    live_vnc = first_vnc(Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)))
    if live_vnc is None:
        report.next_boot.append(Text(gettext_noop("the VNC display")))
        return report
    if change.password is not None and (live_vnc.passwd or "") != change.password:
        # Send the live element back unchanged but for the password: qemu refuses other changes.
        wanted = Graphics(copy.deepcopy(live_vnc.element))
        wanted.passwd = change.password or None
        wanted.element.attrib.pop("passwdValidTo", "")
        try:
            dom.updateDeviceFlags(wanted.to_xml(), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            report.live.append(Text(gettext_noop("password")))
        except libvirt.libvirtError as exc:
            report.next_boot.append(Text(gettext_noop("password ({error})"), error=translate(exc)))
    if (live_vnc.keymap or "") != change.keymap:
        report.next_boot.append(Text(gettext_noop("keymap")))
    if (live_vnc.listen or "") != listen:
        report.next_boot.append(Text(gettext_noop("listen address")))
    return report
