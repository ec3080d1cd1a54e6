"""The create-network form and the fixed-address form.

The rules live in virt.networks (spec_problems, host_problems, fixed_host_problems) so that
the panel and the libvirt layer refuse the same input; the forms only collect fields,
offer the host's own bridges and NICs as choices, and put each problem on its field.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from networks.templatetags.network_words import link_state
from virt.networks import (
    MAC_RE,
    MACVTAP_MODES,
    Addressing,
    FixedHost,
    HostNetworks,
    NetworkSpec,
    Problem,
    host_problems,
    normalise,
    spec_problems,
)
from virt.subnets import free_ipv4
from webkvm.i18n import said

MODE_CHOICES = [
    ("nat", gettext_lazy("NAT: guests reach out through the host's address")),
    ("route", gettext_lazy("Routed: guests' subnet routed through the host, no NAT")),
    ("open", gettext_lazy("Open: routed, and libvirt adds no firewall rules")),
    ("isolated", gettext_lazy("Isolated: guests and host only")),
    ("bridge", gettext_lazy("Bridged: guests join a host bridge's LAN")),
    ("macvtap", gettext_lazy("macvtap: guests share a host NIC directly")),
]
MACVTAP_CHOICES = [
    ("bridge", gettext_lazy("bridge: guests see each other and the LAN (not the host)")),
    ("private", gettext_lazy("private: guests see only the LAN")),
    ("vepa", gettext_lazy("vepa: all traffic goes through the external switch")),
    ("passthrough", gettext_lazy("passthrough: one guest owns the NIC")),
]
assert [c for c, _ in MACVTAP_CHOICES] == list(MACVTAP_MODES)

def parse_hosts(text: str) -> tuple[list[FixedHost], list[str]]:
    """Lines of 'MAC IP [name]' (IPv4) or 'IP name' (IPv6), in any order; errors name the line."""
    hosts, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.replace(",", " ").split()
        if not tokens:
            continue
        mac = ip = name = ""
        for token in tokens:
            lowered = token.lower()
            if MAC_RE.match(lowered) and not mac:
                mac = lowered
                continue
            try:
                ipaddress.ip_address(token)
            except ValueError:
                if not name:
                    name = token
                    continue
                errors.append(_("Line %(number)s: %(token)s is neither a MAC address nor an IP address.")
                              % {"number": number, "token": repr(token)})
                break
            else:
                if ip:
                    errors.append(_("Line %(number)s: one IP address per line.") % {"number": number})
                    break
                ip = token
        else:
            if not ip:
                errors.append(_("Line %(number)s: no IP address (write 'MAC IP [name]' or 'IP name').")
                              % {"number": number})
            else:
                hosts.append(FixedHost(ip=ip, mac=mac, name=name))
    return hosts, errors


class NetworkForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=50,
                           help_text=gettext_lazy("Letters, digits, '.', '-' and '_'."))
    mode = forms.ChoiceField(label=gettext_lazy("Type"), choices=MODE_CHOICES, initial="nat")
    bridge_name = forms.CharField(label=gettext_lazy("Bridge name"), required=False, max_length=15,
                                  help_text=gettext_lazy("The bridge libvirt makes for this network; blank: virbrN."))
    forward_dev = forms.CharField(label=gettext_lazy("Outgoing interface"), required=False)
    host_bridge = forms.CharField(label=gettext_lazy("Host bridge"), required=False)
    nic = forms.CharField(label=gettext_lazy("Host NIC"), required=False)
    macvtap_mode = forms.ChoiceField(label=gettext_lazy("macvtap mode"), choices=MACVTAP_CHOICES, initial="bridge")
    ipv4_address = forms.CharField(label=gettext_lazy("IPv4 address/prefix"), required=False,
                                   help_text=gettext_lazy("The host's address on the network, e.g. 10.213.1.1/24."))
    ipv4_dhcp_start = forms.CharField(label=gettext_lazy("IPv4 DHCP range from"), required=False)
    ipv4_dhcp_end = forms.CharField(label=gettext_lazy("IPv4 DHCP range to"), required=False)
    ipv6_address = forms.CharField(label=gettext_lazy("IPv6 address/prefix"), required=False,
                                   help_text=gettext_lazy("Optional, e.g. fd00:213:1::1/64."))
    ipv6_dhcp_start = forms.CharField(label=gettext_lazy("IPv6 DHCP range from"), required=False)
    ipv6_dhcp_end = forms.CharField(label=gettext_lazy("IPv6 DHCP range to"), required=False)
    hosts = forms.CharField(label=gettext_lazy("Fixed addresses"), required=False,
                            widget=forms.Textarea(attrs={"rows": 4}),
                            help_text=gettext_lazy("One per line: 'MAC IP [name]' for IPv4, 'IP name' for IPv6."))
    domain = forms.CharField(label=gettext_lazy("DNS domain"), required=False, max_length=253,
                             help_text=gettext_lazy("Guests' names resolve as NAME.DOMAIN on this network."))
    autostart = forms.BooleanField(label=gettext_lazy("Start when the host boots"), required=False)
    start = forms.BooleanField(label=gettext_lazy("Start it now"), required=False, initial=True)

    def __init__(self, facts: HostNetworks, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.facts = facts
        taken = {n.bridge for n in facts.networks if n.bridge}
        bridges = [b for b in facts.interfaces.bridges if b.name not in taken]
        nics = list(facts.interfaces.nics)
        # A select of what the host reports; free text only when it reports nothing.
        if bridges:
            self.fields["host_bridge"] = forms.ChoiceField(
                label=gettext_lazy("Host bridge"), required=False,
                choices=[("", "-"), *((b.name, _describe(b.name, b.mac, b.state)) for b in bridges)])
        else:
            self.fields["host_bridge"].help_text = _("This host reports no bridges: type the bridge's name.")
        if nics:
            choices = [(n.name, _describe(n.name, n.mac, n.state)) for n in nics]
            self.fields["nic"] = forms.ChoiceField(label=gettext_lazy("Host NIC"), required=False,
                                                   choices=[("", "-"), *choices])
            self.fields["forward_dev"] = forms.ChoiceField(
                label=gettext_lazy("Outgoing interface"), required=False,
                choices=[("", _("any (the host's routes decide)")), *choices])
        else:
            self.fields["nic"].help_text = _("This host reports no NICs: type the interface's name.")
            self.fields["forward_dev"].help_text = _("Optional; blank lets the host's routes decide.")
        self._hosts: list[FixedHost] = []
        if not self.is_bound:  # a free subnet to start from: one the host does not use yet
            free = free_ipv4(facts)
            if free is not None:
                self.initial.setdefault("ipv4_address", free.address)
                self.initial.setdefault("ipv4_dhcp_start", free.dhcp_start)
                self.initial.setdefault("ipv4_dhcp_end", free.dhcp_end)
                self.fields["ipv4_address"].help_text = _("A private subnet none of this host's networks and "
                                                          "interfaces uses; the host's address on it is .1.")

    def sections(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """(title, modes it applies to, fields) for the template, in page order."""
        return [
            (_("Network"), "", [self["name"], self["mode"]]),
            (_("Host bridge"), "bridge", [self["host_bridge"]]),
            (_("Host NIC"), "macvtap", [self["nic"], self["macvtap_mode"]]),
            (_("Bridge and forwarding"), "nat route open isolated", [self["bridge_name"], self["forward_dev"]]),
            ("IPv4", "nat route open isolated", [self["ipv4_address"], self["ipv4_dhcp_start"],
                                                 self["ipv4_dhcp_end"]]),
            ("IPv6", "nat route open isolated", [self["ipv6_address"], self["ipv6_dhcp_start"],
                                                 self["ipv6_dhcp_end"]]),
            (_("Fixed addresses and DNS"), "nat route open isolated", [self["hosts"], self["domain"]]),
            (_("Start"), "", [self["autostart"], self["start"]]),
        ]

    def clean_hosts(self) -> str:
        text: str = self.cleaned_data.get("hosts") or ""
        self._hosts, errors = parse_hosts(text)
        if errors:
            raise forms.ValidationError(errors)
        return text

    def _addressing(self, data: dict[str, Any], family: str) -> Addressing | None:
        address = (data.get(f"{family}_address") or "").strip()
        start, end = (data.get(f"{family}_dhcp_start") or "").strip(), (data.get(f"{family}_dhcp_end") or "").strip()
        if not address:
            if start or end:
                self.add_error(f"{family}_address", _("Give the subnet the DHCP range belongs to."))
            return None
        return Addressing(address, start, end)

    def to_spec(self) -> NetworkSpec:
        data = self.cleaned_data
        mode = data.get("mode") or ""
        routed = mode in ("nat", "route", "open", "isolated")
        return normalise(NetworkSpec(
            name=data.get("name") or "",
            mode=mode,
            bridge=(data.get("bridge_name") if routed else data.get("host_bridge") if mode == "bridge" else "") or "",
            dev=(data.get("forward_dev") if routed else data.get("nic") if mode == "macvtap" else "") or "",
            macvtap_mode=data.get("macvtap_mode") or "bridge",
            ipv4=self._addressing(data, "ipv4") if routed else None,
            ipv6=self._addressing(data, "ipv6") if routed else None,
            hosts=tuple(self._hosts) if routed else (),
            domain=(data.get("domain") or "") if routed else "",
        ))

    def field_for(self, problem: Problem, mode: str) -> str | None:
        """The form field a virt-layer problem belongs to (None: the form as a whole)."""
        if problem.field == "bridge":
            return "host_bridge" if mode == "bridge" else "bridge_name"
        if problem.field == "dev":
            return "nic" if mode == "macvtap" else "forward_dev"
        return problem.field if problem.field in self.fields else None

    def add_problems(self, problems: list[Problem], mode: str) -> None:
        seen = set()
        for problem in problems:
            name = self.field_for(problem, mode)
            if (name, problem.message) not in seen:
                seen.add((name, problem.message))
                self.add_error(name, said(problem.message))

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if "mode" in self.errors:
            return data
        already = set(self.errors)  # a field's own error says enough about it
        spec = self.to_spec()
        problems = spec_problems(spec) + host_problems(spec, self.facts)
        self.add_problems([p for p in problems if self.field_for(p, spec.mode) not in already], spec.mode)
        return data


def _describe(name: str, mac: str, state: str) -> str:
    """A host bridge or NIC as its choice reads: name (MAC, link state in the reader's language)."""
    return f"{name} ({', '.join(part for part in (mac, link_state(state)) if part)})" if mac or state else name


class FixedHostForm(forms.Form):
    mac = forms.CharField(label="MAC", required=False, max_length=17,
                          help_text=gettext_lazy("IPv4 only, e.g. 52:54:00:12:34:56."))
    ip = forms.CharField(label=gettext_lazy("IP address"), max_length=45)
    name = forms.CharField(label=gettext_lazy("Host name"), required=False, max_length=63,
                           help_text=gettext_lazy("Required for IPv6."))

    def to_host(self) -> FixedHost:
        data = self.cleaned_data
        return FixedHost(ip=data["ip"].strip(), mac=(data.get("mac") or "").strip().lower(),
                         name=(data.get("name") or "").strip())
