"""Identical reads of one host that overlap in time share one libvirt call, and a short freshness
window serves later readers from the last answer.

Why: ten people with the VM list open would otherwise ask the host for the same bulk stats ten
times a second. With this, the calls a host receives per second do not grow with its viewers.
Answers are shared objects: callers must treat them as read-only. Errors are shared by the
readers that waited for them but never kept. An event saying the host changed (a domain started,
a pool was stopped) drops what was kept for that topic, so nobody is served a stale answer
after a change the panel knows of.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class _Entry:
    future: Future[Any]
    topic: str
    finished: float | None = None
    stale: bool = False  # the host changed while the read was in flight: share, but do not keep


@dataclass
class SharedReads:
    fresh_for: float = 1.0
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def join(self, key: str, topic: str, start: Callable[[], Future[Any]],
             fresh_for: float | None = None) -> tuple[Future[Any], bool]:
        """The future carrying `key`'s answer: a kept fresh one, the one in flight, or a new one from
        start(). The flag says whether this caller started it (and so owns its deadline)."""
        window = self.fresh_for if fresh_for is None else fresh_for
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not entry.stale:
                if entry.finished is None:
                    return entry.future, False
                if time.monotonic() - entry.finished < window:
                    return entry.future, False
            future = start()  # raises (host unreachable) before anything is recorded
            entry = _Entry(future, topic)
            self._entries[key] = entry
        future.add_done_callback(lambda done: self._finished(key, entry, done))
        return future, True

    def _finished(self, key: str, entry: _Entry, future: Future[Any]) -> None:
        with self._lock:
            failed = future.cancelled() or future.exception() is not None
            if failed or entry.stale:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            else:
                entry.finished = time.monotonic()

    def invalidate(self, topic: str | None = None) -> None:
        """Forget kept answers of `topic` (all when None); reads in flight are shared but not kept."""
        with self._lock:
            for key, entry in list(self._entries.items()):
                if topic is None or entry.topic == topic:
                    if entry.finished is None:
                        entry.stale = True
                    else:
                        del self._entries[key]
