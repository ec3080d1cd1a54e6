"""Words the network pages show of what libvirt reports (a network's type, an interface's kind and state), in
the reader's language (in English as libvirt names them); a value the panel does not know is shown as it is."""

from __future__ import annotations

from django import template
from django.utils.translation import pgettext_lazy

register = template.Library()

MODES = {
    "nat": pgettext_lazy("network type", "nat"),
    "route": pgettext_lazy("network type", "route"),
    "open": pgettext_lazy("network type", "open"),
    "isolated": pgettext_lazy("network type", "isolated"),
    "bridge": pgettext_lazy("network type", "bridge"),
    "macvtap": pgettext_lazy("network type", "macvtap"),
}
MACVTAP_MODES = {
    "bridge": pgettext_lazy("macvtap mode", "bridge"),
    "private": pgettext_lazy("macvtap mode", "private"),
    "vepa": pgettext_lazy("macvtap mode", "vepa"),
    "passthrough": pgettext_lazy("macvtap mode", "passthrough"),
}
KINDS = {
    "bridge": pgettext_lazy("interface kind", "bridge"),
    "ethernet": pgettext_lazy("interface kind", "ethernet"),
    "bond": pgettext_lazy("interface kind", "bond"),
    "vlan": pgettext_lazy("interface kind", "vlan"),
    "virtual": pgettext_lazy("interface kind", "virtual"),
    "loopback": pgettext_lazy("interface kind", "loopback"),
}
STATES = {
    "up": pgettext_lazy("link state", "up"),
    "down": pgettext_lazy("link state", "down"),
    "unknown": pgettext_lazy("link state", "unknown"),
    "lowerlayerdown": pgettext_lazy("link state", "lowerlayerdown"),
    "dormant": pgettext_lazy("link state", "dormant"),
    "notpresent": pgettext_lazy("link state", "notpresent"),
    "testing": pgettext_lazy("link state", "testing"),
}


@register.filter
def network_mode(value: str) -> str:
    return str(MODES.get(value, value))


@register.filter
def macvtap_mode(value: str) -> str:
    return str(MACVTAP_MODES.get(value, value))


@register.filter
def interface_kind(value: str) -> str:
    return str(KINDS.get(value, value))


@register.filter
def link_state(value: str) -> str:
    return str(STATES.get(value, value))

