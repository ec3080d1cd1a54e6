"""The rule that tells the Debian installer's screen from the screens before it (tests/installer_iso.py), on
screenshots libvirt took of the lab's boot of the installer ISO: SeaBIOS, GRUB's menu, the kernel starting the
installer, the installer's empty blue screen, then its first question."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from tests.installer_iso import installer_on_screen, png_rows

SCREENS = Path(__file__).parent / "screens"


@pytest.mark.parametrize(("screen", "installer"), [
    ("seabios-welcome-to-grub.png", False),
    ("grub-menu.png", False),
    ("installer-starting.png", False),
    ("installer-blank-blue.png", False),  # drawn before the dialog: not yet a question on screen
    ("installer-language.png", True),
])
def test_the_installer_is_told_from_the_boot_screens(screen: str, installer: bool) -> None:
    assert installer_on_screen((SCREENS / screen).read_bytes()) is installer


def rgba_png(width: int, rows: list[bytes]) -> bytes:
    """An RGBA PNG without filters, as a canvas may be encoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\0" + bytes(v for x in range(0, len(row), 3) for v in (*row[x:x + 3], 255)) for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, len(rows), 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_rgba_images_such_as_a_canvas_decode_to_the_same_pixels() -> None:
    width, rows, bpp = png_rows((SCREENS / "installer-language.png").read_bytes())
    assert (width, len(rows), bpp) == (720, 400, 3)
    again = rgba_png(width, rows)
    assert [bytes(v for x in range(0, len(r), 4) for v in r[x:x + 3]) for r in png_rows(again)[1]] == rows
    assert installer_on_screen(again)
