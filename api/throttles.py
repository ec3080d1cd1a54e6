"""REST framework's per-user and per-address throttles, counted where every panel process shares them: Redis
when WEBKVM_REDIS_URL is set (the "api" cache), else this process's memory (one process)."""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class PerUser(UserRateThrottle):
    @property
    def cache(self) -> Any:
        return caches["api"]


class PerAddress(AnonRateThrottle):
    @property
    def cache(self) -> Any:
        return caches["api"]
