"""A real installer ISO for tests that boot one: Debian 12's own installer (kernel and initrd of the Debian
package `debian-installer-12-netboot-amd64`) made BIOS-bootable with `grub-mkrescue`, whose GRUB starts the
text installer after one second.

Built once per machine into the user's cache (`$XDG_CACHE_HOME/webkvm`, else `~/.cache/webkvm`), outside the
clone, under a name keyed by the versions of the packages it is made from and by this module's boot menu:
an upgrade of any of them builds a new one (and removes the old). Building takes about 2 s; the ISO is
56 MiB.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

from tests.conftest import need

PACKAGES = ("debian-installer-12-netboot-amd64", "grub-pc-bin", "grub-common", "xorriso", "mtools")
NETBOOT = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
GRUB_BIOS = Path("/usr/lib/grub/i386-pc")
ISO_NAME = "debian-12-installer-amd64.iso"

# The installer's "Install" entry, kept in VGA text mode (80x25, 720x400 pixels): `fb=false` is the installer's
# own switch against a framebuffer and `nomodeset` keeps the kernel's bochs-drm from setting 1280x800, which
# under full emulation is slower to draw and gives the console 3.5 times the pixels to send.
GRUB_CFG = """\
set timeout=1
set default=0
menuentry 'Install' {
    set gfxpayload=text
    linux /install.amd/vmlinuz nomodeset fb=false --- quiet
    initrd /install.amd/initrd.gz
}
"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "webkvm"


def package_versions() -> str | None:
    """`name=version` of each package the ISO is made from, or None when one is not installed."""
    found = subprocess.run(["dpkg-query", "-W", "-f", "${Package}=${Version} ${db:Status-Status}\n", *PACKAGES],
                           capture_output=True, text=True)
    lines = [line.split() for line in found.stdout.splitlines()]
    installed = sorted(words[0] for words in lines if words[1:] == ["installed"])
    return "\n".join(installed) if len(installed) == len(PACKAGES) else None


def build(target: Path) -> None:
    """The bootable ISO at `target`, written under another name first so that no half-built file is ever used."""
    with tempfile.TemporaryDirectory(prefix="webkvm-iso-") as tmp:
        tree = Path(tmp) / "tree"
        (tree / "install.amd").mkdir(parents=True)
        (tree / "boot" / "grub").mkdir(parents=True)
        shutil.copyfile(NETBOOT / "linux", tree / "install.amd" / "vmlinuz")
        shutil.copyfile(NETBOOT / "initrd.gz", tree / "install.amd" / "initrd.gz")
        (tree / "boot" / "grub" / "grub.cfg").write_text(GRUB_CFG)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        made = subprocess.run(["grub-mkrescue", "-d", str(GRUB_BIOS), "-o", str(partial), str(tree),
                               "--", "-volid", "DEBIAN_INSTALLER"], capture_output=True, text=True)
        if made.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"grub-mkrescue failed: {made.stderr.strip()}")
        partial.replace(target)


def installer_iso_path() -> Path | None:
    """The cached ISO, built first when this machine has none for these package versions; None without them."""
    versions = package_versions()
    if versions is None or not shutil.which("grub-mkrescue"):
        return None
    key = hashlib.sha256(f"{versions}\n{GRUB_CFG}".encode()).hexdigest()[:16]
    target = cache_dir() / f"installer-{key}" / ISO_NAME
    if not target.exists():
        for stale in cache_dir().glob("installer-*"):
            if stale != target.parent:
                shutil.rmtree(stale, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        build(target)
    return target


# ---- is the installer on screen? -----------------------------------------------------------------------
# The text installer draws a dialog of VGA light grey (170,170,170) on VGA blue (0,0,170), whatever its question
# or language: at 80x25 the blue frame is about a tenth of the screen and the dialog most of the rest. SeaBIOS,
# GRUB's menu and the kernel's messages are light grey text on black: no blue, and a few per cent of grey.
MIN_BLUE, MIN_GREY = 0.04, 0.40


def png_rows(data: bytes) -> tuple[int, list[bytes], int]:
    """Width, rows and bytes per pixel of an 8-bit RGB or RGBA PNG, such as qemu's screenshots and Chromium's
    canvas images, decoded without an image library (PNG filters per https://www.w3.org/TR/png/#9Filters)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, compressed, width, height, bpp = 8, bytearray(), 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and not interlace, f"unexpected PNG kind {depth}/{colour}"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            compressed += body
    raw, stride = zlib.decompress(bytes(compressed)), width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + previous[x]) >> 1)) & 0xFF
        elif kind == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = previous[x], previous[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, rows, bpp


def screen_colours(png: bytes) -> tuple[float, float]:
    """The shares of the screen that are VGA blue and VGA light grey."""
    width, rows, bpp = png_rows(png)
    blue = grey = 0
    for row in rows:
        for x in range(0, width * bpp, bpp):
            r, g, b = row[x], row[x + 1], row[x + 2]
            if b >= 128 and r < 64 and g < 64:
                blue += 1
            elif 128 <= r <= 210 and abs(r - g) < 16 and abs(g - b) < 16:
                grey += 1
    pixels = max(1, width * len(rows))
    return blue / pixels, grey / pixels


def installer_on_screen(png: bytes) -> bool:
    blue, grey = screen_colours(png)
    return blue >= MIN_BLUE and grey >= MIN_GREY


@pytest.fixture(scope="session")
def installer_iso() -> Path:
    path = installer_iso_path()
    need(path is not None, "the installer ISO needs the Debian packages " + " ".join(PACKAGES))
    assert path is not None
    return path
