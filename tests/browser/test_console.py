"""In Chromium: open a lab VM's console page and see its SeaBIOS screen drawn by noVNC."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def asgi_server() -> Iterator[str]:
    """The panel's ASGI app (pages, static files and console WebSockets) under uvicorn on loopback:
    Django's live_server speaks no WebSocket."""
    import uvicorn
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    from console.routing import websocket_urlpatterns

    app = ProtocolTypeRouter({"http": ASGIStaticFilesHandler(get_asgi_application()),
                              "websocket": URLRouter(websocket_urlpatterns)})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets", lifespan="off",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def banner_pixels(page: Any) -> int:
    """Lit pixels in the top 40 rows of the VM's screen: SeaBIOS prints its banner on the first line,
    while qemu's "Guest has not initialized the display" placeholder sits in the middle."""
    return page.evaluate("""() => {
        const canvas = document.querySelector('#console-screen canvas');
        if (!canvas || !canvas.width) { return 0; }
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, 40).data;
        let lit = 0;
        for (let i = 0; i < data.length; i += 4) { if (data[i] + data[i + 1] + data[i + 2] > 60) { lit++; } }
        return lit;
    }""")


def test_console_shows_the_seabios_screen(asgi_server, page, lab: dict[str, Any], lab_domain) -> None:
    dom = lab_domain()
    Host.objects.create(name="lab", transport="local", path="system")
    get_user_model().objects.create_superuser("admin", "", "browser-test-pass-1")
    page.goto(asgi_server + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "browser-test-pass-1")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/hosts/$"))

    page.goto(f"{asgi_server}/instances/lab/{dom.UUIDString()}/")
    page.click("#open-console")
    page.wait_for_url(re.compile(r".*/console/lab/"))
    expect(page.locator("#console-status")).to_have_text("connected", timeout=20000)
    expect(page.locator("#console-screen canvas")).to_be_visible()
    # SeaBIOS writes its banner within about a second of power-on.
    deadline = time.monotonic() + 20
    while banner_pixels(page) < 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    lit = banner_pixels(page)
    artifacts = settings.BASE_DIR / "var" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "console-seabios.png"))
    assert lit >= 200, f"no SeaBIOS banner on the console canvas ({lit} lit pixels in its top rows)"
    expect(page.locator("#console-reconnect")).to_be_hidden()
    # The power actions sit beside the screen for a user allowed to use them.
    assert page.locator("#actions button", has_text="Force off").count() == 1
