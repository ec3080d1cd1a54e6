"""The raw domain XML editor's safety net: check, define, compare, and keep secrets out of pages.

Domain XML can point a disk at any file of the hypervisor, so everything here assumes the
text is hostile until proven otherwise: it is parsed by the hardened parser, must describe
the VM being edited, and is defined with libvirt's schema validation. The definition is read
with INACTIVE|SECURE: without SECURE the VNC password would be dropped on save, without
INACTIVE runtime state would leak into the definition. Pages never show a password: the
editor shows MASK instead, and a MASK sent back means "keep the password libvirt has".
"""

from __future__ import annotations

import bisect
import copy
import difflib
import functools
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import libvirt
from lxml import etree

from virt.errors import InvalidInput, VirtError, gettext_noop, libvirt_message, translate
from virt.xml.codecs import iec
from virt.xml.parser import MAX_XML_BYTES, XMLInputError, parse_xml

READ_FLAGS = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
LIVE_FLAGS = libvirt.VIR_DOMAIN_XML_SECURE
MAX_DOCUMENT_BYTES = MAX_XML_BYTES
MASK = "********"
SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")  # shipped with libvirt0, which the bindings need

# libvirt writes escaped attribute values (no '<', '>' or quote inside), so a start tag is
# "<name ...>" without angle brackets inside, and a passwd value holds no quote of its kind.
_START_TAG = re.compile(r"<[A-Za-z_][^<>]*>")
_PASSWD = re.compile(r"""(\spasswd\s*=\s*)(?:'[^']*'|"[^"]*")""")
_COOKIE = re.compile(r"(<cookie\b[^<>]*>)[^<]*(</cookie>)")
_LINE = re.compile(r"^malformed XML: line (\d+):")
# libxml2 notices a tag left open only where the document ends or another tag closes, and names the line
# of the open tag in its message ("Opening and ending tag mismatch: name line 2 and domain"): the mistake.
_OPEN_TAG_LINE = re.compile(r"(?:mismatch: |in tag |Start Tag )\S+ line (\d+)")
_LIBVIRT_LINE = re.compile(r"(?:\(domain_definition\):|\bline )(\d+)")
# Errors of the connection itself; any other error is libvirt's answer about the document.
_CONNECTION_LOST = {libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN}
_TRANSPORT = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}


class DocumentRejected(InvalidInput):
    """Refused before libvirt saw it; `line` (1-based) points into the submitted text."""

    def __init__(self, message: str, line: int | None = None, /, **params: object) -> None:
        super().__init__(message, **params)
        self.line = line


class ForeignDocument(DocumentRejected):
    """Well-formed, but not a definition of the VM being edited."""


class DefineRefused(VirtError):
    """libvirt refused the definition; its message, and the line when one is known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__("{message}", message=message)  # libvirt's own words
        self.line = line


class StaleDefinition(VirtError):
    """The definition changed since the editor was opened; `current` is what libvirt has now."""

    def __init__(self, current: str) -> None:
        super().__init__(gettext_noop("The definition changed since you opened it: nothing was saved."))
        self.current = current


@dataclass(frozen=True)
class Snapshot:
    """What the editor needs of a VM at one moment."""

    name: str
    uuid: str
    xml: str  # persistent definition, INACTIVE|SECURE: holds passwords
    live: str | None  # running definition (SECURE) while the VM is active
    persistent: bool

    @property
    def active(self) -> bool:
        return self.live is not None


def snapshot(dom: libvirt.virDomain) -> Snapshot:
    active = bool(dom.isActive())
    return Snapshot(name=str(dom.name()), uuid=str(dom.UUIDString()), xml=str(dom.XMLDesc(READ_FLAGS)),
                    live=str(dom.XMLDesc(LIVE_FLAGS)) if active else None, persistent=bool(dom.isPersistent()))


def fingerprint(xml: str, key: bytes) -> str:
    """Keyed, so the hash a form carries cannot be used to guess a short password offline."""
    return hmac.new(key, xml.encode("utf-8"), hashlib.sha256).hexdigest()


def normalise(text: str) -> str:
    """Browsers send textarea lines ending in CRLF; XML treats them as LF anyway."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_document(text: str, vm_uuid: str, vm_name: str | None = None) -> etree._Element:
    """Size, hardened parse, and "is this exactly our VM": the root, or DocumentRejected."""
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise DocumentRejected(gettext_noop("The document is larger than {size}."), size=iec(MAX_DOCUMENT_BYTES))
    try:
        root = parse_xml(text)
    except XMLInputError as exc:
        found = _OPEN_TAG_LINE.search(str(exc)) or _LINE.match(str(exc))
        raise DocumentRejected(exc.template, int(found.group(1)) if found else None, **exc.params) from None
    if root.tag != "domain":
        raise ForeignDocument(gettext_noop("The root element must be <domain>, not <{tag}>."), _line(root),
                              tag=root.tag)
    uuids, names = root.findall("uuid"), root.findall("name")
    if len(uuids) != 1 or _uuid(uuids[0].text) != vm_uuid.lower():
        raise ForeignDocument(gettext_noop("The document must keep this VM's <uuid>{uuid}</uuid>: the editor changes "
                                           "this VM only (use create or clone for another)."),
                              _line(uuids[-1] if uuids else root), uuid=vm_uuid)
    if vm_name is not None and (len(names) != 1 or (names[0].text or "").strip() != vm_name):
        raise ForeignDocument(gettext_noop("The document must keep this VM's <name>{name}</name> (rename it from the "
                                           "VM's page)."), _line(names[-1] if names else root), name=vm_name)
    return root


