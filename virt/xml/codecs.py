"""How typed Python values map to the strings in libvirt XML."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How a Python value is read from and written to an XML string."""

    parse: Callable[[str], T]
    format: Callable[[T], str]


STR: Codec[str] = Codec(str, str)
INT: Codec[int] = Codec(int, str)
YES_NO: Codec[bool] = Codec(lambda s: s == "yes", lambda b: "yes" if b else "no")
ON_OFF: Codec[bool] = Codec(lambda s: s == "on", lambda b: "on" if b else "off")

# libvirt's scaled-integer units (matched case-insensitively), in bytes.
UNIT_BYTES = {"b": 1, "bytes": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 10**3}
for _power, _letter in enumerate("mgtpe", start=2):
    UNIT_BYTES |= {_letter: 1 << 10 * _power, f"{_letter}ib": 1 << 10 * _power}
    UNIT_BYTES[f"{_letter}b"] = 10 ** (3 * _power)


def unit_bytes(unit: str) -> int:
    try:
        return UNIT_BYTES[unit.lower()]
    except KeyError:
        raise ValueError(f"unknown size unit {unit!r}") from None


def field_codec(kind: type[Any] | Codec[Any]) -> Codec[Any]:
    if isinstance(kind, Codec):
        return kind
    if kind is str or kind is int:
        return STR if kind is str else INT
    raise TypeError(f"unsupported field type {kind!r}; pass a Codec")
