"""Identical reads of one host that overlap in time share one libvirt call, and a short freshness
window serves later readers from the last answer.

Why: ten people with the VM list open would otherwise ask the host for the same bulk stats ten
times a second. With this, the calls a host receives per second do not grow with its viewers.
Once the window has passed, the next reader starts a new read and, for its first `stale_for`
seconds, readers are still served the last answer: a busy page does not stall every viewer
behind the host's round trips once a second, and a read that hangs (a frozen host) is waited
for, within each reader's deadline, after that short grace. Answers are shared
objects: callers must treat them as read-only. Errors are shared by the readers that waited for
them but never kept. An event saying the host changed (a domain started, a pool was stopped)
drops what was kept for that topic, so nobody is served a stale answer after a change the
panel knows of: the next readers wait for a new read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

FORGET_AFTER = 60.0


@dataclass(eq=False)
class _Entry:
    future: Future[Any]
    topic: str
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    stale: bool = False  # the host changed while the read was in flight: share, but do not keep


@dataclass
class _Slot:
    kept: _Entry | None = None  # the last good answer
    flight: _Entry | None = None  # the read in progress


@dataclass
class SharedReads:
    fresh_for: float = 1.0
    stale_for: float = 1.0  # while a new read is this young, the last answer (at most this much past the window) serves
    _slots: dict[str, _Slot] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def join(self, key: str, topic: str, start: Callable[[], Future[Any]],
             fresh_for: float | None = None) -> tuple[Future[Any], bool]:
        """The future carrying `key`'s answer: a kept one, the one in flight, or a new one from start().
        The flag says whether this caller started it and must wait for it (and so owns its deadline)."""
        window = self.fresh_for if fresh_for is None else fresh_for
        with self._lock:
            now = time.monotonic()
            slot = self._slots.setdefault(key, _Slot())
            kept = slot.kept
            age = now - kept.finished if kept is not None and kept.finished is not None else None
            if kept is not None and age is not None and age < window:
                return kept.future, False
            last = kept.future if kept is not None and age is not None and age < window + self.stale_for else None
            flight = slot.flight
            if flight is not None and not flight.stale:
                young = now - flight.started < self.stale_for
                return (last if last is not None and young and window > 0 else flight.future), False
            future = start()  # raises (host unreachable) before anything is recorded
            entry = _Entry(future, topic)
            slot.flight = entry
        future.add_done_callback(lambda done: self._finished(key, entry, done))
        if last is not None and window > 0:
            return last, False  # the new read serves the next readers
        return future, True

    def _finished(self, key: str, entry: _Entry, future: Future[Any]) -> None:
        with self._lock:
            self._forget_old(time.monotonic())
            slot = self._slots.get(key)
            if slot is None:
                return
            if slot.flight is entry:
                slot.flight = None
            if future.cancelled():
                return
            if future.exception() is not None:
                slot.kept = None  # the host failed: serve nobody its last answer
            elif not entry.stale:
                entry.finished = time.monotonic()
                slot.kept = entry

    def _forget_old(self, now: float) -> None:
        """Drop slots nobody has asked for in a while (a deleted VM's, say): the map must not grow forever."""
        for key, slot in list(self._slots.items()):
            if slot.flight is None and (slot.kept is None or now - (slot.kept.finished or now) > FORGET_AFTER):
                del self._slots[key]

    def invalidate(self, topic: str | None = None) -> None:
        """Forget kept answers of `topic` (all when None); reads in flight are shared but not kept."""
        with self._lock:
            for slot in self._slots.values():
                if slot.kept is not None and (topic is None or slot.kept.topic == topic):
                    slot.kept = None
                if slot.flight is not None and (topic is None or slot.flight.topic == topic):
                    slot.flight.stale = True
