"""Template helpers of the storage pages: sizes in binary units, and names a URL can carry."""

from __future__ import annotations

from django import template

register = template.Library()
_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


@register.filter
def iec(size: int | None) -> str:
    """1536 -> '1.5 KiB': the same units the size fields take."""
    if size is None:
        return "-"
    value, unit = float(size), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} bytes" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


@register.filter
def linkable(name: str) -> bool:
    """libvirt may report names our URLs cannot carry (with '/', or '.' / '..' which browsers fold)."""
    return bool(name) and "/" not in name and name not in (".", "..")


@register.filter
def percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0
