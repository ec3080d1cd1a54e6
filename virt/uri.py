"""libvirt connection URIs assembled from validated parts, never from free text.

Every value that ends up in a URI (host, port, user, path, file options) is checked
against a strict pattern first, so input such as `evil/system?command=/bin/sh#`,
`-oProxyCommand=x` or a user named `-l` is refused before libvirt is called.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlencode

from virt.errors import InvalidInput, Term, Text, gettext_noop

# What a checked path is called in the messages: words of ours, translated with them.
_WHAT = {"Path": Term(gettext_noop("Path")), "The world file": Term(gettext_noop("The world file")),
         "The TLS certificate folder": Term(gettext_noop("The TLS certificate folder")),
         "Test driver world file": Term(gettext_noop("Test driver world file")),
         "ssh key file": Term(gettext_noop("ssh key file")), "ssh command": Term(gettext_noop("ssh command")),
         "TLS certificate directory": Term(gettext_noop("TLS certificate directory"))}


def _what(what: str) -> str:
    return _WHAT.get(what, what)


class Transport(enum.StrEnum):
    LOCAL = "local"
    SSH = "ssh"
    TLS = "tls"
    TCP = "tcp"
    TEST = "test"


_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*$")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_SASL_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]{0,4095}$")
LOCAL_PATHS = ("system", "session")
TLS_FILES = ("cacert.pem", "clientcert.pem", "clientkey.pem")  # what libvirt's pkipath= folder holds


def validate_hostname(value: str) -> str:
    """A DNS name or an IPv4/IPv6 address; returns it in the form used inside a URI."""
    value = value.strip()
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        if len(value) > 253 or not _HOSTNAME_RE.match(value) or value[0] == "-":
            raise InvalidInput(gettext_noop("Enter a host name (letters, digits, dots, hyphens) or an IP "
                                            "address.")) from None
        return value.lower()
    return f"[{address}]" if address.version == 6 else str(address)


def validate_port(value: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(gettext_noop("Port must be a number from 1 to 65535."))
    return value


def validate_username(value: str) -> str:
    if not _USER_RE.match(value):
        raise InvalidInput(
            gettext_noop("User names start with a letter or underscore and contain only letters, digits, '.', '_' "
                         "or '-'.")
        )
    return value


def validate_sasl_username(value: str) -> str:
    if not _SASL_USER_RE.match(value):
        raise InvalidInput(gettext_noop("SASL user names contain only letters, digits, '.', '_', '@' or '-'."))
    return value


def validate_file_path(value: str, what: str = "Path") -> str:
    """An absolute path of plain characters, without `..` segments."""
    if not _SAFE_PATH_RE.match(value) or ".." in PurePosixPath(value).parts:
        raise InvalidInput(gettext_noop("{what} must be an absolute path of letters, digits, '.', '_', '-' and '/', "
                                        "without '..'."), what=_what(what))
    return value


def _resolved(path: Path, what: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise InvalidInput(gettext_noop("{what} cannot be resolved."), what=_what(what)) from None


def _real_path_below(value: str, folders: Iterable[str], what: str, where: str) -> Path:
    """`value` written as the real path it is, below one of `folders`.

    For paths the panel's own process opens: the real path (no symbolic link anywhere in it, so neither
    /proc/self/cwd/... nor a link inside an allowed folder) is what is compared, with is_relative_to."""
    validate_file_path(value, what)
    path = Path(value)
    if _resolved(path, what) != path or str(path) != value:
        raise InvalidInput(gettext_noop("{what} must be given as its real path: no symbolic links, '.', doubled or "
                                        "trailing '/'."), what=_what(what))
    if not any(path.is_relative_to(_resolved(Path(folder), what)) for folder in folders):
        raise InvalidInput(gettext_noop("{what} must lie below {where}."), what=_what(what), where=where)
    return path


def validate_world(value: str, worlds: Iterable[str], *, present: bool = False) -> str:
    """A world file of libvirt's test driver: "default" (built into libvirt), else an XML file below one of
    `worlds`. The driver reads it inside the panel's own process, and a file that does not parse would
    be quoted back: nothing else of the panel's machine may be named. `present`: it must exist too."""
    if value == "default":
        return value
    path = _real_path_below(value, worlds, "The world file", Term(gettext_noop("the panel's folder of test worlds")))
    if path.exists() and not path.is_file():
        raise InvalidInput(gettext_noop("The world file is not a file."))
    if present and not path.is_file():
        raise InvalidInput(gettext_noop("No such file."))
    return value


