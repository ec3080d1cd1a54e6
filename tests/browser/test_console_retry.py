"""In Chromium: a console page whose connection fails says why, tries again after a back-off (1, 2, 4 ... 30 s,
the next attempt's time shown) and connects again at once on Reconnect; a script that fails to load ends in a
visible error too, never in "connecting…" forever. Django's live_server speaks no WebSocket, so every console
socket fails here as one whose route is unreachable would; libvirt's test driver plays the VM."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import BROWSER_PASSWORD, log_in
from tests.conftest import BASIC_WORLD, WEB_01_UUID

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@dataclass(frozen=True)
class ConsolePage:
    name: str
    path: str
    prefix: str  # of the page's element ids
    script: str  # a script the page cannot work without


PAGES = [
    ConsolePage("vnc", f"/console/testhost/{WEB_01_UUID}/", "console", "**/vendor/novnc/core/rfb.js"),
    ConsolePage("serial", f"/console/testhost/{WEB_01_UUID}/serial/", "serial", "**/vendor/xterm/lib/xterm.js"),
]


@pytest.fixture
def logged_in(live_server: Any, page: Any) -> Any:
    get_user_model().objects.create_superuser("admin", "", BROWSER_PASSWORD)
    Host.objects.create(name="testhost", transport="test", path=str(BASIC_WORLD))
    log_in(page, live_server.url)
    return page


@pytest.mark.parametrize("console", PAGES, ids=[p.name for p in PAGES])
def test_a_failed_connection_is_told_retried_with_back_off_and_reconnect_works(
        console: ConsolePage, live_server: Any, logged_in: Any) -> None:
    page = logged_in
    tickets: list[float] = []
    page.on("request", lambda r: tickets.append(time.monotonic()) if r.url.endswith("ticket/") else None)
    page.goto(live_server.url + console.path)
    status = page.locator(f"#{console.prefix}-status")
    expect(status).to_have_attribute("data-state", "failed", timeout=5000)
    expect(status).to_contain_text(re.compile(r"next attempt at \d\d:\d\d:\d\d"))
    expect(page.locator(f"#{console.prefix}-reconnect")).to_be_visible()
    # The first retry comes by itself after about a second, the next one later (back-off).
    deadline = time.monotonic() + 4
    while len(tickets) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(tickets) >= 2, tickets
    expect(status).to_have_attribute("data-state", "failed")
    expect(status).to_contain_text(re.compile(r"in [2-4] s"))
    # Reconnect asks again at once, without waiting for the scheduled attempt.
    before = len(tickets)
    page.click(f"#{console.prefix}-reconnect")
    deadline = time.monotonic() + 1
    while len(tickets) == before and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(tickets) == before + 1


@pytest.mark.parametrize("console", PAGES, ids=[p.name for p in PAGES])
def test_a_script_that_does_not_load_is_a_visible_error(console: ConsolePage, live_server: Any,
                                                        logged_in: Any) -> None:
    page = logged_in
    page.route(console.script, lambda route: route.abort())
    page.goto(live_server.url + console.path)
    status = page.locator(f"#{console.prefix}-status")
    expect(status).to_have_attribute("data-state", "failed", timeout=5000)
    expect(status).to_contain_text("did not load")
    expect(page.locator(f"#{console.prefix}-reconnect")).to_be_visible()
