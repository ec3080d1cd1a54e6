"""Sizes and instants in templates, built into every template (settings TEMPLATES "builtins"): no {% load %}.

{{ bytes|iec }}, {{ kib|kib }} -> '2.0 GiB' (virt.xml.codecs.iec); {{ datetime|when }} -> '2026-12-02 13:51:07 UTC'
(webkvm.formats.when); {{ error|said }}: a virt message in the page's language;
<html data-time-zone="{% time_zone %}"> tells static/js/format.js the panel's zone.
"""

from __future__ import annotations

import datetime

from django import template
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from virt.xml.codecs import iec as iec_words
from webkvm import formats
from webkvm.i18n import said as said_words

register = template.Library()


def _sized(size: float) -> str:
    """virt's size words; below 1 KiB the word "bytes" is said in the page's language (the units stay)."""
    words = iec_words(size)
    number, _space, unit = words.partition(" ")
    if unit == "bytes":
        count = int(number)
        return ngettext("%(count)s byte", "%(count)s bytes", count) % {"count": count}
    return words


@register.filter
def iec(size: float | str | None) -> str:
    """Bytes: 1536 -> '1.5 KiB', 2 << 30 -> '2.0 GiB' ('' is a missing variable)."""
    return _("unknown") if size is None or size == "" else _sized(float(size))


@register.filter
def kib(size: float | str | None) -> str:
    """KiB, as libvirt gives memory: 1048576 -> '1.0 GiB', 65536 -> '64.0 MiB'."""
    return _("unknown") if size is None or size == "" else _sized(float(size) * 1024)


@register.filter
def said(message: object) -> str:
    """{{ x|said }}: a message of ours (an error, a Text or Message of the virt layer) in the page's language;
    other text as it is, nothing as nothing (webkvm.i18n.said)."""
    if message is None or message == "":
        return ""
    return said_words(message)  # type: ignore[arg-type]


@register.filter
def when(value: datetime.datetime | float | None, default: str = "") -> str:
    """An instant: '2026-12-02 13:51:07 UTC' in the panel's time zone; `default` when there is none."""
    return formats.when(value, default)


@register.simple_tag
def time_zone() -> str:
    """The panel's time zone name (TIME_ZONE), for scripts that write instants the same way."""
    return str(timezone.get_current_timezone_name())
