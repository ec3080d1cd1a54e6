"""Volume upload and download through libvirt's stream API.

Streams run over whatever connection the host has (unix socket, tcp, tls, ssh), so the
panel need not run on the hypervisor. Data passes through in chunks and is never held
whole. An upload writes into a volume made for it; any failure or interruption aborts the
stream and deletes that volume, so no half-written volume is left behind.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import libvirt

from virt.errors import InvalidInput, InvalidState, Text, gettext_noop, translate
from virt.storage import lookup, pool_summary
from virt.storage_rules import Problem, StorageInputError, check_name
from virt.xml.storage import StorageVolume

log = logging.getLogger(__name__)
RECV_BYTES = 256 << 10  # libvirt's stream packets carry at most 256 KiB
# What one virStreamSend hands libvirt. Larger calls are accepted but travel as one oversized message
# that the daemon handles at about half the speed (512 MiB over loopback qemu+tcp: 1.1 s in 2 MiB
# sends, 0.6 s in 256 KiB sends, the same client CPU).
SEND_BYTES = 256 << 10


class Upload:
    """One upload in progress: `send()` chunks, then `finish()`; `abort()` on any failure."""

    def __init__(self, pool: str, name: str, size: int, vol: libvirt.virStorageVol, stream: libvirt.virStream) -> None:
        self.pool, self.name, self.size = pool, name, size
        self.sent = 0
        self._vol, self._stream = vol, stream
        self.closed = False

    @classmethod
    def begin(cls, conn: libvirt.virConnect, pool_name: str, name: str, size: int) -> Upload:
        """Make a volume of exactly `size` bytes and open a stream into it."""
        try:
            check_name(name, "volume name")
        except ValueError as exc:
            raise StorageInputError([Problem.of("name", exc)]) from None
        if size < 1:
            raise StorageInputError([Problem("file", Text(gettext_noop("The file is empty.")))])
        summary = pool_summary(conn, pool_name)
        if not summary.active:
            raise InvalidState(gettext_noop("Pool {pool} is not active: start it first."), pool=pool_name)
        if size > summary.available:
            raise StorageInputError([Problem("file", Text(gettext_noop("Pool {pool} has only {available} bytes free, "
                                                                    "the file has {size}."), pool=pool_name,
                                                                  available=summary.available, size=size))])
        pool = lookup(conn, pool_name)
        if name in {str(v.name()) for v in pool.listAllVolumes(0)}:
            raise StorageInputError([Problem("name",
                                             Text(gettext_noop("Pool {pool} already has a volume named {name}."),
                                                          pool=pool_name, name=name))])
        # Raw: the bytes land as they are; libvirt reads the real format (qcow2, iso) from them afterwards.
        xml = StorageVolume.new(name=name, capacity=size, allocation=0, format="raw").to_xml()
        vol = pool.createXML(xml, 0)
        try:
            stream = conn.newStream(0)
            vol.upload(stream, 0, size, 0)
        except libvirt.libvirtError:
            _delete_quietly(vol)
            raise
        return cls(pool_name, name, size, vol, stream)

    def send(self, *parts: bytes) -> None:
        """Blocks until libvirt has taken the bytes of `parts`, in order, as messages of SEND_BYTES;
        safe to call from any thread (errors come translated)."""
        if self.sent + sum(len(part) for part in parts) > self.size:
            raise InvalidInput(gettext_noop("More data than the announced {size} bytes."), size=self.size)
        try:
            for packet in packets(parts, SEND_BYTES):
                while packet:
                    written = int(self._stream.send(packet))
                    if written <= 0:
                        raise InvalidState(gettext_noop("The hypervisor stopped accepting data."))
                    self.sent += written
                    packet = packet[written:]
        except libvirt.libvirtError as exc:
            raise translate(exc) from None

    def finish(self) -> None:
        if self.sent != self.size:
            raise InvalidInput(gettext_noop("Only {sent} of {size} bytes arrived."), sent=self.sent, size=self.size)
        self._stream.finish()
        self.closed = True

    def abort(self) -> str:
        """Abort the stream and delete the volume; returns what could not be removed, in words."""
        if self.closed:
            return ""
        self.closed = True
        try:
            self._stream.abort()
        except libvirt.libvirtError:
            pass  # the stream may already be broken: that is why we abort
        return _delete_quietly(self._vol)


def packets(parts: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The bytes of `parts` in pieces of at most `size`, copying as little as possible: a part that
    fits is passed on as it is, consecutive small parts are joined while they fit, and only a part
    larger than `size` is cut."""
    held: list[bytes] = []
    count = 0
    for part in parts:
        if held and count + len(part) > size:
            yield held[0] if len(held) == 1 else b"".join(held)
            held, count = [], 0
        if len(part) > size:
            view = memoryview(part)
            for pos in range(0, len(view), size):
                yield bytes(view[pos:pos + size])
        elif part:
            held.append(part)
            count += len(part)
    if held:
        yield held[0] if len(held) == 1 else b"".join(held)


