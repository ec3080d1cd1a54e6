"""The proxy's RFB opening (console/rfb.py) in the cases the lab's qemu cannot produce.

The real thing (qemu asking for VNC authentication, through both proxies, locally and over
ssh) is tested on the lab in tests/integration/test_console_lab.py. Here, with a tiny fake
RFB server on a socket pair: servers speaking RFB 3.3 or 3.7, offering only TLS/VeNCrypt,
refusing with a reason or hanging; and the browser's side of the opening fed in every way a
client could split or spoil it (noVNC always sends 3.8 in whole messages).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from console import rfb

PASSWORD = "sekrit"
CHALLENGE = bytes(range(16))


def test_des_response_matches_the_published_des_vector() -> None:
    """FIPS 81 / the classic DES example: key 0123456789ABCDEF, "Now is t" -> 3FA40E8A984D4815.
    VNC bit-reverses each key byte first, so the password is the bit-reversed key."""
    key = bytes.fromhex("0123456789abcdef")
    password = bytes(int(f"{b:08b}"[::-1], 2) for b in key)
    assert rfb.vnc_auth_response(password, b"Now is t" * 2).hex() == "3fa40e8a984d4815" * 2


def test_des_response_uses_the_first_eight_bytes_zero_padded() -> None:
    assert rfb.vnc_auth_response("", bytes(16)).hex() == "8ca64de9c1b123a7" * 2  # DES(0, 0)
    assert rfb.vnc_auth_response("abcdefgh", CHALLENGE) == rfb.vnc_auth_response("abcdefghIGNORED", CHALLENGE)
    assert rfb.vnc_auth_response("abc", CHALLENGE) == rfb.vnc_auth_response(b"abc\0\0\0\0\0", CHALLENGE)
    assert rfb.vnc_auth_response("abc", CHALLENGE) != rfb.vnc_auth_response("abd", CHALLENGE)
    with pytest.raises(rfb.RfbError):
        rfb.vnc_auth_response("abc", b"short")


# ---- the proxy as a client of the VNC server ----------------------------------------------------

def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


Script = Callable[[socket.socket], None]


@pytest.fixture
def fake_server() -> Iterator[Callable[[Script], socket.socket]]:
    """Runs a server script on one end of a socket pair; returns the other end; re-raises its failures."""
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []
    ends: list[socket.socket] = []

    def start(script: Script) -> socket.socket:
        ours, theirs = socket.socketpair()
        ends.extend((ours, theirs))

        def run() -> None:
            try:
                script(theirs)
            except (ConnectionError, OSError):
                pass  # the client gave up first: the test checks what the client saw
            except BaseException as exc:  # an assertion inside the fake server
                failures.append(exc)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return ours
    yield start
    for end in ends:
        end.close()
    for thread in threads:
        thread.join(timeout=5)
    if failures:
        raise failures[0]


def vnc_server(version: bytes = b"RFB 003.008\n", types: bytes = b"\x02", password: str = PASSWORD,
               seen: list[bytes] | None = None) -> Script:
    """A VNC server asking for VNC authentication with `password`; records what the client says."""
    def script(sock: socket.socket) -> None:
        sock.sendall(version)
        said = recv_exact(sock, 12)
        if version == b"RFB 003.003\n":
            sock.sendall(struct.pack(">I", 2))
        else:
            sock.sendall(bytes([len(types)]) + types)
            said += recv_exact(sock, 1)
        sock.sendall(CHALLENGE)
        answer = recv_exact(sock, 16)
        ok = answer == rfb.vnc_auth_response(password, CHALLENGE)
        result = struct.pack(">I", 0 if ok else 1)
        if not ok and version == b"RFB 003.008\n":
            result += struct.pack(">I", 21) + b"Authentication failed"
        if seen is not None:  # before the result: the client returns on it, and the test reads `seen` at once
            seen.append(said + answer)
        sock.sendall(result)
    return script


@pytest.mark.parametrize(("version", "spoken"), [
    (b"RFB 003.008\n", (3, 8)), (b"RFB 003.007\n", (3, 7)), (b"RFB 003.003\n", (3, 3)),
    (b"RFB 003.889\n", (3, 8)),  # Apple's servers: speak 3.8 with them
])
def test_vnc_authentication_in_every_rfb_version(fake_server, version, spoken) -> None:
    seen: list[bytes] = []
    sock = fake_server(vnc_server(version, seen=seen))
    rfb.authenticate(sock, PASSWORD, timeout=5)
    assert sock.gettimeout() is None  # handed back blocking, for the relay
    assert seen[0].startswith(b"RFB %03d.%03d\n" % spoken)


@pytest.mark.parametrize("version", [b"RFB 003.008\n", b"RFB 003.007\n"])
def test_a_wrong_password_is_said_in_words(fake_server, version) -> None:
    sock = fake_server(vnc_server(version, password="other"))
    with pytest.raises(rfb.RfbError, match="did not accept the VM's password") as caught:
        rfb.authenticate(sock, PASSWORD, timeout=5)
    assert PASSWORD not in str(caught.value)


def test_the_server_choice_prefers_vnc_auth_and_accepts_none(fake_server) -> None:
    seen: list[bytes] = []
    sock = fake_server(vnc_server(types=b"\x01\x10\x02", seen=seen))
    rfb.authenticate(sock, PASSWORD, timeout=5)
    assert seen[0][12:13] == b"\x02"

    def none_only(sock: socket.socket) -> None:
        sock.sendall(b"RFB 003.008\n\x01\x01")
        recv_exact(sock, 13)
        sock.sendall(struct.pack(">I", 0))
    rfb.authenticate(fake_server(none_only), PASSWORD, timeout=5)


@pytest.mark.parametrize(("offer", "words"), [
    (b"\x01\x13", "VeNCrypt"), (b"\x02\x12\x10", "TLS, Tight"),
])
def test_unsupported_security_types_are_named(fake_server, offer, words) -> None:
    def script(sock: socket.socket) -> None:
        sock.sendall(b"RFB 003.008\n" + offer)
        recv_exact(sock, 12)
        sock.recv(1)
    with pytest.raises(rfb.RfbError, match=f"asks for {words}; the console proxy speaks None and VNC"):
        rfb.authenticate(fake_server(script), PASSWORD, timeout=5)


def test_a_password_the_definition_lacks(fake_server) -> None:
    with pytest.raises(rfb.RfbError, match="asks for a password the VM's definition does not have"):
        rfb.authenticate(fake_server(vnc_server()), None, timeout=5)
    with pytest.raises(rfb.RfbError, match="asks for a password the VM's definition does not have"):
        rfb.authenticate(fake_server(vnc_server(b"RFB 003.003\n")), None, timeout=5)


def test_the_servers_refusal_reason_is_passed_on(fake_server) -> None:
    def script(sock: socket.socket) -> None:
        sock.sendall(b"RFB 003.008\n\x00" + struct.pack(">I", 16) + b"too many clients")
        recv_exact(sock, 12)
    with pytest.raises(rfb.RfbError, match="refused the connection: too many clients"):
        rfb.authenticate(fake_server(script), PASSWORD, timeout=5)


@pytest.mark.parametrize(("script", "words"), [
    (lambda sock: sock.sendall(b"HTTP/1.1 400 Bad Request\r\n"), "not an RFB protocol version"),
    (lambda sock: sock.sendall(b"RFB 004.000\n"), "unsupported RFB version 4.0"),
    (lambda sock: sock.close(), "closed the connection during its opening"),
    (lambda sock: recv_exact(sock, 100), "did not finish its opening in time"),  # says nothing at all
])
def test_broken_servers_fail_in_words_and_in_time(fake_server, script, words) -> None:
    with pytest.raises(rfb.RfbError, match=words):
        rfb.authenticate(fake_server(script), PASSWORD, timeout=0.5)


# ---- the proxy as the browser's server: security type None ---------------------------------------

def run_opening(chunks: list[bytes]) -> tuple[bytes, bytes | None]:
    opening = rfb.NoAuthOpening()
    to_browser, rest = b"", None
    for chunk in chunks:
        if rest is not None:  # over: the rest is relayed to the VNC server as it comes
            rest += chunk
            continue
        reply, rest = opening.feed(chunk)
        to_browser += reply
    return to_browser, rest


def test_browser_opening_38_as_novnc_sends_it() -> None:
    assert rfb.NoAuthOpening.GREETING == b"RFB 003.008\n"
    assert run_opening([b"RFB 003.008\n", b"\x01"]) == (b"\x01\x01" + bytes(4), b"")


@pytest.mark.parametrize(("chunks", "to_browser", "rest"), [
    ([b"RFB 003.007\n", b"\x01\x01"], b"\x01\x01", b"\x01"),  # 3.7: no SecurityResult for None
    ([b"RFB 003.003\n\x00"], struct.pack(">I", 1), b"\x00"),  # 3.3: the server decides, ClientInit follows
    ([bytes([b]) for b in b"RFB 003.008\n\x01\x01"], b"\x01\x01" + bytes(4), b"\x01"),  # byte by byte
    ([b"RFB 003.008\n\x01\x01"], b"\x01\x01" + bytes(4), b"\x01"),  # all at once, ClientInit included
])
def test_browser_opening_in_any_version_and_framing(chunks, to_browser, rest) -> None:
    assert run_opening(chunks) == (to_browser, rest)


@pytest.mark.parametrize(("chunks", "words"), [
    ([b"GET / HTTP/1.1\r\n"], "not an RFB protocol version"),
    ([b"RFB 003.008\n", b"\x02"], "chose security type 2, not the offered None"),
    ([b"RFB 002.000\n"], "unsupported RFB version"),
])
def test_browser_opening_refuses_junk(chunks, words) -> None:
    with pytest.raises(rfb.RfbError, match=words):
        run_opening(chunks)
