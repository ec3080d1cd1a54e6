"""The VNC path: a small RFB client, and the bench of the console proxy against a direct connection.

RfbClient speaks just enough RFB to ask for framebuffer updates in Raw encoding and read them
(also used by the lab tests to look at a VM's screen). It runs over a plain TCP socket or over
the console WebSocket, so the same client measures both paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import libvirt

from console import rfb

RAW = 0
LED_STATE = -261  # QEMU's LED-state pseudo-encoding: answered at once on every SetEncodings that names it
MSG_UPDATE, MSG_COLOURS, MSG_BELL, MSG_CUT_TEXT = 0, 1, 2, 3


class Transport(Protocol):
    def send(self, data: bytes) -> None: ...
    def recv(self) -> bytes: ...  # some bytes; b"" once the peer closed
    def close(self) -> None: ...


class TcpTransport:
    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes:
        return self.sock.recv(1 << 20)

    def close(self) -> None:
        self.sock.close()


class WebSocketTransport:
    """The console WebSocket, as the browser opens it (Origin and login cookie)."""

    def __init__(self, url: str, origin: str, cookie: str, timeout: float = 10.0, **options: Any) -> None:
        from websockets.sync.client import connect

        self.timeout = timeout
        self.ws = connect(url, origin=origin, additional_headers={"Cookie": cookie}, open_timeout=timeout,
                          max_size=None, compression=None, legacy=True, **options)

    def send(self, data: bytes) -> None:
        self.ws.send(data)

    def recv(self) -> bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            message = self.ws.recv(timeout=self.timeout)
        except ConnectionClosed:
            return b""
        return message if isinstance(message, bytes) else message.encode()

    @property
    def close_reason(self) -> str:
        received = self.ws.protocol.close_rcvd
        return f"{received.code} {received.reason}" if received else ""

    def close(self) -> None:
        self.ws.close()


@dataclass
class Update:
    rects: int
    size: int  # bytes of the whole FramebufferUpdate message
    pixels: list[tuple[int, int, int, int, bytes]]  # (x, y, w, h, raw pixels) when kept
    began: float = 0.0  # perf_counter() when its first byte was read


class RfbClient:
    """Opens RFB (None or VNC authentication), shares the display, asks for Raw only."""

    def __init__(self, transport: Transport, password: str | None = None) -> None:
        self.transport = transport
        self._buffer = bytearray()
        self._pos = 0
        self.version = rfb.client_opening(self.read, transport.send, password)
        transport.send(b"\x01")  # ClientInit: shared, so other viewers stay connected
        self.width, self.height = struct.unpack(">HH", self.read(4))
        self.pixel_format = self.read(16)
        self.bytes_per_pixel = self.pixel_format[0] // 8
        (name_length,) = struct.unpack(">I", self.read(4))
        self.name = self.read(name_length).decode(errors="replace")
        transport.send(struct.pack(">BxHi", 2, 1, RAW))  # SetEncodings: Raw only, so sizes are predictable

    def _fill(self, size: int) -> None:
        while len(self._buffer) - self._pos < size:
            chunk = self.transport.recv()
            if not chunk:
                raise rfb.RfbError("the connection closed")
            if self._pos > 1 << 20:  # drop what was read, now and then
                del self._buffer[:self._pos]
                self._pos = 0
            self._buffer += chunk

    def read(self, size: int) -> bytes:
        self._fill(size)
        data = bytes(self._buffer[self._pos:self._pos + size])
        self._pos += size
        return data

    def skip(self, size: int) -> None:
        """Consume `size` bytes without copying them (throughput runs do not look at pixels)."""
        while size:
            if self._pos >= len(self._buffer):
                self._fill(1)
            step = min(size, len(self._buffer) - self._pos)
            self._pos += step
            size -= step

    def request(self, incremental: bool = False, area: tuple[int, int, int, int] | None = None) -> None:
        x, y, w, h = area or (0, 0, self.width, self.height)
        self.transport.send(struct.pack(">BBHHHH", 3, int(incremental), x, y, w, h))

    def read_update(self, keep_pixels: bool = False) -> Update:
        """The next FramebufferUpdate; Bell, ServerCutText and colour maps in between are skipped."""
        while True:
            kind = self.read(1)[0]
            began = time.perf_counter()
            if kind == MSG_UPDATE:
                break
            if kind == MSG_BELL:
                continue
            if kind == MSG_CUT_TEXT:
                self.skip(3)
                self.skip(struct.unpack(">I", self.read(4))[0])
            elif kind == MSG_COLOURS:
                self.skip(1 + 2)
                self.skip(6 * struct.unpack(">H", self.read(2))[0])
            else:
                raise rfb.RfbError(f"unexpected server message type {kind}")
        self.skip(1)
        (count,) = struct.unpack(">H", self.read(2))
        size, pixels = 4, []
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", self.read(12))
            if encoding == LED_STATE:
                self.skip(1)
                size += 13
                continue
            if encoding != RAW:
                raise rfb.RfbError(f"the server sent encoding {encoding}, not Raw")
            length = w * h * self.bytes_per_pixel
            if keep_pixels:
                pixels.append((x, y, w, h, self.read(length)))
            else:
                self.skip(length)
            size += 12 + length
        return Update(count, size, pixels, began)

    def screen(self) -> Screen:
        """The whole screen now (a non-incremental update), as RGB."""
        self.request()
        update = self.read_update(keep_pixels=True)
        frame = Screen(self.width, self.height)
        for x, y, w, h, data in update.pixels:
            frame.paste(x, y, w, h, data, self.bytes_per_pixel)
        return frame

    def close(self) -> None:
        self.transport.close()


class Screen:
    """A screen's pixels as lit/unlit, enough to find lines of text."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.lit = bytearray(width * height)

    def paste(self, x: int, y: int, w: int, h: int, data: bytes, bpp: int) -> None:
        # qemu's default format: 32 bpp true colour, little-endian, 8 bits per channel.
        for row in range(h):
            line = data[row * w * bpp:(row + 1) * w * bpp]
            for col in range(w):
                pixel = line[col * bpp:col * bpp + 3]
                self.lit[(y + row) * self.width + x + col] = sum(pixel) > 200

    def text_rows(self, cell: tuple[int, int] = (9, 16)) -> list[int]:
        """Per text row (VGA text mode: 9x16 cells), how many character cells up to its last lit one."""
        width, height = cell
        rows = []
        for top in range(0, self.height - height + 1, height):
            last = -1
            for y in range(top, top + height):
                line = self.lit[y * self.width:(y + 1) * self.width]
                end = line.rfind(1)
                last = max(last, end)
            rows.append(last // width + 1 if last >= 0 else 0)
        return rows


# ---- the bench: the panel's console proxy against a direct connection --------------------------------

VM_NAME = "lab-bench-vnc"  # lab-bench-*: removed with the other bench VMs, also after an interrupted run
THROUGHPUT_TARGET = 0.95  # proxied bytes/s at least this share of direct
ADDED_MS_TARGET = 2.0  # median round trip through the proxy at most this much above direct
ROUNDS = 3  # direct and proxied measurements alternate, so drift on the shared machine hits both


@dataclass
class PathFigures:
    updates: int = 0
    update_bytes: int = 0
    seconds: float = 0.0
    transfer_seconds: float = 0.0  # first to last byte of each update: the path's own speed, without qemu's pacing
    echo_ms: list[float] = field(default_factory=list)
    update_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "updates_per_s": round(self.updates / self.seconds, 2),
            "bytes_per_s": round(self.update_bytes / self.seconds),
            "updates": self.updates,
            "seconds": round(self.seconds, 2),
            "transfer_bytes_per_s": round(self.update_bytes / self.transfer_seconds),
            "echo_rtt_median_ms": round(statistics.median(self.echo_ms), 3),
            "echo_rtt_p90_ms": round(statistics.quantiles(self.echo_ms, n=10)[-1], 3),
            "small_update_rtt_median_ms": round(statistics.median(self.update_ms), 1),
        }


