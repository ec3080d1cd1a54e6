"""Small formatting filters for VM pages (sizes and instants: the built-in iec, kib, when of
webkvm/templatetags/formats.py), and the one translated label of each libvirt state."""

from __future__ import annotations

import re
import time

from django import template
from django.utils.translation import gettext, gettext_lazy

register = template.Library()

# The states as the pages show them, translated; the data (rows, JSON, filters, tests) keeps the English keys
# (virt/domains.py STATE_NAMES), so only what is shown goes through here.
STATE_LABELS = {
    "running": gettext_lazy("running"),
    "paused": gettext_lazy("paused"),
    "shutting down": gettext_lazy("shutting down"),
    "shut off": gettext_lazy("shut off"),
    "crashed": gettext_lazy("crashed"),
    "suspended (guest)": gettext_lazy("suspended (guest)"),
    "pmsuspended": gettext_lazy("suspended (guest)"),
    "blocked": gettext_lazy("blocked"),
    "no state": gettext_lazy("no state"),
    "unknown": gettext_lazy("unknown"),
}


@register.filter
def state_label(state: str) -> str:
    """A VM state ('shut off') in the page's language ('已关机'); an unknown one as it is."""
    label = STATE_LABELS.get(str(state))
    return str(label) if label is not None else str(state)



def duration(seconds: int) -> str:
    """'3 d', '2 h', '5 min', '10 s', in the active language."""
    for size, unit in ((86400, gettext("{n} d")), (3600, gettext("{n} h")), (60, gettext("{n} min"))):
        if seconds >= size:
            return unit.format(n=seconds // size)
    return gettext("{n} s").format(n=seconds)


@register.filter
def ago(epoch: float | None) -> str:
    """Seconds since an instant, as '5 s', '3 min', '2 h', '4 d'; '' when unknown."""
    if epoch is None:
        return ""
    return duration(max(0, int(time.time() - epoch)))


@register.filter
def state_class(state: str) -> str:
    return {"running": "up", "paused": "paused", "shut off": "off", "crashed": "down"}.get(state, "other")


@register.filter
def state_badge(state: str) -> str:
    """The class of a VM state's badge (`<span class="badge state-running">`), shared by the VM list, the VM
    page and the live rows (host_rows.py sends it as `state_class`): 'shut off' -> 'state-shut-off'."""
    return "state-" + ("-".join(re.findall(r"[a-z]+", state.lower())) or "no-state")
