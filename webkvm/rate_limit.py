"""A per-user rate limit for the routes pages poll and the JSON answers (declared `page(..., polled=True)`).

Each user may ask each such route WEBKVM_POLL_LIMIT times per WEBKVM_POLL_WINDOW_SECONDS; more is answered
429 with Retry-After (the end of the window), before the view asks any host. One user polling a JSON route
in parallel could otherwise keep a host's call slots busy for everyone. The counters live in Redis when the
panel has one, so every panel process counts against the same limit; without Redis (one process) in
Django's cache.
"""

from __future__ import annotations

import logging
import math
import time

import redis
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _

from webkvm import redis_store

log = logging.getLogger(__name__)
PREFIX = "webkvm:rate:"


def _count(key: str, window: int) -> tuple[int, float]:
    """This request's number in the user's window (which starts at their first request), and the seconds
    the window has left."""
    store = redis_store.client()
    if store is not None:
        try:
            pipe = store.pipeline()
            pipe.set(key, 0, ex=window, nx=True)  # the expiry is set with the key: no counter outlives its window
            pipe.incr(key)
            pipe.pttl(key)
            _, count, left_ms = pipe.execute()
            return int(count), max(int(left_ms), 0) / 1000
        except redis.RedisError as exc:  # no limit rather than no panel while Redis is away
            log.warning("rate limit not counted: Redis: %s", exc)
            return 0, 0.0
    now = time.time()
    cache.add(f"{key}:start", now, window)
    cache.add(key, 0, window)
    try:
        count = int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, window)
        count = 1
    return count, window - (now - float(cache.get(f"{key}:start", now)))


def who(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"address:{request.META.get('REMOTE_ADDR', '')}"


def check(request: HttpRequest, route: str) -> JsonResponse | None:
    """None when the request may go on, else the 429 answer."""
    limit, window = int(settings.WEBKVM_POLL_LIMIT), int(settings.WEBKVM_POLL_WINDOW_SECONDS)
    count, left = _count(f"{PREFIX}{route}:{who(request)}", window)
    if count <= limit:
        return None
    seconds = min(max(1, math.ceil(left)), window)
    if count == limit + 1:  # one line per user, route and window, however long the flood
        log.info("rate limit: %s asked %s more than %d times in %d s", who(request), route, limit, window)
    said = _("Too many requests: this is answered at most %(limit)d times in %(window)d s per user. "
             "Try again in %(seconds)d s.") % {"limit": limit, "window": window, "seconds": seconds}
    response = JsonResponse({"error": said}, status=429)
    response["Retry-After"] = str(seconds)
    return response
