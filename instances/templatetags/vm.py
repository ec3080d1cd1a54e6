"""Small formatting filters for VM pages."""

from __future__ import annotations

import time

from django import template

register = template.Library()


@register.filter
def kib(value: int | None) -> str:
    """1048576 -> '1 GiB', 65536 -> '64 MiB'."""
    if value is None:
        return "unknown"
    mib = value / 1024
    if mib >= 1024:
        return f"{mib / 1024:.3g} GiB"
    return f"{mib:.4g} MiB"


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
