"""Input rules for storage: names, paths, sizes and the network addresses pools point at.

Everything that becomes part of a pool or volume definition (and so a path on the
hypervisor, a mount or a login) is checked here before libvirt sees it. The rules are
Django-free so the panel's forms and the virt layer share one set; each raises
BadValue (a ValueError) with a message fit for a form field: an English template with its parameters,
which webkvm.i18n.said shows translated.
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

from virt.errors import BadValue, InvalidInput, Term, Text, gettext_noop, joined
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
    message: str  # a Text of ours (webkvm.i18n.said shows it translated), equal to its English words

    @classmethod
    def of(cls, field: str, error: ValueError | str) -> Problem:
        """The problem a rule's BadValue (or any message) names on `field`."""
        return cls(field, Text.of(error if isinstance(error, (str, BadValue)) else str(error)))


class StorageInputError(InvalidInput):
    """Input refused before libvirt saw it; `problems` say which field and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("{problems}", problems=joined([Text(gettext_noop("{field}: {message}"), field=p.field,
                                                             message=Text.of(p.message)) for p in problems]))
        self.problems = problems


# What a name or path is called in the rules' messages: words of ours, translated with them.
WHAT = {"name": Term(gettext_noop("name")), "volume name": Term(gettext_noop("volume name")),
        "pool name": Term(gettext_noop("pool name")), "volume group name": Term(gettext_noop("volume group name")),
        "path": Term(gettext_noop("path")), "device": Term(gettext_noop("device")),
        "export path": Term(gettext_noop("export path")), "source name": Term(gettext_noop("source name")),
        "volume group": Term(gettext_noop("volume group")), "Ceph pool": Term(gettext_noop("Ceph pool"))}


def _what(what: str) -> str:
    return WHAT.get(what, what)


def check_name(name: str, what: str = "name") -> str:
    """Pool, volume and volume-group names: they end up in paths, so no '/', '..' or control characters."""
    if not name:
        raise BadValue(gettext_noop("Give a {what}."), what=_what(what))
    if "/" in name:
        raise BadValue(gettext_noop("A {what} cannot contain '/'."), what=_what(what))
    if ".." in name:
        raise BadValue(gettext_noop("A {what} cannot contain '..'."), what=_what(what))
    if _CONTROL.search(name):
        raise BadValue(gettext_noop("A {what} cannot contain control characters."), what=_what(what))
    if not NAME_RE.match(name):
        raise BadValue(gettext_noop("Use letters, digits, '.', '-', '_' and '+' in the {what} "
                                    "(at most 128, starting with a letter or digit)."), what=_what(what))
    return name


def parse_size(text: str) -> int:
    """'10G', '512 MiB', '1.5T', '20GB' -> bytes. A unit is required: a bare number is ambiguous."""
    match = _SIZE_RE.match(text or "")
    if not match:
        raise BadValue(gettext_noop("Give a size with its unit, such as 10G, 512M or 1.5 TiB."))
    number, unit = match.groups()
    try:
        size = math.ceil(Decimal(number) * unit_bytes(unit))
    except (ValueError, InvalidOperation):
        raise BadValue(gettext_noop("Unknown unit {unit}: use K, M, G, T (KiB … TiB), KB … TB, or B."),
                       unit=repr(unit)) from None
    if size < 1:
        raise BadValue(gettext_noop("The size must be more than zero."))
    if size > MAX_VOLUME_BYTES:
        raise BadValue(gettext_noop("The largest volume is 64 TiB."))
    return size


def _clean_path(path: str, what: str) -> PurePosixPath:
    if not path.startswith("/"):
        raise BadValue(gettext_noop("The {what} must be an absolute path (starting with '/')."), what=_what(what))
    if _CONTROL.search(path):
        raise BadValue(gettext_noop("The {what} cannot contain control characters."), what=_what(what))
    if any(part in (".", "..") for part in path.split("/")):
        raise BadValue(gettext_noop("The {what} cannot contain '.' or '..' components."), what=_what(what))
    if not _PATH_RE.match(path) or len(path) > 255:
        raise BadValue(gettext_noop("Use letters, digits and . _ / + @ : - in the {what} (at most 255 characters)."),
                       what=_what(what))
    if posixpath.normpath(path) != path:
        raise BadValue(gettext_noop("Write the {what} without a trailing or doubled '/'."), what=_what(what))
    return PurePosixPath(path)


# The kernel's and devices' own folders: never a pool's directory or mount point, whatever WEBKVM_POOL_ROOTS says.
SYSTEM_FOLDERS = tuple(PurePosixPath(p) for p in ("/proc", "/sys", "/dev"))


def check_pool_path(path: str, roots: Iterable[str]) -> str:
    """A directory the pool keeps its volumes in (or mounts on): only below a root the admin allows."""
    clean = _clean_path(path, "path")
    if any(clean.is_relative_to(folder) for folder in SYSTEM_FOLDERS):
        raise BadValue(gettext_noop("{folder} is a system folder, never a pool's directory or mount point."),
                       folder=f"/{clean.parts[1]}")
    allowed = [PurePosixPath(root) for root in roots]
    if not any(clean.is_relative_to(root) for root in allowed):
        if not allowed:
            raise BadValue(gettext_noop("Pools may only live under (no allowed folder); the administrator sets "
                                        "WEBKVM_POOL_ROOTS."))
        raise BadValue(gettext_noop("Pools may only live under {folders}; the administrator sets WEBKVM_POOL_ROOTS."),
                       folders=", ".join(map(str, allowed)))
    return path


def check_device(path: str) -> str:
    """A block device of the host: /dev/sdb, /dev/disk/by-id/..."""
    clean = _clean_path(path, "device")
    if not clean.is_relative_to("/dev") or clean == PurePosixPath("/dev"):
        raise BadValue(gettext_noop("A device path starts with /dev/, e.g. /dev/sdb or /dev/disk/by-id/…"))
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
        raise BadValue(gettext_noop("Give a host name such as nas.example.org or an IP address."))
    return name


def check_port(port: int | None) -> int | None:
    if port is not None and not 1 <= port <= 65535:
        raise BadValue(gettext_noop("A port is between 1 and 65535."))
    return port


def parse_host_port(text: str) -> tuple[str, int | None]:
    """'mon1', 'mon1:6789', '10.0.0.5:6789' or '[fd00::5]:6789'."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise BadValue(gettext_noop("{text}: write an IPv6 address with a port as [address]:port."),
                           text=repr(text))
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = None
    if port_text:
        if not port_text.isdigit():
            raise BadValue(gettext_noop("{text}: the port must be a number."), text=repr(text))
        port = check_port(int(port_text))
    return check_host(host), port


def check_iqn(iqn: str) -> str:
    if not _IQN_RE.match(iqn):
        raise BadValue(gettext_noop("Give an iSCSI name such as iqn.2024-01.org.example:storage.disk1."))
    return iqn


def check_ceph_user(name: str) -> str:
    if not _CEPH_USER_RE.match(name):
        raise BadValue(gettext_noop("Give the Ceph user without 'client.', e.g. libvirt."))
    return name


def decode_ceph_key(text: str) -> bytes:
    """A Ceph key as `ceph auth get-key` prints it (base64); libvirt keeps the decoded bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadValue(gettext_noop("The key is not valid base64 (copy it from `ceph auth get-key "
                                    "client.NAME`).")) from None
    if not 16 <= len(raw) <= 128:
        raise BadValue(gettext_noop("That is not a Ceph key (wrong length)."))
    return raw
