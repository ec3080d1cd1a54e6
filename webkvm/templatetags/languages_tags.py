"""{% html_lang %}: the <html lang> tag of the active language, for pages drawn without the panel's context
(403, 404, 500: Django renders them without context processors)."""

from __future__ import annotations

from django import template

from webkvm import languages

register = template.Library()


@register.simple_tag
def html_lang() -> str:
    return languages.html_tag()
