"""Database and libvirt work from async code (WebSocket consumers, live watchers): off the event loop."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async


def blocking(fn: Any) -> Any:
    """fn as a coroutine function run in any worker thread (opening a connection over ssh takes a while),
    closing stale database connections as Channels does."""
    return database_sync_to_async(fn, thread_sensitive=False)