def _line(element: etree._Element) -> int | None:
    line = getattr(element, "sourceline", None)  # lxml-stubs types it oddly
    return line if isinstance(line, int) else None


def _uuid(text: str | None) -> str:
    try:
        return str(uuid.UUID((text or "").strip()))
    except ValueError:
        return ""


def restore_secrets(root: etree._Element, current_xml: str) -> int:
    """Put libvirt's passwords back where the editor showed MASK; returns how many were restored.

    An element is matched with the one of the same tag and type at the same position among
    its kind (the second <graphics type='vnc'> with the second), so reordering other devices
    does not move a password."""
    current = parse_xml(current_xml)
    restored = 0
    seen: dict[tuple[str, str | None], int] = {}
    for element in root.iter(etree.Element):
        key = (str(element.tag), element.get("type"))
        index = seen[key] = seen.get(key, -1) + 1
        if element.get("passwd") != MASK:
            continue
        twins = [e for e in current.iter(etree.Element) if (str(e.tag), e.get("type")) == key]
        secret = twins[index].get("passwd") if index < len(twins) else None
        if secret is None:
            raise DocumentRejected(gettext_noop("<{tag}> has the masked password {mask}, but libvirt has no password "
                                                "there to keep: type a new password or remove the passwd attribute."),
                                   _line(element), tag=element.tag, mask=MASK)
        element.set("passwd", secret)
        restored += 1
    return restored


def _twin_key(element: etree._Element, seen: dict[tuple[str, str | None], int]) -> tuple[str, str | None, int]:
    """(tag, type, position among elements of that tag and type): how an element is matched across versions."""
    key = (str(element.tag), element.get("type"))
    seen[key] = seen.get(key, -1) + 1
    return (*key, seen[key])


def _disk_cookies(root: etree._Element) -> list[tuple[etree._Element, etree._Element]]:
    """(disk, its <source>'s <cookies>) of every network disk that has cookies."""
    return [(disk, cookies) for disk in root.findall("./devices/disk") for cookies in disk.findall("./source/cookies")]


def without_secrets(xml: str) -> str:
    """libvirt's XML with its secrets taken out, for keeping: every passwd attribute (VNC, SPICE and RDP
    passwords) and the cookies of network disks, the two things only a SECURE read shows. A rollback
    takes the VM's current secrets instead (carry_secrets)."""
    root = parse_xml(xml)
    for element in root.iter(etree.Element):
        if "passwd" in element.attrib:
            del element.attrib["passwd"]
    for disk, cookies in _disk_cookies(root):
        disk.find("source").remove(cookies)  # type: ignore[union-attr]  # found through its <source>
    return etree.tostring(root, encoding="unicode")


def carry_secrets(root: etree._Element, current_xml: str) -> None:
    """Give a kept definition (stored without secrets) the VM's current ones: each element takes the password
    of its twin in the current definition, or none; each network disk the cookies of the current disk with
    the same target. So a rollback never brings back an old password, nor drops today's."""
    current = parse_xml(current_xml)
    seen: dict[tuple[str, str | None], int] = {}
    passwords = {_twin_key(e, seen): e.get("passwd") for e in current.iter(etree.Element)}
    seen = {}
    for element in root.iter(etree.Element):
        password = passwords.get(_twin_key(element, seen))
        if password is None:
            if "passwd" in element.attrib:
                del element.attrib["passwd"]
        else:
            element.set("passwd", password)
    cookies_of = {_target(disk): cookies for disk, cookies in _disk_cookies(current)}
    for disk in root.findall("./devices/disk"):
        source = disk.find("source")
        if source is None:
            continue
        for old in source.findall("cookies"):
            source.remove(old)
        cookies = cookies_of.get(_target(disk))
        if cookies is not None:
            source.append(copy.deepcopy(cookies))