def validate_pki_dir(value: str, roots: Iterable[str], *, present: bool = False) -> str:
    """A TLS client certificate folder (libvirt's pkipath=), below one of `roots`: libvirt reads the CA
    certificate, the client certificate and its key from it inside the panel's own process, so neither the
    folder nor a file in it may lead elsewhere. `present`: the three files must be there too."""
    roots = list(roots)
    where = (Text(gettext_noop("a folder of WEBKVM_PKI_ROOTS ({roots})"), roots=", ".join(roots)) if roots
             else Text(gettext_noop("a folder of WEBKVM_PKI_ROOTS (none set)")))
    folder = _real_path_below(value, roots, "The TLS certificate folder", where)
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(gettext_noop("The TLS certificate folder is not a folder."))
    for name in TLS_FILES:
        file = folder / name
        if (file.is_symlink() or file.exists()) and not any(
                _resolved(file, name).is_relative_to(_resolved(Path(root), name)) for root in roots):
            raise InvalidInput(gettext_noop("{name}: symbolic links must not lead out of {where}."), name=name,
                               where=where)
    missing = [name for name in TLS_FILES if not (folder / name).is_file()]
    if present and missing:
        raise InvalidInput(gettext_noop("Missing in that folder: {files}."), files=", ".join(missing))
    return value


@dataclass(frozen=True)
class ConnectionSpec:
    """Everything needed to open one hypervisor connection. Secrets are not part of equality."""

    transport: Transport
    hostname: str = ""
    port: int | None = None
    username: str = ""
    path: str = "system"
    ssh_keyfile: str = ""
    ssh_command: str = ""
    tls_pkipath: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.transport == Transport.TEST:
            if self.path != "default":
                validate_file_path(self.path, "Test driver world file")
            return
        if self.path not in LOCAL_PATHS:
            raise InvalidInput(gettext_noop("Path must be 'system' or 'session'."))
        if self.transport == Transport.LOCAL:
            return
        validate_hostname(self.hostname)
        validate_port(self.port)
        if self.username:
            validate_username(self.username)
        if self.transport == Transport.SSH:
            if self.ssh_keyfile:
                validate_file_path(self.ssh_keyfile, "ssh key file")
            if self.ssh_command:
                validate_file_path(self.ssh_command, "ssh command")
        if self.transport == Transport.TLS and self.tls_pkipath:
            validate_file_path(self.tls_pkipath, "TLS certificate directory")
        if self.transport == Transport.TCP and self.sasl_username:
            validate_sasl_username(self.sasl_username)

    def uri(self) -> str:
        if self.transport == Transport.TEST:
            return "test:///default" if self.path == "default" else f"test://{quote(self.path)}"
        if self.transport == Transport.LOCAL:
            return f"qemu:///{self.path}"
        authority = validate_hostname(self.hostname)
        if self.port is not None:
            authority = f"{authority}:{self.port}"
        if self.username and self.transport == Transport.SSH:
            authority = f"{quote(self.username, safe='')}@{authority}"
        options: dict[str, str] = {}
        if self.transport == Transport.SSH:
            if self.ssh_keyfile:
                options["keyfile"] = self.ssh_keyfile
            if self.ssh_command:
                options["command"] = self.ssh_command
            options["no_tty"] = "1"
        elif self.transport == Transport.TLS and self.tls_pkipath:
            options["pkipath"] = self.tls_pkipath
        query = f"?{urlencode(options, safe='/')}" if options else ""
        return f"qemu+{self.transport.value}://{authority}/{self.path}{query}"

    def display_uri(self) -> str:
        """The URI without panel-internal options, for pages and logs."""
        return self.uri().split("?", 1)[0]
