import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.integration.conftest import lab, lab_domain, panel_key_authorized  # noqa: F401  (fixtures)
from tests.panel_server import serve_panel

# Playwright's sync API runs an event loop in this thread; the ORM calls made by the test
# itself (fixtures) are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    need(shutil.which(CHROMIUM) is not None, f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def asgi_server() -> Iterator[str]:
    """The panel's ASGI app (pages, static files and console WebSockets) under uvicorn on loopback:
    Django's live_server speaks no WebSocket."""
    with serve_panel() as url:
        yield url


BROWSER_PASSWORD = "browser-test-pass-1"


def log_in(page: Any, base: str, username: str = "admin", password: str = BROWSER_PASSWORD) -> None:
    """Log in through the panel's own form and wait until it lets the browser in."""
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"


def save_screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """The page as a test artefact: var/test-artifacts/NAME (NAME ends in .png)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def save_artifact(name: str, data: bytes) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_bytes(data)


def hypervisor_screenshot(conn: Any, dom: Any) -> bytes:
    """The guest's screen as qemu has it (virsh screenshot): a PNG read through libvirt's stream."""
    stream = conn.newStream(0)
    dom.screenshot(stream, 0)
    data = bytearray()
    while chunk := stream.recv(1 << 20):
        data += chunk
    stream.finish()
    return bytes(data)
