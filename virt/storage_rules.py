"""Input rules for storage: names, paths, sizes and the network addresses pools point at.

Everything that becomes part of a pool or volume definition (and so a path on the
hypervisor, a mount or a login) is checked here before libvirt sees it. The rules are
Django-free so the panel's forms and the virt layer share one set; each raises
ValueError with a message fit for a form field.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath

from virt.errors import InvalidInput
from virt.xml.codecs import unit_bytes

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@:-]*$")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*$")
_IQN_RE = re.compile(r"^(?:iqn\.\d{4}-\d{2}\.[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[A-Za-z0-9.:_-]{1,200})?"
                     r"|eui\.[0-9A-Fa-f]{16})$")
_CEPH_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SIZE_RE = re.compile(r"^\s*(\d{1,15}(?:\.\d{1,6})?)\s*([A-Za-z]{1,5})\s*$")
MAX_VOLUME_BYTES = 64 << 40  # 64 TiB: anything larger is a typo


@dataclass(frozen=True)
class Problem:
    field: str  # the form field the message belongs to
    message: str


class StorageInputError(InvalidInput):
    """Input refused before libvirt saw it; `problems` say which field and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def check_name(name: str, what: str = "name") -> str:
    """Pool, volume and volume-group names: they end up in paths, so no '/', '..' or control characters."""
    if not name:
        raise ValueError(f"Give a {what}.")
    if "/" in name:
        raise ValueError(f"A {what} cannot contain '/'.")
    if ".." in name:
        raise ValueError(f"A {what} cannot contain '..'.")
    if _CONTROL.search(name):
        raise ValueError(f"A {what} cannot contain control characters.")
    if not NAME_RE.match(name):
        raise ValueError(f"Use letters, digits, '.', '-', '_' and '+' in the {what} "
                         "(at most 128, starting with a letter or digit).")
    return name


def parse_size(text: str) -> int:
    """'10G', '512 MiB', '1.5T', '20GB' -> bytes. A unit is required: a bare number is ambiguous."""
    match = _SIZE_RE.match(text or "")
    if not match:
        raise ValueError("Give a size with its unit, such as 10G, 512M or 1.5 TiB.")
    number, unit = match.groups()
    try:
        size = math.ceil(Decimal(number) * unit_bytes(unit))
    except (ValueError, InvalidOperation):
        raise ValueError(f"Unknown unit {unit!r}: use K, M, G, T (KiB … TiB), KB … TB, or B.") from None
    if size < 1:
        raise ValueError("The size must be more than zero.")
    if size > MAX_VOLUME_BYTES:
        raise ValueError("The largest volume is 64 TiB.")
    return size


def _clean_path(path: str, what: str) -> PurePosixPath:
    if not path.startswith("/"):
        raise ValueError(f"The {what} must be an absolute path (starting with '/').")
    if _CONTROL.search(path):
        raise ValueError(f"The {what} cannot contain control characters.")
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError(f"The {what} cannot contain '.' or '..' components.")
    if not _PATH_RE.match(path) or len(path) > 255:
        raise ValueError(f"Use letters, digits and . _ / + @ : - in the {what} (at most 255 characters).")
    if posixpath.normpath(path) != path:
        raise ValueError(f"Write the {what} without a trailing or doubled '/'.")
    return PurePosixPath(path)


# The kernel's and devices' own folders: never a pool's directory or mount point, whatever WEBKVM_POOL_ROOTS says.
SYSTEM_FOLDERS = tuple(PurePosixPath(p) for p in ("/proc", "/sys", "/dev"))


def check_pool_path(path: str, roots: Iterable[str]) -> str:
    """A directory the pool keeps its volumes in (or mounts on): only below a root the admin allows."""
    clean = _clean_path(path, "path")
    if any(clean.is_relative_to(folder) for folder in SYSTEM_FOLDERS):
        raise ValueError(f"/{clean.parts[1]} is a system folder, never a pool's "
                         "directory or mount point.")
    allowed = [PurePosixPath(root) for root in roots]
    if not any(clean.is_relative_to(root) for root in allowed):
        raise ValueError(f"Pools may only live under {', '.join(map(str, allowed)) or '(no allowed folder)'}; "
                         "the administrator sets WEBKVM_POOL_ROOTS.")
    return path


def check_device(path: str) -> str:
    """A block device of the host: /dev/sdb, /dev/disk/by-id/..."""
    clean = _clean_path(path, "device")
    if not clean.is_relative_to("/dev") or clean == PurePosixPath("/dev"):
        raise ValueError("A device path starts with /dev/, e.g. /dev/sdb or /dev/disk/by-id/…")
    return path


def check_export(path: str) -> str:
    """The directory an NFS server exports."""
    _clean_path(path, "export path")
    return path


def check_host(name: str) -> str:
    """A server's host name or IP address (no user, port or URL parts)."""
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    if len(name) > 253 or not _HOSTNAME_RE.match(name):
        raise ValueError("Give a host name such as nas.example.org or an IP address.")
    return name


def check_port(port: int | None) -> int | None:
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("A port is between 1 and 65535.")
    return port


def parse_host_port(text: str) -> tuple[str, int | None]:
    """'mon1', 'mon1:6789', '10.0.0.5:6789' or '[fd00::5]:6789'."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: write an IPv6 address with a port as [address]:port.")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = None
    if port_text:
        if not port_text.isdigit():
            raise ValueError(f"{text!r}: the port must be a number.")
        port = check_port(int(port_text))
    return check_host(host), port


def check_iqn(iqn: str) -> str:
    if not _IQN_RE.match(iqn):
        raise ValueError("Give an iSCSI name such as iqn.2024-01.org.example:storage.disk1.")
    return iqn


def check_ceph_user(name: str) -> str:
    if not _CEPH_USER_RE.match(name):
        raise ValueError("Give the Ceph user without 'client.', e.g. libvirt.")
    return name


def decode_ceph_key(text: str) -> bytes:
    """A Ceph key as `ceph auth get-key` prints it (base64); libvirt keeps the decoded bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("The key is not valid base64 (copy it from `ceph auth get-key client.NAME`).") from None
    if not 16 <= len(raw) <= 128:
        raise ValueError("That is not a Ceph key (wrong length).")
    return raw
