"""Is the worker running a job still there? Each running job holds a lease that its worker renews.

The lease lives in Redis when the panel's processes share one (WEBKVM_REDIS_URL), else in this
process. A worker that dies (kill -9, a crash, a restart) stops renewing, and the lease lapses within
LEASE_SECONDS. Whoever then takes the lease knows the job's worker is gone; holding it also keeps
other processes from tidying up the same job at the same time.
"""

from __future__ import annotations

import os
import secrets
import threading

from webkvm import redis_store
from webkvm.leases import Leases, ProcessLeases
from webkvm.shared_locks import RedisLeases

LEASE_SECONDS = 10.0
_here = ProcessLeases()


def leases() -> Leases:
    shared = redis_store.client()
    return RedisLeases(shared) if shared is not None else _here


def name(job_id: int) -> str:
    return f"job:{job_id}"


def new_owner(what: str) -> str:
    return f"{what}-{os.getpid()}-{secrets.token_hex(6)}"


class Heartbeat:
    """The lease of one running job, renewed every third of its life until stop()."""

    def __init__(self, job_id: int) -> None:
        self.name = name(job_id)
        self.owner = new_owner("worker")
        self.leases = leases()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Take the lease; False when somebody else holds it (the job is being reconciled)."""
        if not self.leases.hold(self.name, LEASE_SECONDS, self.owner):
            return False
        self._thread = threading.Thread(target=self._renew, name=f"heartbeat-{self.name}", daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            try:
                self.leases.hold(self.name, LEASE_SECONDS, self.owner)
            except Exception:  # noqa: S112 - Redis away for a moment: the next round tries again
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.leases.release(self.name, self.owner)
        except Exception:  # noqa: S110 - the lease lapses by itself
            pass


def claim(job_id: int, owner: str, seconds: float = 60.0) -> bool:
    """Take a job's lease for tidying up: True only when no worker renews it any more."""
    return leases().hold(name(job_id), seconds, owner)


def unclaim(job_id: int, owner: str) -> None:
    leases().release(name(job_id), owner)
