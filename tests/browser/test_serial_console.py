"""In Chromium: a lab VM's serial console page shows SeaBIOS output in xterm.js, keys typed there
reach the guest, and a second viewer takes the console over with the explicit button."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import log_in
from tests.integration.test_serial_lab import serial_vm  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]
ADMIN_PASSWORD = "browser-test-pass-1"


def screen_text(page: Any) -> str:
    """What xterm.js shows: its DOM renderer draws each row as a div of text."""
    return page.evaluate("""() => {
        const rows = document.querySelector('#serial-screen .xterm-rows');
        return rows ? Array.from(rows.children, (row) => row.textContent).join('\\n') : '';
    }""")


def wait_for_text(page: Any, text: str, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    shown = screen_text(page)
    while text not in shown and time.monotonic() < deadline:
        time.sleep(0.1)
        shown = screen_text(page)
    return shown


def test_serial_console_shows_seabios_and_takes_keys(asgi_server, browser, page, lab: dict[str, Any],
                                                     serial_vm) -> None:  # noqa: F811
    dom = serial_vm(boot_menu=True)
    Host.objects.create(name="lab", transport="local", path="system")
    get_user_model().objects.create_superuser("admin", "", ADMIN_PASSWORD)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    log_in(page, asgi_server)

    page.goto(f"{asgi_server}/instances/lab/{dom.UUIDString()}/")
    page.click("#vm-more > summary")  # the serial console waits in the page's "More" menu
    page.click("#open-serial-console")
    page.wait_for_url(re.compile(r".*/console/lab/.*/serial/$"))
    expect(page.locator("#serial-status")).to_have_text("connected", timeout=20000)
    dom.resume()  # started paused: SeaBIOS prints only now that the page is attached
    shown = wait_for_text(page, "Press ESC for boot menu")
    assert "SeaBIOS" in shown and "Press ESC for boot menu" in shown, shown
    page.locator("#serial-screen").click()
    page.keyboard.press("Escape")
    shown = wait_for_text(page, "Select boot device")
    artefacts = settings.BASE_DIR / "var" / "test-artifacts"
    artefacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artefacts / "serial-console-seabios.png"))
    assert "Select boot device" in shown, shown
    # Fit to window: the terminal fills its box (1280x720 viewport) rather than keeping xterm's 80x24.
    rows = page.evaluate("() => document.querySelector('#serial-screen .xterm-rows').children.length")
    assert rows > 24, rows
    assert not [e for e in errors if "Content Security Policy" in e], errors

    # A second viewer: told who holds the console, then takes it over explicitly.
    other = browser.new_context()
    try:
        second = other.new_page()
        second.set_default_timeout(15000)
        log_in(second, asgi_server)
        second.goto(page.url)
        expect(second.locator("#serial-status")).to_contain_text("in use by admin since", timeout=20000)
        expect(second.locator("#serial-takeover")).to_be_visible()
        second.click("#serial-takeover")
        expect(second.locator("#serial-status")).to_have_text("connected", timeout=20000)
        expect(page.locator("#serial-status")).to_have_text("disconnected: taken over by admin", timeout=20000)
        expect(page.locator("#serial-reconnect")).to_be_visible()
        expect(second.locator("#serial-takeover")).to_be_hidden()
        dom.reset()
        assert "SeaBIOS" in wait_for_text(second, "SeaBIOS"), screen_text(second)
        second.screenshot(path=str(artefacts / "serial-console-taken-over.png"))
    finally:
        other.close()
