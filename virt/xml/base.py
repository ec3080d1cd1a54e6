"""XMLObject: a typed view over a live lxml element, plus the field-path plumbing.

An XMLObject wraps the element it was parsed from instead of copying values out,
so anything the typed fields do not model (foreign namespaces, devices we do not
know yet) survives parse -> edit -> serialise untouched. Fields (fields.py) are
descriptors that read and write the element through short paths such as
"./os/type/@arch"; writing creates missing elements, writing None removes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from lxml import etree

from virt.errors import gettext_noop
from virt.xml.parser import MAX_XML_BYTES, XMLInputError, parse_xml

__all__ = ["MAX_XML_BYTES", "Field", "PathStep", "XMLInputError", "XMLObject", "parse_xml"]

_STEP = re.compile(r"([A-Za-z_][\w.-]*)(?:\[@([A-Za-z_][\w.-]*)='([^']*)'\])?")


@dataclass(frozen=True)
class PathStep:
    """One element step of a field path: a tag, optionally pinned by one attribute."""

    query: str  # ElementPath form, for element.find()
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)

    def create(self) -> etree._Element:
        return etree.Element(self.tag, self.attrs)


def parse_path(path: str) -> tuple[tuple[PathStep, ...], str | None]:
    """Split "./a/b[@type='x']/@attr" into element steps and the trailing attribute."""
    parts = path.split("/")
    if parts[0] != ".":
        raise ValueError(f"field paths start with './': {path!r}")
    parts = [p for p in parts[1:] if p]
    attr = parts.pop()[1:] if parts and parts[-1].startswith("@") else None
    steps = []
    for part in parts:
        match = _STEP.fullmatch(part)
        if not match:
            raise ValueError(f"unsupported path step {part!r} in {path!r}")
        tag, key, value = match.groups()
        steps.append(PathStep(part, tag, {key: value} if key else {}))
    return tuple(steps), attr


class Field:
    """Base of all field descriptors: a parsed path and the attribute name it is bound to."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.steps, self.attr = parse_path(path)
        self.name = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name


class XMLObject:
    """Typed view of one libvirt XML element; subclasses declare fields as descriptors.

    Two flavours: bound to a concrete element (parsed documents, list items), or
    lazy (a Child sub-object such as Domain.os) whose element is looked up on each
    access and only created by the first write, so reading never alters the XML.
    """

    tag: ClassVar[str]
    _element: etree._Element | None
    _parent: XMLObject | None
    _steps: tuple[PathStep, ...]

    def __init__(self, element: etree._Element) -> None:
        if element.tag != self.tag:
            raise XMLInputError(gettext_noop("expected <{expected}>, got <{got}>"), expected=self.tag, got=element.tag)
        self._element, self._parent, self._steps = element, None, ()

    @classmethod
    def _lazy(cls, parent: XMLObject, steps: tuple[PathStep, ...]) -> Self:
        obj = cls.__new__(cls)
        obj._element, obj._parent, obj._steps = None, parent, steps
        return obj

    @classmethod
    def from_xml(cls, text: str | bytes, *, max_bytes: int = MAX_XML_BYTES) -> Self:
        return cls(parse_xml(text, max_bytes=max_bytes))

    @classmethod
    def new(cls, **fields: object) -> Self:
        """A minimal <tag/> with the given fields set (names are checked at run time)."""
        obj = cls(etree.Element(cls.tag))
        for name, value in fields.items():
            declared = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
            if name.startswith("_") or not isinstance(declared, Field | property):
                raise TypeError(f"{cls.__name__} has no field {name!r}")
            setattr(obj, name, value)
        return obj

    @property
    def exists(self) -> bool:
        """False for a lazy sub-object whose element is absent."""
        return self._find() is not None

    @property
    def element(self) -> etree._Element:
        """The live lxml element (created if this is an absent lazy sub-object)."""
        return self._ensure()

    def to_xml(self, *, pretty: bool = True) -> str:
        """Serialise without touching the live tree; pretty re-indents (whitespace only)."""
        element = copy.deepcopy(self._ensure())
        element.tail = None
        if pretty:  # our new elements arrive without indentation
            etree.indent(element, space="  ")
        return etree.tostring(element, encoding="unicode")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.to_xml() if self.exists else '(absent)'}>"

    # -- plumbing used by the field descriptors --

    def _find(self) -> etree._Element | None:
        if self._parent is None:
            return self._element
        return self._parent._find_path(self._steps)

    def _ensure(self) -> etree._Element:
        if self._parent is None:
            assert self._element is not None
            return self._element
        return self._parent._ensure_path(self._steps)

    def _find_path(self, steps: Sequence[PathStep]) -> etree._Element | None:
        node = self._find()
        for step in steps:
            if node is None:
                return None
            node = node.find(step.query)
        return node

    def _ensure_path(self, steps: Sequence[PathStep]) -> etree._Element:
        node = self._ensure()
        for depth, step in enumerate(steps):
            found = node.find(step.query)
            if found is None:
                found = step.create()
                self._insert(steps[:depth], node, found)
            node = found
        return node

    def _insert(self, where: Sequence[PathStep], parent: etree._Element, new: etree._Element) -> None:
        """Append after same-tag siblings, else before the first sibling declared later.

        libvirt ignores element order, but people read this XML: keep it tidy.
        """
        same = [child for child in parent if child.tag == new.tag and child is not new]
        if same:
            same[-1].addnext(new)
            return
        order = _layout(type(self)).get(tuple(s.tag for s in where), [])
        later = set(order[order.index(new.tag) + 1 :]) if new.tag in order else set()
        for child in parent:
            if child.tag in later:
                child.addprevious(new)
                return
        parent.append(new)

    def _remove(self, node: etree._Element) -> None:
        """Remove node, then any ancestors left empty, up to (not including) this object."""
        top = self._find()
        while node is not top:
            parent = node.getparent()
            if parent is None:
                return
            parent.remove(node)
            node = parent
            if len(node) or node.attrib or (node.text or "").strip():
                return

    def _prune(self, node: etree._Element) -> None:
        """After an attribute removal: drop node if it is now empty (and its empty ancestors)."""
        if not len(node) and not node.attrib and not (node.text or "").strip():
            self._remove(node)


_LAYOUTS: dict[type[XMLObject], dict[tuple[str, ...], list[str]]] = {}


def _layout(cls: type[XMLObject]) -> dict[tuple[str, ...], list[str]]:
    """Child tag order per parent path (tuple of tags), in field declaration order."""
    if cls in _LAYOUTS:
        return _LAYOUTS[cls]
    layout = _LAYOUTS[cls] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            if not isinstance(attr, Field):
                continue
            for depth, step in enumerate(attr.steps):
                order = layout.setdefault(tuple(s.tag for s in attr.steps[:depth]), [])
                if step.tag not in order:
                    order.append(step.tag)
    return layout
