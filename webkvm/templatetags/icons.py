"""`{% icon "play" %}`: an icon of Lucide (npm package lucide-static), inlined as SVG.

Inline SVG needs no extra request and no inline style, so the Content-Security-Policy stays as it is;
the icon takes the text colour (stroke="currentColor") and is hidden from screen readers, since the
text beside it says what it means. Each file is read from the installed package (settings.WEBKVM_ICONS_DIR)
once per process and kept.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from django import template
from django.conf import settings
from django.utils.safestring import SafeString, mark_safe
from lxml import etree

from virt.xml.parser import parse_xml

register = template.Library()

_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_SIZE = "16"  # the stylesheet's .icon sizes them; these attributes only matter without it


class UnknownIcon(LookupError):
    """A template names an icon the installed set does not have (tests/unit/test_icons.py finds these)."""


@lru_cache(maxsize=256)
def icon_svg(name: str, css_class: str = "") -> SafeString:
    """The SVG markup of one icon, with class "icon" (and `css_class`) and aria-hidden."""
    if not _NAME.fullmatch(name):  # a file name, never a path
        raise UnknownIcon(f"not an icon name: {name!r}")
    try:
        root = parse_xml((Path(settings.WEBKVM_ICONS_DIR) / f"{name}.svg").read_bytes())
    except FileNotFoundError:
        raise UnknownIcon(f"no icon {name!r} in lucide-static (is `npm ci` done?)") from None
    root.set("class", f"icon {css_class}".strip())
    root.set("width", _SIZE)
    root.set("height", _SIZE)
    root.set("aria-hidden", "true")
    root.set("focusable", "false")
    etree.strip_elements(root, etree.Comment, with_tail=False)  # (the licence comment sits before <svg>)
    for element in root.iter():  # drop the file's indentation: icons sit inside text and buttons
        element.text = element.text.strip() or None if element.text else None
        element.tail = None
    return mark_safe(etree.tostring(root, encoding="unicode"))  # noqa: S308  (a file of the installed package, re-serialised by lxml)


@register.simple_tag
def icon(name: str, css_class: str = "") -> SafeString:
    """`{% icon "play" %}` or `{% icon "trash-2" "danger-text" %}`: the named icon, inline."""
    return icon_svg(name, css_class)
