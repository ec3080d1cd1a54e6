"""In Chromium at 1400x900, an admin who chose 简体中文 (stored with the user) opens the fleet view, a VM page,
the create form and the console page: each says <html lang="zh-Hans">, fits the window (no sideways scroll, no
button, label or menu item whose words overflow it), is kept as var/test-artifacts/screens-zh-PAGE.png, and
shows words its script drew in Chinese (static/js, from the /jsi18n/ catalog): a state badge fleet-live.js
redraws when the VM pauses, the VM page's usage status, the create form's summary, the console's status."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import BROWSER_PASSWORD, log_in, save_screenshot
from tests.conftest import BASIC_WORLD, WEB_01_UUID, need
from webkvm.models import UserLanguage

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]

# Visible buttons, labels, links drawn as buttons and menu items whose words are wider than their box.
OVERFLOWING_JS = """() => {
  const sel = 'button, label, a.button, summary, nav a, .menu a, .tabs a, select, th';
  const found = [];
  for (const el of document.querySelectorAll(sel)) {
    if (!el.checkVisibility({visibilityProperty: true, opacityProperty: true})) { continue; }
    if (el.closest('[aria-hidden=true]')) { continue; }  // e.g. the create form's 1 px default button
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      found.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' +
                 (el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 40) + '" ' +
                 el.scrollWidth + ' > ' + el.clientWidth);
    }
  }
  return found.slice(0, 10);
}"""
SCROLL_JS = "() => [document.documentElement.scrollWidth, window.innerWidth]"


def test_chinese_pages_fit_and_their_scripts_speak_chinese(asgi_server: str, browser: Any, lab: dict[str, Any],
                                                           lab_domain: Any) -> None:
    # Without a Chinese font the words are drawn as boxes of another width: the overflow check would be moot.
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout \
        if shutil.which("fc-list") else ""
    need(bool(fonts.strip()), "a Chinese font (scripts/install-system-packages.sh: fonts-wqy-microhei)")
    demo = Host.objects.create(name="demo", transport="test", path=str(BASIC_WORLD))
    lab_host = Host.objects.create(name="lab", transport="local", path="system")
    dom = lab_domain(f"test-zh-{uuid.uuid4().hex[:8]}")
    key = f"{lab_host.name}/{dom.UUIDString().lower()}"
    admin = get_user_model().objects.create_superuser("admin", "", BROWSER_PASSWORD)
    UserLanguage.objects.create(user=admin, language="zh-hans")

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    problems: list[str] = []

    def check(name: str) -> None:
        save_screenshot(page, f"screens-zh-{name}.png", full_page=True)
        lang = page.evaluate("() => document.documentElement.lang")
        if lang != "zh-Hans":
            problems.append(f"{name}: <html lang={lang!r}>")
        scroll_width, inner_width = page.evaluate(SCROLL_JS)
        if scroll_width > inner_width:
            problems.append(f"{name}: the page scrolls sideways ({scroll_width} px in {inner_width})")
        problems.extend(f"{name}: words overflow {what}" for what in page.evaluate(OVERFLOWING_JS))

    def drawn(name: str, locator: Any, words: str) -> None:
        try:
            expect(locator).to_contain_text(words, timeout=10000)
        except AssertionError:
            problems.append(f"{name}: the script's words are not {words!r}: {locator.first.text_content()!r}")

    try:
        log_in(page, asgi_server)

        # The fleet view: every host's VMs; then only ours, whose badge fleet-live.js redraws when it pauses.
        page.goto(asgi_server + reverse("instances:list"))
        expect(page.locator("#fleet[data-updated]")).to_have_count(1)
        check("vms")
        page.goto(asgi_server + reverse("instances:list") + f"?q={dom.name()}")
        expect(page.locator("html")).to_have_attribute("data-live", "socket")
        expect(page.locator("#fleet[data-updated]")).to_have_count(1)
        dom.suspend()
        badge = page.locator(f'tr[data-key="{key}"] [data-col=state] .badge')
        expect(badge).to_have_class("badge state-paused")
        drawn("vms", badge, "已暂停")
        dom.resume()

        # A VM page: vm-usage.js writes the state and CPU from its samples.
        page.goto(asgi_server + reverse("instances:detail", args=[demo.name, WEB_01_UUID]))
        check("vm")
        drawn("vm", page.locator("#vm-usage-status"), "运行中")

        # The create form: create.js writes the summary's size.
        page.goto(asgi_server + reverse("instances:create") + f"?host={demo.name}")
        check("create")
        drawn("create", page.locator("#create-summary dd").nth(3), "个 vCPU")

        # The console page: console.js says it connected.
        page.goto(asgi_server + reverse("console:page", args=[lab_host.name, dom.UUIDString()]))
        expect(page.locator("#console-status")).to_have_attribute("data-state", "connected", timeout=20000)
        drawn("console", page.locator("#console-status"), "已连接")
        check("console")
    finally:
        context.close()
    assert not problems, "\n".join(problems)
