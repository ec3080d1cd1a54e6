"""Leases: which process of the panel does a piece of shared work (a host's live watcher).

A lease has a name, an owner (this process) and an expiry that its holder renews; a holder that
dies stops renewing and another process takes the work over when the lease expires. With one
panel process every lease is this process's; with WEBKVM_REDIS_URL the leases live in Redis
(webkvm/shared_locks.py) and are shared by every process of the panel.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from typing import Protocol


class Leases(Protocol):
    def hold(self, name: str, seconds: float, owner: str | None = None) -> bool:
        """Take or renew `name` for this process (or for `owner` within it) for `seconds`; False while
        another holder has it."""

    def release(self, name: str, owner: str | None = None) -> None:
        """Give `name` up now (a clean stop), so another holder need not wait for the expiry."""


class ProcessLeases:
    """Leases within one process: for the single-process panel and for tests."""

    def __init__(self) -> None:
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._held: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def hold(self, name: str, seconds: float, owner: str | None = None) -> bool:
        me = owner or self.owner
        now = time.monotonic()
        with self._lock:
            current = self._held.get(name)
            if current is not None and current[0] != me and current[1] > now:
                return False
            self._held[name] = (me, now + seconds)
            return True

    def release(self, name: str, owner: str | None = None) -> None:
        me = owner or self.owner
        with self._lock:
            if self._held.get(name, ("", 0.0))[0] == me:
                del self._held[name]


def _configured() -> Leases:
    from webkvm.redis_store import client

    shared = client()
    if shared is None:
        return ProcessLeases()
    from webkvm.shared_locks import RedisLeases

    return RedisLeases(shared)


leases: Leases = _configured()
