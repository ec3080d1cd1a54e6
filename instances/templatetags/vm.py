"""Small formatting filters for VM pages (sizes and instants: the built-in iec, kib, when of
webkvm/templatetags/formats.py)."""

from __future__ import annotations

import re
import time

from django import template

register = template.Library()


@register.filter
def ago(epoch: float | None) -> str:
    """Seconds since an instant, as '5 s', '3 min', '2 h', '4 d'; '' when unknown."""
    if epoch is None:
        return ""
    seconds = max(0, int(time.time() - epoch))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


@register.filter
def state_class(state: str) -> str:
    return {"running": "up", "paused": "paused", "shut off": "off", "crashed": "down"}.get(state, "other")


@register.filter
def state_badge(state: str) -> str:
    """The class of a VM state's badge (`<span class="badge state-running">`), shared by the VM list, the VM
    page and the live rows (host_rows.py sends it as `state_class`): 'shut off' -> 'state-shut-off'."""
    return "state-" + ("-".join(re.findall(r"[a-z]+", state.lower())) or "no-state")
