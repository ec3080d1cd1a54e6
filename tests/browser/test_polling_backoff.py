"""In Chromium: every page that polls a JSON route pauses when the panel answers 429 (js/poll.js), for as long
as Retry-After says, instead of asking again at its usual pace. A table of the polling pages, with the limit
set to one request per window; Django's live_server has no WebSocket, so the live pages poll too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import RequestFactory

from hosts.models import Host
from jobs import runner
from tests.browser.conftest import log_in
from tests.conftest import BASIC_WORLD, WEB_01_UUID
from tests.unit.test_jobs import steps_kind  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "browser-test-pass-1"
WINDOW = 30


def _job_page(admin: Any, host: Host) -> str:
    request = RequestFactory().post("/")
    request.user = admin
    job = runner.start(request, "test.steps", host, runner.Target("host", "testhost"), {}, summary="ten steps")
    return str(job.get_absolute_url())


@dataclass(frozen=True)
class Poller:
    name: str
    page: Callable[[Any, Host], str]
    polled: str  # part of the polled URL
    every: float  # seconds between polls
    status: str = ""  # element that says the polling paused


POLLERS = [
    Poller("host usage", lambda _a, _h: "/hosts/testhost/", "/usage.json", 2, "#usage-status"),
    Poller("VM usage", lambda _a, _h: f"/instances/testhost/{WEB_01_UUID}/", "/stats.json", 2, "#vm-usage-status"),
    Poller("VM list without its socket", lambda _a, _h: "/instances/", "/rows.json", 5),
    Poller("job progress without its socket", _job_page, ".json", 1),
]


@pytest.mark.parametrize("poller", POLLERS, ids=[p.name for p in POLLERS])
def test_a_polling_page_pauses_on_429(poller: Poller, live_server: Any, page: Any, settings: Any,
                                      steps_kind: threading.Event) -> None:  # noqa: F811
    settings.WEBKVM_POLL_LIMIT, settings.WEBKVM_POLL_WINDOW_SECONDS = 1, WINDOW
    admin = get_user_model().objects.create_superuser("admin", "", PASSWORD)
    host = Host.objects.create(name="testhost", transport="test", path=str(BASIC_WORLD))
    seen: list[tuple[float, int, str]] = []
    page.on("response", lambda r: seen.append((time.monotonic(), r.status, r.headers.get("retry-after", "")))
            if poller.polled in r.url and "/static/" not in r.url else None)
    log_in(page, live_server.url)
    page.goto(live_server.url + poller.page(admin, host))
    deadline = time.monotonic() + 4 * poller.every + 5
    while not any(status == 429 for _, status, _ in seen) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    refused = [(at, retry) for at, status, retry in seen if status == 429]
    assert refused, f"no 429 seen: {seen}"
    at, retry_after = refused[0]
    assert int(retry_after) > 3 * poller.every + 1
    # Unpaused, the page would ask again within `every`: half as long again shows it waits (for Retry-After).
    page.wait_for_timeout(int((1.5 * poller.every + 0.5) * 1000))
    after = [when - at for when, _, _ in seen if when > at]
    assert after == [], f"asked again {after} s after the 429 (Retry-After {retry_after})"
    if poller.status:
        assert page.locator(poller.status).inner_text().startswith("paused: Too many requests")
