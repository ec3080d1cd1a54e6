"""Messages of the virt layer in the user's language: virt/ words them in English with a template and named
parameters (virt.errors.Said); here, at the edge, the template is translated and the parameters filled in.
libvirt's own words (an error the host reported) are shown as libvirt said them."""

from __future__ import annotations

import logging

from django.utils.translation import gettext

from virt.errors import Message, Said, Term

log = logging.getLogger(__name__)


def _shown(value: object) -> object:
    if isinstance(value, Term):
        return gettext(value)
    if isinstance(value, (BaseException, Said)):
        return said(value)
    return value


def said(error: BaseException | Said | str) -> str:
    """A message of ours (an error of the virt layer, a Message) in the active language; any other error or
    text as it is (libvirt's own words)."""
    template = getattr(error, "template", None)
    params = getattr(error, "params", None)
    if not isinstance(template, str) or not template or not isinstance(params, dict):
        return str(error)
    shown = {name: _shown(value) for name, value in params.items()}
    text = gettext(template)
    if not shown:
        return text
    try:
        return text.format(**shown)
    except (KeyError, IndexError, ValueError):  # a translation that names another parameter: English, not a 500
        log.warning("translation of %r does not fit its parameters", template)
        return str(error)


def said_dict(data: dict[str, object] | str) -> str:
    """A Message stored or sent as a dict (Message.as_dict), in the active language; a plain string as it is."""
    if isinstance(data, str):
        return data
    return said(Message.from_dict(data))
