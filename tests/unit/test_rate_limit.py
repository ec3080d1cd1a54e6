"""The per-user rate limit of polled and JSON routes (webkvm/rate_limit.py), as a table over every route
declared `polled` (webkvm/operations.py), with the counters in Django's cache and in Redis (what several
panel processes share). A route that answers JSON to a GET and is not declared polled fails here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from hosts.models import Host
from jobs.models import Job
from tests.conftest import PASSWORD
from tests.unit.test_routes import ROUTES, Route, _url
from webkvm import redis_store
from webkvm.rate_limit import PREFIX

pytestmark = pytest.mark.django_db
JOB_ID = 4242  # the sample job of tests/unit/test_routes.py's URLs
POLLED = [r for r in ROUTES if r.access is not None and r.access.polled]
LIMIT, WINDOW = 3, 60


def test_the_polled_routes() -> None:
    assert {r.name for r in POLLED} == {"hosts:usage", "instances:rows", "instances:stats", "jobs:status"}


def test_every_route_answering_json_to_a_get_is_declared_polled(test_host: Host, admin_user: Any) -> None:
    Job.objects.create(pk=JOB_ID, kind="volume.wipe", host=test_host, owner=admin_user, state="done",
                       target_type="volume", target_name="images/w.img", params={"pool": "images", "name": "w.img"})
    client = Client()
    client.force_login(admin_user)
    json_routes = set()
    for route in ROUTES:
        if route.access is None or route.access.by or route.name.startswith("api:"):
            continue  # the API (api/) is throttled as a whole by REST framework (tests/unit/test_api_access.py)
        response = client.get(_url(route, None))
        if response.get("Content-Type", "").startswith("application/json"):
            json_routes.add(route.name)
    assert json_routes and json_routes == {r.name for r in POLLED}


@pytest.fixture(params=["cache", "redis"])
def counters(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """Where the counters live: Django's cache (one process) or Redis (every panel process)."""
    settings.WEBKVM_POLL_LIMIT, settings.WEBKVM_POLL_WINDOW_SECONDS = LIMIT, WINDOW
    if request.param == "redis":
        settings.WEBKVM_REDIS_URL = request.getfixturevalue("redis_url")
    redis_store.client.cache_clear()
    store = redis_store.client()
    if store is not None:
        store.delete(*store.keys(PREFIX + "*") or ["none"])
    yield request.param
    redis_store.client.cache_clear()


def _people(host: Host) -> tuple[Client, Client]:
    """Two admins (every polled route is theirs to ask), the first owning the sample job."""
    users = get_user_model().objects
    first, second = users.create_superuser("rate-a", "", PASSWORD), users.create_superuser("rate-b", "", PASSWORD)
    Job.objects.create(pk=JOB_ID, kind="volume.wipe", host=host, owner=first, state="done", target_type="volume",
                       target_name="images/w.img", params={"pool": "images", "name": "w.img"})
    clients = Client(), Client()
    clients[0].force_login(first)
    clients[1].force_login(second)
    return clients


@pytest.mark.parametrize("route", POLLED, ids=[r.name for r in POLLED])
def test_a_polled_route_answers_429_past_the_limit(route: Route, counters: str, test_host: Host) -> None:
    user, other_user = _people(test_host)
    url = _url(route, None)
    for _ in range(LIMIT):
        assert user.get(url).status_code != 429
    refused = user.get(url)
    assert refused.status_code == 429
    said = refused.json()["error"]
    assert said.startswith(f"Too many requests: this is answered at most {LIMIT} times in {WINDOW} s"), said
    assert 1 <= int(refused["Retry-After"]) <= WINDOW
    assert other_user.get(url).status_code != 429, "the limit is per user"
    other_route = next(r for r in POLLED if r.name != route.name)
    assert user.get(_url(other_route, None)).status_code != 429, "and per route"
    if counters == "redis":
        store = redis_store.client()
        assert store is not None and store.keys(PREFIX + "*"), "the counts are where every process sees them"
