"""How typed Python values map to the strings in libvirt XML, and sizes to the words the panel shows."""

from __future__ import annotations

import math
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


IEC_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


def iec(size: float) -> str:
    """Bytes in binary units, the one way the panel shows a size: '512 bytes', '64.0 MiB', '512 MiB', '2.0 GiB'.

    One decimal below 100, whole numbers from 100; halves round up. static/js/format.js is its twin, line by
    line, so a figure a script updates reads as the page rendered it."""
    value, unit = float(size), 0
    while value >= 1023.5 and unit < len(IEC_UNITS) - 1:  # would read "1024" in this unit
        value, unit = value / 1024, unit + 1
    tenths = math.floor(value * 10 + 0.5)
    if unit == 0 or tenths >= 1000:
        return f"{math.floor(value + 0.5)} {IEC_UNITS[unit]}"
    return f"{tenths / 10:.1f} {IEC_UNITS[unit]}"


def field_codec(kind: type[Any] | Codec[Any]) -> Codec[Any]:
    if isinstance(kind, Codec):
        return kind
    if kind is str or kind is int:
        return STR if kind is str else INT
    raise TypeError(f"unsupported field type {kind!r}; pass a Codec")
