"""lab/forwarder.py without libvirt: order, added latency and call counting, through a local echo server."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from lab.forwarder import KEEPALIVE_PROGRAM, CallCounter, Forwarder

REMOTE_PROGRAM = 0x20008086
CALL, REPLY = 0, 1
RTT_MS = 40


def frame(procedure: int, msg_type: int = CALL, program: int = REMOTE_PROGRAM, body: bytes = b"") -> bytes:
    """One libvirt RPC message: length (counting itself), six header words, body."""
    return struct.pack(">7I", 28 + len(body), program, 1, procedure, msg_type, 7, 0) + body


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def forwarder(echo_port: int) -> Iterator[Forwarder]:
    with Forwarder(("127.0.0.1", echo_port), rtt_ms=RTT_MS) as fwd:
        yield fwd


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _receive(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return bytes(data)


def _wait_for(condition, timeout: float = 1.0) -> None:
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.005)


def test_forwards_both_ways_in_order(forwarder: Forwarder) -> None:
    pieces = [bytes([i]) * (1 + i * 37 % 500) for i in range(200)]
    with _connect(forwarder.port) as sock:
        for piece in pieces:
            sock.sendall(piece)
        expected = b"".join(pieces)
        assert _receive(sock, len(expected)) == expected


def test_adds_the_round_trip_once(forwarder: Forwarder) -> None:
    with _connect(forwarder.port) as sock:
        sock.sendall(b"warm")
        _receive(sock, 4)
        started = time.perf_counter()
        sock.sendall(b"ping")
        _receive(sock, 4)
        elapsed_ms = (time.perf_counter() - started) * 1000
    assert RTT_MS <= elapsed_ms < RTT_MS + 25


def test_a_burst_of_chunks_is_not_delayed_per_chunk(forwarder: Forwarder) -> None:
    """Ten chunks sent 2 ms apart arrive about one round trip after the last, not ten round trips later. Counted
    from the last chunk sent: the sender's own sleeps stretch on a busy machine (another test worker)."""
    with _connect(forwarder.port) as sock:
        for i in range(10):
            sock.sendall(bytes([i]) * 10)
            last_sent = time.perf_counter()
            time.sleep(0.002)
        assert _receive(sock, 100) == b"".join(bytes([i]) * 10 for i in range(10))
        elapsed_ms = (time.perf_counter() - last_sent) * 1000
    assert elapsed_ms < RTT_MS + 30


def test_counts_a_call_split_across_chunks(forwarder: Forwarder) -> None:
    message = frame(273, body=b"\0" * 12)
    with _connect(forwarder.port) as sock:
        for cut in (3, 17, 30):  # inside the length, inside the header, inside the body
            sock.sendall(message[:cut])
            time.sleep(0.01)  # lets the forwarder read the first part on its own
            sock.sendall(message[cut:])
            _receive(sock, len(message))
    assert forwarder.calls == 3
    assert forwarder.procedures == {273: 3}


def test_counts_several_calls_in_one_chunk_and_skips_keepalive_and_replies(forwarder: Forwarder) -> None:
    burst = (frame(273) + frame(344, body=b"\1" * 40) + frame(1, program=KEEPALIVE_PROGRAM)
             + frame(157, msg_type=REPLY) + frame(157))
    with _connect(forwarder.port) as sock:
        sock.sendall(burst)
        _receive(sock, len(burst))  # the echo sends the same frames back: server-to-client is not counted
    assert forwarder.take_calls() == 3
    assert forwarder.calls == 0


def test_stop_closes_open_connections(echo_port: int) -> None:
    fwd = Forwarder(("127.0.0.1", echo_port), rtt_ms=0).start()
    sock = _connect(fwd.port)
    sock.sendall(b"x")
    _receive(sock, 1)
    _wait_for(lambda: fwd.connections == 1)
    fwd.stop()
    assert sock.recv(1) == b""  # closed by the forwarder
    sock.close()
    with pytest.raises(OSError):
        _connect(fwd.port).close()


def test_counter_parses_byte_by_byte_and_gives_up_on_garbage() -> None:
    counter = CallCounter()
    stream = frame(273) + frame(1, program=KEEPALIVE_PROGRAM) + frame(344, body=b"x" * 100)
    found = [proc for byte in stream for proc in counter.feed(bytes([byte]))]
    assert found == [273, 344]
    tls = CallCounter()
    assert tls.feed(b"\x16\x03\x01\x02\x00" + b"\0" * 40) == []
    assert tls.lost_framing


def test_listens_on_127_0_0_1_only() -> None:
    for other in ("0.0.0.0", "::", "127.0.0.2"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
            Forwarder(("127.0.0.1", 1), listen_host=other)
