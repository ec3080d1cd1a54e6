"""Host names the panel's own addresses take: /hosts/new/ or /storage/images/ sit where /hosts/<name>/ and
/storage/<host>/ would, so a host named "new" or "images" could never be reached. Read from the URL patterns
themselves, so a new page's word is reserved the day the page exists."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

HOST_SLOTS = ("<slug:host>", "<slug:name>", "<str:host>")
SLUG = re.compile(r"[-a-zA-Z0-9_]+")


@cache
def route_words() -> frozenset[str]:
    from django.urls import URLResolver, get_resolver

    words: set[str] = set()

    def walk(patterns: list[Any]) -> None:
        routes = [str(p.pattern) for p in patterns]
        if any(route.startswith(HOST_SLOTS) for route in routes):
            firsts = (route.split("/")[0] for route in routes if not route.startswith("<"))
            words.update(first for first in firsts if SLUG.fullmatch(first))  # "rows.json" is no slug: no clash
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns)

    walk(get_resolver().url_patterns)
    return frozenset(words)


def not_a_route_word(name: str) -> None:
    """The model field's validator: a host name that one of the panel's pages already takes is refused."""
    if name in route_words():
        raise ValidationError(_("“%(name)s” is the name of one of the panel's own pages: choose another name.")
                              % {"name": name}, code="reserved")
