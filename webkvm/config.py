"""Configuration from WEBKVM_* environment variables, with safe defaults.

Operators never edit settings.py. Any invalid value raises ConfigError, which
manage.py and the ASGI entry point turn into a one-line message and exit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import zoneinfo
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A WEBKVM_* variable is missing or invalid."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, not {value}")
    return value


def env_rate(name: str, default: str) -> str:
    """A request rate as Django REST framework reads it: `600/min` (per s, min, hour or day)."""
    value = env_str(name, default) or default
    count, _, period = value.partition("/")
    if not count.isdigit() or int(count) < 1 or period not in ("s", "sec", "second", "m", "min", "minute",
                                                              "h", "hour", "d", "day"):
        raise ConfigError(f"{name} must be a rate such as 600/min (per s, min, hour or day), not {value!r}")
    return value


def env_time_zone(name: str, default: str) -> str:
    """An IANA time zone name such as UTC or Europe/Berlin: every page writes instants in it."""
    value = env_str(name, default) or default
    try:
        zoneinfo.ZoneInfo(value)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ConfigError(f"{name} must be a time zone name such as UTC or Europe/Berlin, not {value!r}") from None
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_paths(name: str, default: list[str]) -> list[str]:
    """Absolute, normalised folder paths (e.g. where storage pools may live)."""
    paths = env_list(name, default)
    for path in paths:
        if not path.startswith("/") or os.path.normpath(path) != path or any(ord(c) < 32 for c in path):
            raise ConfigError(f"{name}: {path!r} is not an absolute, normalised path such as /var/lib/libvirt/images")
    return paths


def env_origins(name: str, default: list[str]) -> list[str]:
    origins = env_list(name, default)
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"{name}: {origin!r} is not an origin such as https://panel.example.org")
    return origins


def data_dir(base_dir: Path) -> Path:
    """The data dir, created 0700 (mkdir's mode is only ever narrowed by the umask, never widened)."""
    path = Path(env_str("WEBKVM_DATA_DIR", str(base_dir / "var"))).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"WEBKVM_DATA_DIR {path} cannot be created: {exc.strerror}") from None
    return path


def private_database(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (it would follow the umask) and narrow an existing
    one; SQLite gives its -wal and -shm files the database file's mode."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    except OSError as exc:
        raise ConfigError(f"the database file {path} cannot be created: {exc.strerror}") from None
    with contextlib.suppress(OSError):  # another user's file: theirs to protect
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)


def private_file(path: Path, make: bytes | None = None) -> bytes:
    """Read a 0600 file, creating it with `make` on first use (in a 0700 folder when that is new too)."""
    if not path.exists() and make is not None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(make)
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def secret_key(data: Path) -> str:
    key = env_str("WEBKVM_SECRET_KEY", "")
    if key:
        if len(key) < 32:
            raise ConfigError("WEBKVM_SECRET_KEY must be at least 32 characters long")
        return key
    return private_file(data / "secret_key", secrets.token_urlsafe(50).encode()).decode()


def env_redis_url(name: str) -> str:
    """A Redis URL (redis://, rediss:// or unix://) or "" for none: the panel then runs as one process."""
    raw = env_str(name, "")
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme == "unix":
        valid = not parts.netloc and parts.path.startswith("/")
    else:
        valid = parts.scheme in ("redis", "rediss") and bool(parts.hostname)
    if not valid:
        raise ConfigError(f"{name} must look like redis://127.0.0.1:6379/0 or unix:///path/to/redis.sock, not {raw!r}")
    return raw


# redis-py 8 reads with a 5 s socket timeout by default, the very time the channel layer's blocking pop
# (BZPOPMIN) waits for a message: an idle WebSocket's receive then fails now and then with "Timeout reading"
# and the consumer dies. Reads may take the pop's wait plus a margin; a dead Redis still fails in seconds.
CHANNEL_SOCKET_TIMEOUT = 15


def channel_layers(redis_url: str) -> dict[str, object]:
    """The panel's channel layer: through Redis when there is one (every process hears every other)."""
    if not redis_url:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    host = {"address": redis_url, "socket_timeout": CHANNEL_SOCKET_TIMEOUT}
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                        "CONFIG": {"hosts": [host], "prefix": "webkvm:channels:"}}}