def _delete_quietly(vol: libvirt.virStorageVol) -> str:
    try:
        vol.delete(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return ""
        log.warning("could not delete the partial volume %s: %s", vol.name(), exc)
        return Text(gettext_noop("The partial volume {name} could not be deleted ({error}): delete it by hand."),
                    name=vol.name(), error=translate(exc))
    return ""


@dataclass
class _Segment:
    stream: libvirt.virStream
    start: int
    end: int


class Download:
    """One download in progress: `read()` until it returns b"", or `close()` early.

    libvirt's client queues whatever a stream delivers until it is read, with no limit, so a
    reader slower than the link (a browser on a slow line) would make the panel hold the rest
    of the volume. The volume is therefore read in segments of SEGMENT_BYTES, one stream each;
    the next segment is asked for when half of the current one is read, so the link never idles
    and at most two segments wait in memory, whatever the volume's size.
    """

    SEGMENT_BYTES = 16 << 20

    def __init__(self, conn: libvirt.virConnect, vol: libvirt.virStorageVol, name: str, length: int) -> None:
        self.name, self.length = name, length
        self.received = 0
        self._conn, self._vol = conn, vol
        self._segments: deque[_Segment] = deque()
        self.closed = length == 0

    @classmethod
    def begin(cls, conn: libvirt.virConnect, pool_name: str, name: str) -> Download:
        vol = lookup(conn, pool_name).storageVolLookupByName(name)
        try:  # the bytes a download delivers: a file's size (sparse raw: its capacity)
            length = int(vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])
        except libvirt.libvirtError:
            length = int(vol.info()[1])
        download = cls(conn, vol, name, length)
        if length:
            download._ask_next()  # fails here, before any byte is promised to the browser
        return download

    def _ask_next(self) -> None:
        start = self._segments[-1].end if self._segments else self.received
        if start >= self.length:
            return
        end = min(start + self.SEGMENT_BYTES, self.length)
        stream = self._conn.newStream(0)
        self._vol.download(stream, start, end - start, 0)
        self._segments.append(_Segment(stream, start, end))

    def read(self, at_least: int) -> bytes:
        """The next chunk of about `at_least` bytes; b"" at the end. Safe in any thread (errors come translated)."""
        try:
            return self._read(at_least)
        except libvirt.libvirtError as exc:
            self.close()
            raise translate(exc) from None

    def _read(self, at_least: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < at_least and not self.closed:
            if not self._segments:
                self._ask_next()
            current = self._segments[0]
            if len(self._segments) == 1 and self.received - current.start >= (current.end - current.start) // 2:
                self._ask_next()
            chunk = current.stream.recv(RECV_BYTES)
            if isinstance(chunk, int) or not chunk:  # end of this segment (an int only on non-blocking streams)
                current.stream.finish()
                self._segments.popleft()
                if self.received != current.end:
                    self.close()
                    raise InvalidState(gettext_noop("The volume ended after {received} of {length} bytes."),
                                       received=self.received, length=self.length)
                self.closed = self.received == self.length
                continue
            if self.received + len(chunk) > current.end:
                self.close()
                raise InvalidState(gettext_noop("The hypervisor sent more than the volume holds."))
            parts.append(chunk)
            got += len(chunk)
            self.received += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        """Stop early (the browser went away, or a failure): abort what is still open."""
        self.closed = True
        while self._segments:
            segment = self._segments.popleft()
            try:
                segment.stream.abort()
            except libvirt.libvirtError:
                pass
