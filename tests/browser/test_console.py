"""In Chromium: open a lab VM's console page and see its SeaBIOS screen drawn by noVNC; press Esc
in the page and see the guest's boot menu. Screenshots are kept in var/test-artifacts/."""

from __future__ import annotations

import base64
import re
import time
import uuid
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import BROWSER_PASSWORD, hypervisor_screenshot, save_artifact
from tests.browser.conftest import log_in as log_in_as
from tests.lab import domain_xml, remove_domain
from tests.lab_resources import local_or_ssh
from virt.xml.domain import Domain

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]


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


def text_rows(page: Any) -> list[int]:
    """Per 16-pixel row of the VM's screen (VGA text mode: 80 columns of 9x16 cells), how many character
    cells up to the last lit one: enough to tell SeaBIOS's lines apart without reading them."""
    return page.evaluate("""() => {
        const canvas = document.querySelector('#console-screen canvas');
        if (!canvas || !canvas.width) { return []; }
        const w = canvas.width, h = canvas.height, cell = w / 80;
        const data = canvas.getContext('2d').getImageData(0, 0, w, h).data;
        const rows = [];
        for (let top = 0; top + 16 <= h; top += 16) {
            let last = -1;
            for (let y = top; y < top + 16; y++) {
                for (let x = w - 1; x > last; x--) {
                    const i = (y * w + x) * 4;
                    if (data[i] + data[i + 1] + data[i + 2] > 200) { last = x; break; }
                }
            }
            rows.push(last >= 0 ? Math.floor(last / cell) + 1 : 0);
        }
        return rows;
    }""")


def keep(page: Any, name: str) -> None:
    """The page and the console canvas as test artefacts (var/test-artifacts/NAME-page.png, NAME-canvas.png)."""
    folder = Path(settings.BASE_DIR) / "var" / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}-page.png"))
    canvas = page.evaluate("() => { const c = document.querySelector('#console-screen canvas');"
                           " return c && c.width ? c.toDataURL('image/png') : ''; }")
    if canvas:
        (folder / f"{name}-canvas.png").write_bytes(base64.b64decode(canvas.split(",", 1)[1]))


def log_in(page: Any, server: str) -> None:
    get_user_model().objects.create_superuser("admin", "", BROWSER_PASSWORD)
    log_in_as(page, server)


@pytest.mark.parametrize("transport", ["local", "ssh"])
def test_console_shows_the_seabios_screen(asgi_server, page, lab: dict[str, Any], lab_domain, panel_key_authorized,
                                          transport: str) -> None:
    dom = lab_domain()
    host = local_or_ssh(transport, lab)  # over ssh the proxy reaches VNC through `ssh -W`
    log_in(page, asgi_server)

    page.goto(f"{asgi_server}/instances/{host.name}/{dom.UUIDString()}/")
    page.click("#open-console")
    page.wait_for_url(re.compile(rf".*/console/{host.name}/"))
    try:
        expect(page.locator("#console-status")).to_have_text("connected", timeout=20000)
        expect(page.locator("#console-screen canvas")).to_be_visible()
        # SeaBIOS writes its banner within about a second of power-on.
        deadline = time.monotonic() + 20
        while banner_pixels(page) < 200 and time.monotonic() < deadline:
            time.sleep(0.25)
        lit = banner_pixels(page)
    finally:
        keep(page, f"console-seabios-{transport}")  # also when it failed: the screenshot shows what the page showed
    assert lit >= 200, f"no SeaBIOS banner on the console canvas ({lit} lit pixels in its top rows)"
    expect(page.locator("#console-reconnect")).to_be_hidden()
    # The power actions sit beside the screen for a user allowed to use them.
    assert page.locator("#actions button", has_text="Force off").count() == 1


PRESS_ESC = range(22, 27)  # "Press ESC for boot menu." is 24 characters
SELECT_BOOT_DEVICE = range(17, 22)  # "Select boot device:" is 19
NO_BOOTABLE_DEVICE = 40  # "No bootable device.  Retrying in 60 seconds." is longer than both


def wait_for_rows(page: Any, ready: Any, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    rows = text_rows(page)
    while not ready(rows) and time.monotonic() < deadline:
        time.sleep(0.25)
        rows = text_rows(page)
    return rows


def test_esc_in_the_browser_opens_the_guest_boot_menu(asgi_server, page, lab: dict[str, Any]) -> None:
    """A diskless VM with <bootmenu enable='yes' timeout='60000'/>: SeaBIOS waits a minute at "Press ESC for
    boot menu."; Esc pressed on the console canvas must bring "Select boot device:" within seconds, so the
    key went browser -> noVNC -> WebSocket -> proxy -> qemu -> guest (the minute rules out the timeout)."""
    conn = libvirt.open(lab["unix_uri"])
    xml = Domain.from_xml(domain_xml(f"test-{uuid.uuid4().hex[:8]}", lab["domain_type"]))
    xml.os.bootmenu = True
    bootmenu = xml.os.element.find("bootmenu")
    assert bootmenu is not None
    bootmenu.set("timeout", "60000")
    dom = conn.defineXML(xml.to_xml())
    try:
        Host.objects.create(name="lab", transport="local", path="system")
        log_in(page, asgi_server)
        dom.create()
        page.goto(f"{asgi_server}/console/lab/{dom.UUIDString()}/")
        expect(page.locator("#console-status")).to_have_text("connected", timeout=20000)

        def prompt_is_last(rows: list[int]) -> bool:
            lines = [i for i, width in enumerate(rows) if width]
            return len(lines) >= 2 and rows[lines[-1]] in PRESS_ESC
        before = wait_for_rows(page, prompt_is_last, 20)
        keep(page, "console-bootmenu-before")
        assert prompt_is_last(before), f"no 'Press ESC for boot menu.' line as the last one: {before}"
        prompt = max(i for i, width in enumerate(before) if width)

        page.locator("#console-screen canvas").click()
        page.keyboard.press("Escape")

        def menu_shown(rows: list[int]) -> bool:
            return any(width in SELECT_BOOT_DEVICE for width in rows[prompt + 1:])
        after = wait_for_rows(page, menu_shown, 10)
        keep(page, "console-bootmenu-after")
        save_artifact("console-bootmenu-after-libvirt.png", hypervisor_screenshot(conn, dom))
        assert menu_shown(after), f"no 'Select boot device:' after Esc: rows before {before}, after {after}"
        # The prompt line may have been read half drawn (22 of its 24 columns), so it is checked by range.
        assert after[:prompt] == before[:prompt], "the lines above the menu changed"
        assert after[prompt] in PRESS_ESC, f"the prompt line changed: {after}"
        assert all(width < NO_BOOTABLE_DEVICE for width in after[prompt + 1:]), f"booting went on: {after}"
    finally:
        remove_domain(dom)
        conn.close()