def throughput(viewer: RfbClient, seconds: float, figures: PathFigures) -> None:
    """Full-screen, non-incremental FramebufferUpdateRequests, one at a time (as viewers do)."""
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        viewer.request()
        update = viewer.read_update()
        figures.transfer_seconds += time.perf_counter() - update.began
        figures.updates += 1
        figures.update_bytes += update.size
    figures.seconds += time.perf_counter() - began


def round_trips(viewer: RfbClient, samples: int, figures: PathFigures) -> None:
    """Two small request -> update round trips. The LED-state echo: qemu answers a SetEncodings that
    names LED state at once with a 17-byte FramebufferUpdate, so it times the path, not qemu. A
    1x1 FramebufferUpdateRequest waits for qemu's display refresh timer (30 ms to seconds), so it is
    reported for information only."""
    echo = struct.pack(">BxHii", 2, 2, RAW, LED_STATE)
    for _ in range(samples):
        began = time.perf_counter()
        viewer.transport.send(echo)
        viewer.read_update()
        figures.echo_ms.append((time.perf_counter() - began) * 1000)
    for _ in range(max(3, samples // 50)):
        began = time.perf_counter()
        viewer.request(area=(0, 0, 1, 1))
        viewer.read_update()
        figures.update_ms.append((time.perf_counter() - began) * 1000)


class PanelServer:
    """The panel as `make run` serves it (gunicorn, one uvicorn worker) on a free loopback port,
    with the bench's data dir and database, so the console path is the production one."""

    def __init__(self, repo: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (open while the server runs; closed in close())
        self.process = subprocess.Popen(
            [str(repo / ".venv" / "bin" / "gunicorn"), "webkvm.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
             "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--graceful-timeout", "2"],
            cwd=repo, env=os.environ.copy(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.2)
        said = self.output()
        self.close()
        raise RuntimeError(f"the panel did not start: {said}")

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Console:
    """Tickets as the console page gets them: a logged-in user's POST (in this process, same database)."""

    def __init__(self, vm_uuid: str) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from hosts.models import Host

        self.host, _ = Host.objects.update_or_create(name="bench-vnc", defaults={"transport": "local",
                                                                                 "path": "system"})
        user = get_user_model().objects.filter(is_superuser=True).first() or \
            get_user_model().objects.create_superuser("bench-admin", "", None)
        self.client = Client(HTTP_HOST="127.0.0.1")
        self.client.force_login(user)
        self.vm_uuid = vm_uuid

    def open(self, server: PanelServer) -> WebSocketTransport:
        from django.urls import reverse

        response = self.client.post(reverse("console:ticket", args=[self.host.name, self.vm_uuid]))
        if response.status_code != 200:
            raise RuntimeError(f"no console ticket: HTTP {response.status_code} {response.content[:200]!r}")
        answer = response.json()
        url = f"ws://127.0.0.1:{server.port}{answer['ws_path']}"
        cookie = f"sessionid={self.client.cookies['sessionid'].value}"
        return WebSocketTransport(url, origin=server.origin, cookie=cookie, subprotocols=answer["protocols"])


def _start_vm(lab: dict[str, Any]) -> tuple[libvirt.virConnect, libvirt.virDomain, int]:
    from tests.lab import domain_xml, remove_domain
    from virt.xml.domain import Domain

    conn = libvirt.open(lab["unix_uri"])
    for left in conn.listAllDomains(0):
        if left.name() == VM_NAME:  # from an interrupted run
            remove_domain(left)
    dom = conn.defineXML(domain_xml(VM_NAME, lab["domain_type"], memory_mib=32))
    dom.create()
    port = Domain.from_xml(dom.XMLDesc(0)).graphics[0].port
    if not port or port <= 0:
        raise RuntimeError(f"{VM_NAME} has no VNC port")
    time.sleep(3)  # let SeaBIOS draw and the boot settle: a fresh guest keeps a CPU busy
    return conn, dom, port


def side_by_side(calls: list[tuple[Any, ...]]) -> None:
    """Run fn(*args) for each (fn, *args) in its own thread; re-raise the first failure."""
    failures: list[BaseException] = []

    def guarded(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            failures.append(exc)
    threads = [threading.Thread(target=guarded, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def run(lab: dict[str, Any], seconds: float, samples: int) -> dict[str, Any]:
    """Measure both paths on one lab VM; Django must be set up (bench.panel.setup_django)."""
    from tests.lab import remove_domain

    conn, dom, port = _start_vm(lab)
    server = None
    try:
        console = Console(dom.UUIDString())
        server = PanelServer(Path(__file__).resolve().parent.parent)
        paths = {"direct": PathFigures(), "proxy": PathFigures()}
        for _ in range(ROUNDS):
            viewers = {"direct": RfbClient(TcpTransport(("127.0.0.1", port))), "proxy": RfbClient(console.open(server))}
            try:
                for viewer in viewers.values():
                    round_trips(viewer, 20, PathFigures())  # warm-up: first requests, allocations
                # Both at once: qemu sends updates on its refresh timer, whose pace wanders by tens of percent;
                # side by side both paths wait for the same ticks, and the proxy shows only if it misses some.
                side_by_side([(throughput, viewers[name], seconds / ROUNDS, paths[name]) for name in paths])
                for name, viewer in viewers.items():  # one at a time: a round trip is timed alone
                    round_trips(viewer, samples // ROUNDS, paths[name])
            finally:
                for viewer in viewers.values():
                    viewer.close()
        viewer = viewers["direct"]
        screen = {"width": viewer.width, "height": viewer.height, "bytes_per_pixel": viewer.bytes_per_pixel}
    finally:
        if server is not None:
            server.close()
        remove_domain(dom)
        conn.close()
    return report(paths, screen, seconds, samples)


def report(paths: dict[str, PathFigures], screen: dict[str, int], seconds: float, samples: int) -> dict[str, Any]:
    direct, proxy = paths["direct"].summary(), paths["proxy"].summary()
    ratio = proxy["bytes_per_s"] / direct["bytes_per_s"] if direct["bytes_per_s"] else 0.0
    added = proxy["echo_rtt_median_ms"] - direct["echo_rtt_median_ms"]
    return {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {"seconds": seconds, "round_trips": samples, "rounds": ROUNDS, "screen": screen,
                   "encoding": "Raw", "proxy": "panel's Channels consumer under gunicorn + uvicorn worker, "
                                            "ws:// on loopback, real ticket"},
        "direct": direct,
        "proxy": proxy,
        "throughput_ratio": round(ratio, 3),
        "added_rtt_ms": round(added, 3),
        "targets": [
            {"name": f"proxied throughput at least {THROUGHPUT_TARGET:.0%} of direct",
             "pass": ratio >= THROUGHPUT_TARGET,
             "detail": f"{proxy['bytes_per_s'] / 1e6:.2f} MB/s ({proxy['updates_per_s']} updates/s) vs "
                       f"{direct['bytes_per_s'] / 1e6:.2f} MB/s ({direct['updates_per_s']} updates/s): {ratio:.1%}"},
            {"name": f"added round trip under {ADDED_MS_TARGET:g} ms", "pass": added < ADDED_MS_TARGET,
             "detail": f"median {proxy['echo_rtt_median_ms']} ms through the proxy vs "
                       f"{direct['echo_rtt_median_ms']} ms direct: +{added:.3f} ms"},
        ],
    }


def table(result: dict[str, Any]) -> str:
    rows = [("path", "updates/s", "MB/s", "transfer MB/s", "echo RTT ms (median)", "p90", "1x1 update RTT ms")]
    for name in ("direct", "proxy"):
        s = result[name]
        rows.append((name, str(s["updates_per_s"]), f"{s['bytes_per_s'] / 1e6:.2f}",
                     f"{s['transfer_bytes_per_s'] / 1e6:.1f}", str(s["echo_rtt_median_ms"]), str(s["echo_rtt_p90_ms"]),
                     str(s["small_update_rtt_median_ms"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths, strict=True))) for row in rows)


def write(path: Path, result: dict[str, Any]) -> None:
    """Add the VNC figures under "vnc", keeping every other key of results.json."""
    record: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            record = json.loads(path.read_text())
    record["vnc"] = result
    path.write_text(json.dumps(record, indent=2) + "\n")
