"""The RFB (VNC) opening, so the proxy can authenticate to a VM's VNC server itself.

When a VM's display has a password, the proxy reads it from the live XML (server side only),
answers the server's VNC-authentication challenge, and offers the browser security type None:
the browser never sees the password. After both openings the proxy relays bytes unchanged,
starting with the browser's ClientInit and the server's ServerInit.

VNC authentication (RFB 6.2.2) is single DES over the 16-byte challenge, keyed with the
password's first 8 bytes, each byte bit-reversed. cryptography 50 still offers DES as
TripleDES in its `decrepit` module; a 24-byte key made of the same 8 bytes three times is
single DES (EDE with K1 = K2 = K3), so no hand-written DES is needed.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from virt.errors import Text, gettext_noop

VERSION_38 = b"RFB 003.008\n"
SEC_NONE, SEC_VNC_AUTH = 1, 2
SECURITY_NAMES = {0: "invalid", 1: "None", 2: "VNC authentication", 5: "RA2", 16: "Tight", 18: "TLS",
                  19: "VeNCrypt", 20: "GTK-VNC SASL", 30: "Apple"}
HANDSHAKE_SECONDS = 5.0
MAX_REASON = 4096
NO_PASSWORD = gettext_noop("the VNC server asks for a password the VM's definition does not have")
ONLY_NONE = gettext_noop("the VNC server asks for {names}; the console proxy speaks None and VNC authentication only")
LATE = gettext_noop("the VNC server did not finish its opening in time")
FAILED = gettext_noop("the VNC connection failed during its opening: {error}")


class RfbError(Exception):
    """The RFB opening failed; str() says why in words (never the password), in English; `text` is the same
    message of ours, which webkvm.i18n.said shows in the reader's language."""

    def __init__(self, message: str, /, **params: object) -> None:
        self.text = Text(message, **params)
        super().__init__(str(self.text))


def words(exc: BaseException) -> Text:
    """An RFB failure (or any other error) as a message of ours."""
    return exc.text if isinstance(exc, RfbError) else Text("{error}", error=str(exc))


class RfbClosed(RfbError):
    """The peer closed the connection before the opening was over."""


def parse_version(line: bytes) -> tuple[int, int]:
    """(major, minor) of a ProtocolVersion line such as b"RFB 003.008\\n"."""
    if len(line) != 12 or not line.startswith(b"RFB ") or line[7:8] != b"." or line[11:] != b"\n":
        raise RfbError(gettext_noop("not an RFB protocol version: {line}"), line=repr(line[:12]))
    try:
        return int(line[4:7]), int(line[8:11])
    except ValueError:
        raise RfbError(gettext_noop("not an RFB protocol version: {line}"), line=repr(line[:12])) from None


def _spoken(version: tuple[int, int]) -> tuple[int, int]:
    """The version we speak with a peer that offers `version`: 3.3, 3.7 or 3.8."""
    if version[0] != 3 or version[1] < 3:
        raise RfbError(gettext_noop("unsupported RFB version {version}"), version=f"{version[0]}.{version[1]}")
    return (3, 8) if version[1] >= 8 else (3, 7) if version[1] == 7 else (3, 3)


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def vnc_auth_response(password: str | bytes, challenge: bytes) -> bytes:
    """The answer to a VNC-authentication challenge: DES(challenge) keyed with the password's
    first 8 bytes (UTF-8, zero-padded, each byte bit-reversed, as every VNC server expects)."""
    if len(challenge) != 16:
        raise RfbError(gettext_noop("VNC authentication challenge is not 16 bytes"))
    secret = password.encode() if isinstance(password, str) else password
    key = bytes(_reverse_bits(b) for b in secret[:8].ljust(8, b"\0"))
    # ECB on one 16-byte challenge is what the protocol defines (two independent DES blocks).
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(challenge) + encryptor.finalize()


Read = Callable[[int], bytes]
Write = Callable[[bytes], None]


def _reason(read: Read) -> str:
    (length,) = struct.unpack(">I", read(4))
    return read(min(length, MAX_REASON)).decode(errors="replace")


