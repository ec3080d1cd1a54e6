"""Field descriptors, declared in the body of an XMLObject subclass:

name = Text("./name")                          # str | None
port = Attr("./@port", int)                    # int | None
autoport = Attr("./@autoport", YES_NO)         # bool | None
readonly = Flag("./readonly")                  # bool: element present or not
memory = Size("./memory", unit="KiB")          # int, converted from any libvirt unit
os = Child(OS, "./os")                         # lazy sub-object, never None
disks = Children(Disk, "./devices/disk")       # live list with add()/remove()
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, Self, TypeVar, overload

from lxml import etree

from virt.xml.base import Field, XMLObject
from virt.xml.codecs import Codec, field_codec, unit_bytes

T = TypeVar("T")
C = TypeVar("C", bound=XMLObject)


class _ValueField(Field, Generic[T]):
    """A typed scalar at a path; subclasses say where the string lives."""

    def __init__(self, path: str, codec: Codec[T]) -> None:
        super().__init__(path)
        self.codec = codec
        self._check_path()

    def _check_path(self) -> None:
        if self.attr is not None or not self.steps:
            raise ValueError(f"{type(self).__name__} path must name an element: {self.path!r}")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: XMLObject, owner: type[Any]) -> T | None: ...
    def __get__(self, obj: XMLObject | None, owner: type[Any]) -> Self | T | None:
        if obj is None:
            return self
        node = obj._find_path(self.steps)
        raw = None if node is None else self._read(node)
        return None if raw is None else self.codec.parse(raw.strip())

    def _read(self, node: etree._Element) -> str | None:
        raise NotImplementedError


class Attr(_ValueField[T]):
    """An attribute: Attr("./@type"), Attr("./graphics/@port", int). None removes it."""

    @overload
    def __init__(self: Attr[str], path: str) -> None: ...
    @overload
    def __init__(self: Attr[int], path: str, type: type[int]) -> None: ...
    @overload
    def __init__(self, path: str, type: Codec[T]) -> None: ...
    def __init__(self, path: str, type: type[Any] | Codec[Any] = str) -> None:
        super().__init__(path, field_codec(type))

    def _check_path(self) -> None:
        if self.attr is None:
            raise ValueError(f"Attr path must end in /@name: {self.path!r}")
        self.attr_name: str = self.attr

    def _read(self, node: etree._Element) -> str | None:
        return node.get(self.attr_name)

    def __set__(self, obj: XMLObject, value: T | None) -> None:
        if value is not None:
            obj._ensure_path(self.steps).set(self.attr_name, self.codec.format(value))
            return
        node = obj._find_path(self.steps)
        if node is not None and self.attr_name in node.attrib:
            del node.attrib[self.attr_name]
            obj._prune(node)


class Text(_ValueField[T]):
    """An element's text: Text("./name"), Text("./vcpu", int). None removes the element."""

    @overload
    def __init__(self: Text[str], path: str) -> None: ...
    @overload
    def __init__(self: Text[int], path: str, type: type[int]) -> None: ...
    @overload
    def __init__(self, path: str, type: Codec[T]) -> None: ...
    def __init__(self, path: str, type: type[Any] | Codec[Any] = str) -> None:
        super().__init__(path, field_codec(type))

    def _read(self, node: etree._Element) -> str | None:
        return node.text

    def __set__(self, obj: XMLObject, value: T | None) -> None:
        if value is not None:
            obj._ensure_path(self.steps).text = self.codec.format(value)
            return
        node = obj._find_path(self.steps)
        if node is not None:
            obj._remove(node)


class Flag(Field):
    """An element whose mere presence means True, e.g. <readonly/> or <acpi/>."""

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: XMLObject, owner: type[Any]) -> bool: ...
    def __get__(self, obj: XMLObject | None, owner: type[Any]) -> Self | bool:
        return self if obj is None else obj._find_path(self.steps) is not None

    def __set__(self, obj: XMLObject, value: bool) -> None:
        node = obj._find_path(self.steps)
        if value and node is None:
            obj._ensure_path(self.steps)
        elif not value and node is not None:
            obj._remove(node)


class Size(Field):
    """A scaled integer such as <memory unit='GiB'>2</memory>, exposed in one fixed unit.

    Reads convert from whatever unit the document uses (rounding up, as libvirt
    does); writes store the value together with our unit.
    """

    def __init__(self, path: str, *, unit: str, default_unit: str | None = None, readonly: bool = False) -> None:
        super().__init__(path)
        self.unit, self.scale = unit, unit_bytes(unit)
        self.default_unit = default_unit or unit  # libvirt's unit when the attribute is absent
        self.readonly = readonly

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: XMLObject, owner: type[Any]) -> int | None: ...
    def __get__(self, obj: XMLObject | None, owner: type[Any]) -> Self | int | None:
        if obj is None:
            return self
        node = obj._find_path(self.steps)
        if node is None or not (node.text or "").strip():
            return None
        size_bytes = int((node.text or "").strip()) * unit_bytes(node.get("unit", self.default_unit))
        return -(-size_bytes // self.scale)

    def __set__(self, obj: XMLObject, value: int | None) -> None:
        if self.readonly:
            raise AttributeError(f"{self.name} is reported by libvirt and read-only")
        node = obj._find_path(self.steps)
        if value is None:
            if node is not None:
                obj._remove(node)
            return
        node = obj._ensure_path(self.steps)
        node.text = str(value)
        node.set("unit", self.unit)


class ChildList(Sequence[C]):
    """Live list of the elements at a path, wrapped as C; edits go straight to the tree."""

    def __init__(self, owner: XMLObject, field: Children[C]) -> None:
        self._owner, self._field = owner, field

    def _elements(self) -> list[etree._Element]:
        parent = self._owner._find_path(self._field.steps[:-1])
        return [] if parent is None else parent.findall(self._field.steps[-1].query)

    def __len__(self) -> int:
        return len(self._elements())

    def __iter__(self) -> Iterator[C]:
        return (self._field.cls(el) for el in self._elements())

    @overload
    def __getitem__(self, index: int) -> C: ...
    @overload
    def __getitem__(self, index: slice) -> list[C]: ...
    def __getitem__(self, index: int | slice) -> C | list[C]:
        if isinstance(index, slice):
            return [self._field.cls(el) for el in self._elements()[index]]
        return self._field.cls(self._elements()[index])

    def add(self, item: C | None = None) -> C:
        """Append item (moving its element, as lxml does) or a new empty one; returns it."""
        last = self._field.steps[-1]
        if item is None:
            item = self._field.cls(last.create())
        element = item.element
        if element.tag != last.tag:
            raise ValueError(f"cannot add <{element.tag}> where <{last.tag}> belongs")
        for key, value in last.attrs.items():
            element.set(key, value)
        where = self._field.steps[:-1]
        self._owner._insert(where, self._owner._ensure_path(where), element)
        return item

    def remove(self, item: C) -> None:
        element = item._find()
        if element is None or not any(element is el for el in self._elements()):
            raise ValueError("item is not in this list")
        self._owner._remove(element)

    def clear(self) -> None:
        for element in self._elements():
            self._owner._remove(element)


class Children(Field, Generic[C]):
    """Repeated child elements: Children(Disk, "./devices/disk"). Assigning replaces all."""

    def __init__(self, cls: type[C], path: str) -> None:
        super().__init__(path)
        if self.attr is not None or not self.steps:
            raise ValueError(f"Children path must name an element: {path!r}")
        self.cls = cls

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: XMLObject, owner: type[Any]) -> ChildList[C]: ...
    def __get__(self, obj: XMLObject | None, owner: type[Any]) -> Self | ChildList[C]:
        return self if obj is None else ChildList(obj, self)

    def __set__(self, obj: XMLObject, items: Iterable[C]) -> None:
        items = list(items)  # may be our own children: wrappers keep their elements alive
        children = ChildList(obj, self)
        for element in children._elements():
            obj._remove(element)
        for item in items:
            children.add(item)


class Child(Field, Generic[C]):
    """A single sub-object: Child(OS, "./os"). Reads never return None; None deletes it.

    Assigning another object moves its element here, as lxml does (deepcopy to copy).
    """

    def __init__(self, cls: type[C], path: str) -> None:
        super().__init__(path)
        if self.attr is not None or not self.steps:
            raise ValueError(f"Child path must name an element: {path!r}")
        self.cls = cls

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: XMLObject, owner: type[Any]) -> C: ...
    def __get__(self, obj: XMLObject | None, owner: type[Any]) -> Self | C:
        return self if obj is None else self.cls._lazy(obj, self.steps)

    def __set__(self, obj: XMLObject, value: C | None) -> None:
        old = obj._find_path(self.steps)
        new = None if value is None else value.element
        if old is not None and old is not new:
            obj._remove(old)
        if new is not None and new is not old:
            for key, val in self.steps[-1].attrs.items():
                new.set(key, val)
            where = self.steps[:-1]
            obj._insert(where, obj._ensure_path(where), new)
