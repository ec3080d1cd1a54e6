"""The audit page's words for the stored codes: {{ e.action|action_words }}, {{ e.object_type|object_type_words }},
{{ e.result|result_words }} (webkvm/audit.py holds the one mapping)."""

from __future__ import annotations

from django import template

from webkvm import audit

register = template.Library()


@register.filter
def action_words(action: str) -> str:
    return audit.action_words(str(action))


@register.filter
def object_type_words(object_type: str) -> str:
    return audit.object_type_words(str(object_type))


@register.filter
def result_words(result: str) -> str:
    return audit.result_words(str(result))
