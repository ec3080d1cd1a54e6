"""What a job says (its summary, phase and result), kept so that each reader sees it in their own language.

A job's worker has no user and no language: it words what it does in English, as messages of ours
(virt.errors.Message: an English template with named parameters) or as plain text (libvirt's own words).
The Job keeps the English text in its text fields (the audit log, the logs) and the messages as data in
`Job.words`; a page, the status JSON and the pushed frames show them in the language of who reads
(webkvm.i18n.said_dict)."""

from __future__ import annotations

import logging
from typing import Any

from virt.errors import Message, Said, Term
from webkvm.i18n import said_dict

log = logging.getLogger(__name__)

# What a job's message is: one of ours (a Message, an error of the virt layer) or plain text, said as it is.
Words = str | Said

_PLAIN = (str, int, float, bool, type(None))


def stored(value: Words) -> dict[str, Any] | str:
    """A message as data the database (JSON) keeps: Message.as_dict's shape, every parameter made plain."""
    template = getattr(value, "template", None)
    params = getattr(value, "params", None)
    if not isinstance(value, Said) or not isinstance(template, str) or not isinstance(params, dict):
        return str(value)
    plain: dict[str, Any] = {}
    terms, said = [], []
    for name, param in params.items():
        if isinstance(param, Term):
            plain[name] = str(param)
            terms.append(name)
        elif isinstance(param, Said):
            plain[name] = stored(param)
            if isinstance(plain[name], dict):
                said.append(name)
        elif isinstance(param, _PLAIN):
            plain[name] = param
        else:
            plain[name] = str(param)
    return {"template": template, "params": plain, "terms": sorted(terms), "said": sorted(said)}


def loaded(data: object) -> Words:
    """A stored message back as a Message (plain text as it is)."""
    if isinstance(data, dict):
        try:
            return Message.from_dict(data)
        except (KeyError, IndexError, ValueError, TypeError):
            log.warning("a job's stored message does not read back: %r", data)
            return ""
    return "" if data is None else str(data)


def shown(data: object, english: str = "") -> str:
    """A stored message in the active language; `english` (the text field) where none was stored."""
    if data is None:
        return english
    if isinstance(data, dict):
        try:
            return said_dict(data)
        except (KeyError, IndexError, ValueError, TypeError):
            log.warning("a job's stored message cannot be shown: %r", data)
            return english
    return str(data)


def ours(text: Words) -> Words:
    """Words of the panel's own given as plain text (a phase of the virt layer): a message whose template is
    that text, translated wherever a catalog has it; a message of ours as it is."""
    if isinstance(text, Said) or not text:
        return text
    return Message(text)
