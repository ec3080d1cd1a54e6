"""Hardened XML parsing for anything that reaches us: uploads, pasted text, libvirt output."""

from __future__ import annotations

import re

from lxml import etree

from virt.errors import BadValue, gettext_noop

MAX_XML_BYTES = 1 << 20


class XMLInputError(BadValue):
    """XML we refuse to work with; the message is short and safe to show users (a template of ours;
    libxml2's own words are a parameter)."""


def parse_xml(text: str | bytes, *, max_bytes: int = MAX_XML_BYTES) -> etree._Element:
    """Parse untrusted XML into its root element, or raise XMLInputError."""
    if len(text) > max_bytes:  # before any decoding or parsing work
        raise XMLInputError(gettext_noop("XML document too large"))
    if isinstance(text, bytes):
        try:
            decoded = text.decode("utf-8")  # libvirt speaks only UTF-8
        except UnicodeDecodeError:
            raise XMLInputError(gettext_noop("XML must be UTF-8 encoded")) from None
        data = text
    else:
        decoded, data = text, text.encode("utf-8")
        if len(data) > max_bytes:
            raise XMLInputError(gettext_noop("XML document too large"))
    # Refuse DTDs before libxml2 sees them: they carry XXE and entity-expansion
    # attacks, and libvirt never uses them.
    if _prolog_has_doctype(decoded):
        raise XMLInputError(gettext_noop("DOCTYPE is not allowed"))
    parser = etree.XMLParser(
        encoding="utf-8",  # we always hand lxml UTF-8 bytes, whatever the declaration says
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_blank_text=False,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        message = re.sub(r",? line \d+, column \d+$", "", str(err.msg or err))
        raise XMLInputError(gettext_noop("malformed XML: line {line}: {message}"), line=err.lineno,
                            message=message) from None
    docinfo = root.getroottree().docinfo
    doctype: str = getattr(docinfo, "doctype", "")  # missing from lxml-stubs
    if doctype or docinfo.internalDTD is not None:  # belt and braces
        raise XMLInputError(gettext_noop("DOCTYPE is not allowed"))
    return root


def _prolog_has_doctype(text: str) -> bool:
    """A DOCTYPE can only sit in the prolog: skip BOM, declaration, comments and PIs."""
    pos, end = (1 if text.startswith("\ufeff") else 0), len(text)
    while pos < end:
        if text[pos].isspace():
            pos += 1
        elif text.startswith(("<?", "<!--"), pos):
            opener, closer = ("<?", "?>") if text[pos + 1] == "?" else ("<!--", "-->")
            close = text.find(closer, pos + len(opener))
            if close < 0:
                return False  # unterminated: the parser reports it
            pos = close + len(closer)
        else:
            break
    return text[pos : pos + 9].upper() == "<!DOCTYPE"
