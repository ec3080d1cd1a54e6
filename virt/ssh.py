"""The panel's own ssh identity and pinned host keys.

libvirt's ssh transport takes no ssh options, so connections use a small wrapper
(`command=` in the URI) that forces the panel's known_hosts file, strict host key
checking and batch mode. Host keys are fetched with ssh-keyscan, shown to the admin
as SHA256 fingerprints and pinned only after the admin accepts them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from virt.errors import InvalidInput, Unreachable, gettext_noop
from virt.uri import validate_hostname, validate_port

_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


@dataclass(frozen=True)
class HostKey:
    key_type: str
    key_b64: str

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(base64.b64decode(self.key_b64)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def line(self) -> str:
        return f"{self.key_type} {self.key_b64}"

    @classmethod
    def parse(cls, line: str) -> HostKey:
        """Parse `TYPE BASE64` (optionally preceded by a host field, as ssh-keyscan prints)."""
        fields = line.split()
        if len(fields) >= 3 and fields[1] in _KEY_TYPES:
            fields = fields[1:]
        if len(fields) < 2 or fields[0] not in _KEY_TYPES:
            raise InvalidInput(gettext_noop("not an ssh host key: {line}"), line=repr(line[:60]))
        try:
            base64.b64decode(fields[1], validate=True)
        except ValueError:
            raise InvalidInput(gettext_noop("ssh host key is not valid base64")) from None
        return cls(fields[0], fields[1])


def known_hosts_name(hostname: str, port: int | None) -> str:
    host = validate_hostname(hostname)
    return host if port in (None, 22) else f"[{host.strip('[]')}]:{port}"


def keyscan(hostname: str, port: int | None, timeout: int = 5) -> list[HostKey]:
    """Fetch the host's public keys (not yet trusted: the admin must compare the fingerprints)."""
    host = validate_hostname(hostname).strip("[]")
    args = ["ssh-keyscan", "-T", str(timeout), "-p", str(validate_port(port) or 22), "--", host]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 3, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unreachable(gettext_noop("ssh-keyscan failed: {error}"), error=str(exc)) from None
    keys = []
    for line in done.stdout.splitlines():
        if line and not line.startswith("#"):
            try:
                keys.append(HostKey.parse(line))
            except InvalidInput:
                continue
    if not keys:
        raise Unreachable(gettext_noop("no ssh host key received from {host} port {port}: is sshd running there?"),
                          host=host, port=port or 22)
    return sorted(set(keys), key=lambda key: _KEY_TYPES.index(key.key_type))


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file atomically with restrictive permissions."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_known_hosts(path: Path, entries: Iterable[tuple[str, int | None, Iterable[HostKey]]]) -> None:
    lines = [f"{known_hosts_name(host, port)} {key.line()}" for host, port, keys in entries for key in keys]
    write_private(path, "".join(line + "\n" for line in sorted(set(lines))), 0o644)


@dataclass(frozen=True)
class SshIdentity:
    """The panel's key pair, known_hosts file and the ssh wrapper libvirt runs."""

    directory: Path

    @property
    def private_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.directory / "id_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def wrapper(self) -> Path:
        return self.directory / "ssh-wrapper"

    def ensure(self) -> None:
        """Create the key pair, an empty known_hosts and the wrapper when missing."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.private_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "webkvm-panel", "-f", str(self.private_key)],
                check=True, capture_output=True,
            )
        if not self.known_hosts.exists():
            write_private(self.known_hosts, "", 0o644)
        options = [
            "-F", "/dev/null",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5",
            "-o", "ServerAliveInterval=5",
            "-o", f"IdentityFile={self.private_key}",
            "-o", "IdentitiesOnly=yes",
        ]
        script = "#!/bin/sh\n# Generated by webkvm: ssh with the panel's own identity and pinned host keys.\n"
        script += f"exec /usr/bin/ssh {shlex.join(options)} \"$@\"\n"
        if not self.wrapper.exists() or self.wrapper.read_text() != script:
            write_private(self.wrapper, script, 0o700)

    def public_key_line(self) -> str:
        return self.public_key.read_text().strip()