def client_opening(read: Read, write: Write, password: str | None) -> tuple[int, int]:
    """Play the client through ProtocolVersion, Security and SecurityResult.

    Afterwards the server waits for ClientInit. Uses VNC authentication when a password is
    given and the server offers it, security type None when the server offers that; anything
    else (TLS, VeNCrypt, SASL) is refused in words. Returns the version spoken."""
    version = _spoken(parse_version(read(12)))
    write(b"RFB %03d.%03d\n" % version)
    if version == (3, 3):
        (chosen,) = struct.unpack(">I", read(4))
        if chosen == 0:
            raise RfbError(gettext_noop("the VNC server refused the connection: {reason}"), reason=_reason(read))
        offered = [chosen]
    else:
        count = read(1)[0]
        if count == 0:
            raise RfbError(gettext_noop("the VNC server refused the connection: {reason}"), reason=_reason(read))
        offered = list(read(count))
        if password is not None and SEC_VNC_AUTH in offered:
            chosen = SEC_VNC_AUTH
        elif SEC_NONE in offered:
            chosen = SEC_NONE
        elif SEC_VNC_AUTH in offered:
            raise RfbError(NO_PASSWORD)
        else:
            names = ", ".join(SECURITY_NAMES.get(t, str(t)) for t in offered)
            raise RfbError(ONLY_NONE, names=names)
        write(bytes([chosen]))
    if chosen == SEC_VNC_AUTH:
        if password is None:
            raise RfbError(NO_PASSWORD)
        write(vnc_auth_response(password, read(16)))
    elif chosen != SEC_NONE:
        raise RfbError(ONLY_NONE, names=SECURITY_NAMES.get(chosen, str(chosen)))
    if chosen == SEC_VNC_AUTH or version == (3, 8):
        (result,) = struct.unpack(">I", read(4))
        if result != 0:
            said = _reason(read) if version == (3, 8) else ""
            if said:
                raise RfbError(gettext_noop("the VNC server did not accept the VM's password: {said}"), said=said)
            raise RfbError(gettext_noop("the VNC server did not accept the VM's password"))
    return version


def authenticate(sock: socket.socket, password: str | None, timeout: float = HANDSHAKE_SECONDS) -> None:
    """client_opening on a connected socket, within `timeout` seconds; leaves the socket blocking."""
    deadline = time.monotonic() + timeout

    def read(size: int) -> bytes:
        data = b""
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RfbError(LATE)
            sock.settimeout(left)
            try:
                chunk = sock.recv(size - len(data))
            except TimeoutError:
                raise RfbError(LATE) from None
            except OSError as exc:
                raise RfbError(FAILED, error=str(exc.strerror or exc)) from None
            if not chunk:
                raise RfbClosed(gettext_noop("the VNC server closed the connection during its opening"))
            data += chunk
        return data

    def write(data: bytes) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RfbError(LATE)
        sock.settimeout(left)
        try:
            sock.sendall(data)
        except OSError as exc:  # e.g. reset by the server: a refusal in words like any other
            raise RfbError(FAILED, error=str(exc.strerror or exc)) from None

    try:
        client_opening(read, write, password)
    finally:
        sock.settimeout(None)


class NoAuthOpening:
    """The server's part of the RFB opening towards the browser, offering security type None.

    Sans-IO, for both proxies: send `GREETING`, then `feed()` what the browser sends. Each call
    returns (bytes for the browser, None while the opening goes on | bytes for the VNC server
    once it is over: the start of ClientInit when the browser sent it in the same frame)."""

    GREETING = VERSION_38

    def __init__(self) -> None:
        self._buffer = b""
        self._version: tuple[int, int] | None = None

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        self._buffer += data
        reply = b""
        if self._version is None:
            if len(self._buffer) < 12:
                return reply, None
            self._version = _spoken(parse_version(self._buffer[:12]))
            self._buffer = self._buffer[12:]
            if self._version == (3, 3):
                return struct.pack(">I", SEC_NONE), self._take()
            reply = bytes([1, SEC_NONE])
        if not self._buffer:
            return reply, None
        if self._buffer[0] != SEC_NONE:
            raise RfbError(gettext_noop("the browser chose security type {chosen}, not the offered None"),
                           chosen=self._buffer[0])
        self._buffer = self._buffer[1:]
        if self._version == (3, 8):
            reply += struct.pack(">I", 0)  # SecurityResult OK (3.7 sends none for type None)
        return reply, self._take()

    def _take(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest
