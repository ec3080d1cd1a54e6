"""Redis: where several panel processes keep what they share (leases, per-VM locks, the channel layer).

`client()` is the connection of this process (None when WEBKVM_REDIS_URL is unset: one process,
everything in memory). `PrivateRedis` runs a redis-server of the panel's own on a unix socket in a
folder, for `manage.py serve` (what `make run` starts) and for the tests (which may put it on a loopback TCP
port instead, as a Redis shared by several machines is reached).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from pathlib import Path

import redis
from django.conf import settings


@functools.cache
def client() -> redis.Redis | None:
    url = settings.WEBKVM_REDIS_URL
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5) if url else None


class PrivateRedis:
    """A redis-server listening only on `folder/redis.sock` (no TCP port), nothing written to disk; with
    `port`, only on 127.0.0.1:port instead (no unix socket)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}" if self.port is None else f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/install-system-packages.sh installs it)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        log = (self.folder / "redis.log").open("ab")
        listen = ["--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"] if self.port is None \
            else ["--port", str(self.port), "--bind", "127.0.0.1"]
        self.process = subprocess.Popen(
            [binary, *listen, "--save", "", "--appendonly", "no", "--dir", str(self.folder), "--loglevel", "warning"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.folder / 'redis.log').read_text()[-500:]}")
            try:
                if redis.Redis.from_url(self.url, socket_timeout=1).ping():
                    return self.url
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.socket.unlink(missing_ok=True)
