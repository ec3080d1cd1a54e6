"""Per-VM serialisation of the panel's own operations.

libvirt holds a per-domain job lock for up to 30 s; rather than queue behind it, a second
operation on the same VM is refused at once with a clear "busy" message. The lock is taken
in the request thread and released by whoever finishes the work (possibly a worker thread
that outlives the request's deadline), so it is a plain set of keys, not a threading.Lock.
"""

from __future__ import annotations

import threading

from virt.errors import Busy


class VMLocks:
    def __init__(self) -> None:
        self._held: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def acquire(self, host_key: str, vm_uuid: str) -> None:
        """Take the VM's lock or raise Busy."""
        key = (host_key, vm_uuid.lower())
        with self._lock:
            if key in self._held:
                raise Busy("Another action on this VM is still running; try again in a moment.")
            self._held.add(key)

    def release(self, host_key: str, vm_uuid: str) -> None:
        with self._lock:
            self._held.discard((host_key, vm_uuid.lower()))

    def held(self, host_key: str, vm_uuid: str) -> bool:
        with self._lock:
            return (host_key, vm_uuid.lower()) in self._held
