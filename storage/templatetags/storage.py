"""Template helpers of the storage pages: names a URL can carry, shares of a whole (sizes: the built-in
`iec` filter of webkvm/templatetags/formats.py)."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def linkable(name: str) -> bool:
    """libvirt may report names our URLs cannot carry (with '/', or '.' / '..' which browsers fold)."""
    return bool(name) and "/" not in name and name not in (".", "..")


@register.filter
def percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0