def _target(disk: etree._Element) -> str | None:
    target = disk.find("target")
    return None if target is None else target.get("dev")


@dataclass(frozen=True)
class SourceLines:
    """Lines of the document libvirt is sent, mapped back to the submitted text's. lxml's serialisation
    of the checked tree leaves out what lies before the root and writes a start tag spread over several
    lines on one, so a line libvirt (or the schema) names in it is not the line the user wrote."""

    sent: tuple[int, ...]  # each node's line in the document sent, in document order
    mine: tuple[int, ...]  # the same node's line in the submitted text

    @classmethod
    def of_tree(cls, root: etree._Element, document: str) -> SourceLines:
        pairs = [(_line(a), _line(b)) for a, b in zip(parse_xml(document).iter(), root.iter(), strict=True)]
        known = [(a, b) for a, b in pairs if a and b]
        return cls(tuple(a for a, _ in known), tuple(b for _, b in known))

    def user_line(self, line: int) -> int:
        """The submitted text's line for `line` of the document sent: the node that starts there, else the
        last one before it, moved by as many lines as `line` lies below it."""
        at = bisect.bisect_left(self.sent, line)
        if at < len(self.sent) and self.sent[at] == line:
            return self.mine[at]
        if at == 0:
            return line
        return self.mine[at - 1] + line - self.sent[at - 1]


def prepare(text: str, current: Snapshot) -> tuple[str, SourceLines]:
    """The document to define and how its lines map to the submitted text's.

    libvirt gets the tree we checked, serialised by lxml, so that nothing outside the root
    (a prolog our parser and libvirt's might read differently) reaches it."""
    root = check_document(text, current.uuid, current.name)
    restore_secrets(root, current.xml)
    document = etree.tostring(root, encoding="unicode")
    return document, SourceLines.of_tree(root, document)


def define(dom: libvirt.virDomain, xml: str, expected: str, lines: SourceLines | None = None) -> Snapshot:
    """Define `xml` with schema validation, if the definition is still `expected` (run under the VM's lock)."""
    current = str(dom.XMLDesc(READ_FLAGS))
    if current != expected:
        raise StaleDefinition(current)
    try:
        dom.connect().defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _CONNECTION_LOST or exc.get_error_domain() in _TRANSPORT:
            raise translate(exc) from None  # no answer: whether it was defined is unknown
        message = libvirt_message(exc)
        line = error_line(message, xml)
        raise DefineRefused(message, lines.user_line(line) if line and lines else line) from None
    return snapshot(dom)


def error_line(message: str, xml: str) -> int | None:
    """The line libvirt names, else the first line the panel's copy of libvirt's schema objects to."""
    found = _LIBVIRT_LINE.search(message)
    if found:
        return int(found.group(1))
    if "schema" not in message.lower():
        return None
    schema = _schema()
    if schema is None:
        return None
    try:
        document = parse_xml(xml)
    except XMLInputError:
        return None
    if schema.validate(document):
        return None  # the hypervisor's libvirt is newer or older than ours: no guess
    # The first located complaint is the closest to the mistake (later ones are its parents).
    return next((entry.line for entry in schema.error_log if entry.line > 0), None)


@functools.cache
def _schema() -> etree.RelaxNG | None:
    try:
        return etree.RelaxNG(etree.parse(str(SCHEMA)))
    except (OSError, etree.LxmlError):
        return None


def mask(xml: str) -> str:
    """libvirt's XML with every passwd attribute value replaced by MASK, all else byte for byte."""
    return _START_TAG.sub(lambda tag: _PASSWD.sub(rf"\1'{MASK}'", tag.group(0)), xml)


def masked_diff(before: str, after: str, before_label: str, after_label: str) -> str:
    """A unified diff of two definitions, passwords and disk cookies masked on both sides."""
    def hidden(xml: str) -> str:
        return _COOKIE.sub(rf"\1{MASK}\2", mask(xml))

    lines = difflib.unified_diff(hidden(before).splitlines(keepends=True), hidden(after).splitlines(keepends=True),
                                 before_label, after_label)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
