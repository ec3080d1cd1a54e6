"""Per-VM serialisation of the panel's own operations.

libvirt holds a per-domain job lock for up to 30 s; rather than queue behind it, a second
operation on the same VM is refused at once with a clear "busy" message. The lock is taken
in the request thread and released by whoever finishes the work (possibly a worker thread
that outlives the request's deadline), so it is a plain set of keys, not a threading.Lock.
"""

from __future__ import annotations

import secrets
import threading

from virt.errors import Busy, gettext_noop

BUSY_MESSAGE = gettext_noop("Another action on this VM is still running; try again in a moment.")


class VMLocks:
    def __init__(self) -> None:
        self._held: dict[tuple[str, str], str] = {}  # key -> token of the holder
        self._lock = threading.Lock()

    def acquire(self, host_key: str, vm_uuid: str) -> str:
        """Take the VM's lock or raise Busy; returns the holder's token (for adopt and release_token)."""
        key, token = (host_key, vm_uuid.lower()), secrets.token_hex(16)
        with self._lock:
            if key in self._held:
                raise Busy(BUSY_MESSAGE)
            self._held[key] = token
        return token

    def adopt(self, host_key: str, vm_uuid: str, token: str) -> None:
        """Hold a lock taken elsewhere (by the request that started a job), or take it again with the
        same token if it lapsed meanwhile; Busy when somebody else holds it now."""
        key = (host_key, vm_uuid.lower())
        with self._lock:
            if self._held.setdefault(key, token) != token:
                raise Busy(BUSY_MESSAGE)

    def release(self, host_key: str, vm_uuid: str) -> None:
        with self._lock:
            self._held.pop((host_key, vm_uuid.lower()), None)

    def release_token(self, host_key: str, vm_uuid: str, token: str) -> None:
        """Release the lock if it is still the one taken with `token` (whoever took it)."""
        key = (host_key, vm_uuid.lower())
        with self._lock:
            if self._held.get(key) == token:
                del self._held[key]

    def held(self, host_key: str, vm_uuid: str) -> bool:
        with self._lock:
            return (host_key, vm_uuid.lower()) in self._held
