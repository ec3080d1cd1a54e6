"""Leases and per-VM locks that every panel process sees, kept in Redis.

Each has an owner (a random token of the process or the acquisition) and an expiry: a holder that
dies stops renewing and its lease or lock lapses after a few seconds, so a crashed worker never keeps
a VM "busy" forever. Compare-and-delete/extend run as Lua scripts, so a lapsed holder never removes
or extends what another process took since.
"""

from __future__ import annotations

import os
import secrets
import threading

import redis

from virt.errors import Busy
from virt.locks import BUSY_MESSAGE

_EXTEND = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0"""
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0"""



class RedisLeases:
    """webkvm.leases.Leases in Redis: one holder per name among all panel processes."""

    def __init__(self, client: redis.Redis, prefix: str = "webkvm:lease:") -> None:
        self.client = client
        self.prefix = prefix
        self.owner = f"{os.getpid()}-{secrets.token_hex(8)}"
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    def hold(self, name: str, seconds: float, owner: str | None = None) -> bool:
        key, ms, me = self.prefix + name, max(1, int(seconds * 1000)), owner or self.owner
        if self._extend(keys=[key], args=[me, ms]):
            return True
        return bool(self.client.set(key, me, nx=True, px=ms))

    def release(self, name: str, owner: str | None = None) -> None:
        self._release(keys=[self.prefix + name], args=[owner or self.owner])


class RedisVMLocks:
    """virt.locks.VMLocks in Redis: a second operation on a VM, from any process, is refused with Busy.

    A lock lasts `ttl` seconds and this process renews the ones it holds every ttl/3 while their work
    runs (operations may take minutes); a process that dies lets them lapse within `ttl`."""

    def __init__(self, client: redis.Redis, ttl: float = 15.0, prefix: str = "webkvm:vmlock:") -> None:
        self.client = client
        self.ttl_ms = int(ttl * 1000)
        self.prefix = prefix
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self._mine: dict[str, str] = {}  # key -> token of the locks this process holds
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()

    def _key(self, host_key: str, vm_uuid: str) -> str:
        return f"{self.prefix}{host_key}:{vm_uuid.lower()}"

    def acquire(self, host_key: str, vm_uuid: str) -> str:
        """Take the VM's lock or raise Busy; returns its token (for adopt and release_token)."""
        key, token = self._key(host_key, vm_uuid), secrets.token_hex(16)
        if not self.client.set(key, token, nx=True, px=self.ttl_ms):
            raise Busy(BUSY_MESSAGE)
        self._hold(key, token)
        return token

    def adopt(self, host_key: str, vm_uuid: str, token: str) -> None:
        """Renew, from this process too, a lock another process took (the request that started a job),
        or take it again with the same token if it lapsed meanwhile; Busy when somebody else holds it."""
        key = self._key(host_key, vm_uuid)
        if not self._extend(keys=[key], args=[token, self.ttl_ms]) and not self.client.set(
                key, token, nx=True, px=self.ttl_ms):
            raise Busy(BUSY_MESSAGE)
        self._hold(key, token)

    def _hold(self, key: str, token: str) -> None:
        with self._lock:
            self._mine[key] = token
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew, name="vm-lock-renewer", daemon=True)
                self._renewer.start()

    def release(self, host_key: str, vm_uuid: str) -> None:
        key = self._key(host_key, vm_uuid)
        with self._lock:
            token = self._mine.pop(key, None)
        if token is not None:
            self._release(keys=[key], args=[token])

    def release_token(self, host_key: str, vm_uuid: str, token: str) -> None:
        """Release the lock if it is still the one taken with `token`, by whichever process took it."""
        key = self._key(host_key, vm_uuid)
        with self._lock:
            if self._mine.get(key) == token:
                del self._mine[key]
        self._release(keys=[key], args=[token])

    def held(self, host_key: str, vm_uuid: str) -> bool:
        return bool(self.client.exists(self._key(host_key, vm_uuid)))

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            with self._lock:
                mine = dict(self._mine)
            for key, token in mine.items():
                try:
                    renewed = self._extend(keys=[key], args=[token, self.ttl_ms])
                except redis.RedisError:
                    continue  # the next round tries again; the lock lapses only if Redis stays away for ttl
                if not renewed:  # released by another process (a job's worker) or lapsed: no longer ours
                    with self._lock:
                        if self._mine.get(key) == token:
                            del self._mine[key]
