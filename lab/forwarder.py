#!/usr/bin/env python3
"""A delaying TCP forwarder on loopback that counts libvirt RPC calls (stdlib only).

    python3 lab/forwarder.py --listen 127.0.0.1:16600 --target 127.0.0.1:16509 --rtt-ms 20

These kernels have no netem, so a "remote" hypervisor is emulated by a forwarder that holds
every chunk for half the round trip in each direction. Each chunk is due at its receive time
plus the delay (never the previous chunk's delivery time plus the delay), so a burst of chunks
costs one delay, not one per chunk, and order is kept because one writer task per direction
delivers them in sequence.

It also parses the client-to-server byte stream as libvirt's remote protocol framing (a 4-byte
big-endian length that includes itself, then program, version, procedure, type, serial, status)
and counts CALL messages except keepalive pings. That only works on plain qemu+tcp without
SASL: TLS or a SASL security layer makes the stream opaque.

In-process use (the event loop runs in its own thread):

    with Forwarder(("127.0.0.1", 16509), rtt_ms=20) as fwd:
        uri = f"qemu+tcp://127.0.0.1:{fwd.port}/system"
        fwd.reset_calls(); ...; print(fwd.calls)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import signal
import struct
import sys
import threading
from collections.abc import Callable

KEEPALIVE_PROGRAM = 0x6B656570  # "keep"
TYPE_CALL = 0
HEADER = struct.Struct(">7I")  # length + the six header words
MAX_FRAME = 64 * 1024 * 1024  # far above libvirt's limit: anything larger means we lost the framing
CHUNK = 256 * 1024


class CallCounter:
    """Counts libvirt CALL frames in one direction of one connection, across chunk boundaries."""

    def __init__(self) -> None:
        self._head = bytearray()  # the start of a frame, until its header is complete
        self._skip = 0  # body bytes of the current frame still to pass over
        self.lost_framing = False

    def feed(self, data: bytes) -> list[int]:
        """Consume `data`; return the procedure numbers of the calls completed in it."""
        calls: list[int] = []
        view, pos = memoryview(data), 0
        while pos < len(view) and not self.lost_framing:
            if self._skip:
                step = min(self._skip, len(view) - pos)
                self._skip -= step
                pos += step
                continue
            need = HEADER.size - len(self._head)
            self._head += view[pos:pos + need]
            pos += min(need, len(view) - pos)
            if len(self._head) < HEADER.size:
                break
            length, program, _version, procedure, msg_type, _serial, _status = HEADER.unpack(self._head)
            self._head.clear()
            if not HEADER.size <= length <= MAX_FRAME:
                self.lost_framing = True  # not libvirt's plain protocol (TLS, SASL layer): stop guessing
                break
            self._skip = length - HEADER.size
            if msg_type == TYPE_CALL and program != KEEPALIVE_PROGRAM:
                calls.append(procedure)
        return calls


class Forwarder:
    """Listens on 127.0.0.1:`port` (0 = any free port) and forwards to `target` with added latency."""

    def __init__(self, target: tuple[str, int], *, rtt_ms: float = 20.0, port: int = 0,
                 listen_host: str = "127.0.0.1") -> None:
        if listen_host != "127.0.0.1":  # the machines' rule: servers listen on 127.0.0.1 only
            raise ValueError(f"the forwarder listens on 127.0.0.1 only, not {listen_host}")
        self.target = target
        self.delay = max(0.0, rtt_ms) / 2000.0  # seconds, each direction
        self.listen_host = listen_host
        self.port = port
        self._lock = threading.Lock()
        self._calls = 0
        self._procedures: collections.Counter[int] = collections.Counter()
        self._connections = 0
        self._framing_lost = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # Counters: safe to read from any thread.
    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def procedures(self) -> dict[int, int]:
        """Calls per libvirt procedure number since the last reset."""
        with self._lock:
            return dict(self._procedures)

    @property
    def connections(self) -> int:
        """Client connections open right now."""
        with self._lock:
            return self._connections

    @property
    def framing_lost(self) -> int:
        """Connections whose stream could not be parsed (so their calls are not counted)."""
        with self._lock:
            return self._framing_lost

    def reset_calls(self) -> None:
        self.take_calls()

    def take_calls(self) -> int:
        """Read and reset in one step, so no call falls between the two."""
        with self._lock:
            calls, self._calls = self._calls, 0
            self._procedures.clear()
            return calls

    # Running in a background thread.
    def start(self) -> Forwarder:
        if self._thread is not None:
            raise RuntimeError("forwarder already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"forwarder-{self.target[1]}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every forwarded connection, then end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = self._thread = None

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # The event loop side.
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_until_signal(self, announce: Callable[[int], None] = lambda port: None) -> None:
        """For the command line: listen in the current loop until SIGINT or SIGTERM."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await self._listen()
        announce(self.port)
        try:
            await stop.wait()
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._connections += 1
        try:
            try:
                server_reader, server_writer = await asyncio.open_connection(*self.target)
            except OSError:
                client_writer.close()
                return
            counter = CallCounter()
            try:
                await asyncio.gather(
                    self._pipe(client_reader, server_writer, counter),
                    self._pipe(server_reader, client_writer, None),
                )
            finally:
                for writer in (client_writer, server_writer):
                    writer.close()
                if counter.lost_framing:
                    with self._lock:
                        self._framing_lost += 1
        finally:
            with self._lock:
                self._connections -= 1
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    counter: CallCounter | None) -> None:
        """Copy one direction; each chunk leaves `delay` after it arrived. EOF travels with the same delay."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                try:
                    chunk = await reader.read(CHUNK)
                except OSError:  # a reset is passed on as an end of stream
                    chunk = b""
                if counter is not None and chunk:
                    self._count(counter.feed(chunk))
                queue.put_nowait((loop.time() + self.delay, chunk))
                if not chunk:
                    break
            await sender
        except OSError:
            pass  # the far side went away: _accept closes both ends
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender

    def _count(self, procedures: list[int]) -> None:
        if procedures:
            with self._lock:
                self._calls += len(procedures)
                self._procedures.update(procedures)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Delaying TCP forwarder that counts libvirt calls.")
    parser.add_argument("--listen", type=_address, required=True, help="127.0.0.1:PORT (0: any free port)")
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="added round trip time (default 20)")
    args = parser.parse_args(argv)
    try:
        forwarder = Forwarder(args.target, rtt_ms=args.rtt_ms, port=args.listen[1], listen_host=args.listen[0])
    except ValueError as exc:
        parser.error(str(exc))
    def announce(port: int) -> None:
        print(f"forwarding {args.listen[0]}:{port} -> {args.target[0]}:{args.target[1]} "
              f"with {args.rtt_ms:g} ms added round trip; Ctrl-C stops", flush=True)

    asyncio.run(forwarder.serve_until_signal(announce))
    print(f"libvirt calls forwarded: {forwarder.calls}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
