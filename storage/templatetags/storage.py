"""Template helpers of the storage pages: names a URL can carry, shares of a whole (sizes: the built-in
`iec` filter of webkvm/templatetags/formats.py), and the virt layer's words in the reader's language."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext

from virt.volumes import VolumeInfo

register = template.Library()


@register.filter
def linkable(name: str) -> bool:
    """libvirt may report names our URLs cannot carry (with '/', or '.' / '..' which browsers fold)."""
    return bool(name) and "/" not in name and name not in (".", "..")


@register.filter
def percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0



@register.filter
def pool_state(pool: Any) -> str:
    """A pool's state (active, inactive) in the reader's language."""
    return pgettext("pool state", "active") if pool.active else pgettext("pool state", "inactive")


@register.filter
def uses(volume: VolumeInfo) -> str:
    """What uses a volume, in the reader's language: "VM web-01 and the volume b.qcow2 (as backing file)"."""
    parts = []
    if volume.used_by:
        parts.append(ngettext("VM %(names)s", "VMs %(names)s", len(volume.used_by))
                     % {"names": ", ".join(volume.used_by)})
    if volume.backing_for:
        parts.append(ngettext("the volume %(names)s (as backing file)", "the volumes %(names)s (as backing file)",
                              len(volume.backing_for)) % {"names": ", ".join(volume.backing_for)})
    if len(parts) == 2:
        return _("%(first)s and %(second)s") % {"first": parts[0], "second": parts[1]}
    return parts[0] if parts else ""
