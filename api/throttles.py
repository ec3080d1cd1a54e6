"""REST framework's per-user and per-address throttles, counted where every panel process shares them: Redis
when WEBKVM_REDIS_URL is set (the "api" cache), else this process's memory (one process). REST framework
makes a throttle for each request, so each one counts in the "api" cache as it is then configured."""

from __future__ import annotations

from django.core.cache import caches
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class PerUser(UserRateThrottle):
    def __init__(self) -> None:
        super().__init__()
        self.cache = caches["api"]


class PerAddress(AnonRateThrottle):
    def __init__(self) -> None:
        super().__init__()
        self.cache = caches["api"]
