"""What the storage views share: how long a listing may take. Operations and their timeouts are
declared in storage/operations.py; they run through webkvm/operations.py."""

from __future__ import annotations

LIST_TIMEOUT = 15.0  # a pool of many volumes costs one call per volume
