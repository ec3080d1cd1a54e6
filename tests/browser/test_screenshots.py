"""The main pages in Chromium at 1400x900 and 1024x768, light and dark: screenshots into var/test-artifacts/
(screens-WIDTH-PAGE-SCHEME.png), no horizontal scroll of the page, no two visible buttons, links, fields,
table cells or headings drawn over each other, and no template syntax shown as text. The VM list shows 50 VMs
of a test-driver world; the console page is a running diskless VM of the lab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from lxml import etree
from lxml.builder import E
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from hosts.models import Host
from tests.browser.conftest import BROWSER_PASSWORD, log_in, save_screenshot
from tests.conftest import BASIC_WORLD, WEB_01_UUID

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]

VIEWPORTS = [(1400, 900), (1024, 768)]
SCHEMES = ["light", "dark"]
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
RUNSTATES = [1, 1, 1, 5, 5, 3, 1, 5, 6, 1]  # running, shut off, paused, crashed: test:runstate values

# The visible elements of one kind that overlap, as "a <-> b" lines; nested elements (a link in a cell, a button
# in a heading) never count, and an inline element counts by its line fragments.
OVERLAPS_JS = """() => {
  const sel = 'a, button, summary, input:not([type=hidden]), select, textarea, th, td, h1, h2, h3';
  const boxes = [];
  for (const el of document.querySelectorAll(sel)) {
    if (!el.checkVisibility({visibilityProperty: true, opacityProperty: true})) { continue; }  // closed menus too
    for (const r of el.getClientRects()) { if (r.width > 1 && r.height > 1) { boxes.push([el, r]); } }
  }
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '') +
    ' "' + (el.textContent || el.value || '').trim().replace(/\\s+/g, ' ').slice(0, 30) + '"';
  const found = [];
  for (let i = 0; i < boxes.length; i++) {
    const [a, ra] = boxes[i];
    for (let j = i + 1; j < boxes.length; j++) {
      const [b, rb] = boxes[j];
      if (a === b || a.contains(b) || b.contains(a)) { continue; }
      const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
      const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
      if (w > 1 && h > 1) { found.push(name(a) + ' <-> ' + name(b)); }
    }
  }
  return found.slice(0, 10);
}"""
SCROLL_JS = "() => [document.scrollingElement.scrollWidth, window.innerWidth]"
# Template syntax that reached the page as text (a {# comment #} over two lines, a tag that did not parse).
TEMPLATE_TEXT_JS = "() => (document.body.innerText.match(/\\{[#%]|[#%]\\}/g) || []).length"
# The console page is shot once the guest's screen is drawn (SeaBIOS: lit pixels on the canvas).
SCREEN_DRAWN_JS = """() => {
  const c = document.querySelector('#console-screen canvas');
  if (!c || !c.width) { return false; }
  const d = c.getContext('2d').getImageData(0, 0, c.width, Math.min(c.height, 64)).data;
  for (let i = 0; i < d.length; i += 4) { if (d[i] + d[i + 1] + d[i + 2] > 200) { return true; } }
  return false;
}"""


def fifty_vm_world(folder: Path) -> Path:
    """basic.xml with 47 more VMs in mixed states: 50 rows in the VM list."""
    root = etree.parse(str(BASIC_WORLD)).getroot()
    at = root.index(root.find("domain"))
    for n in range(47):
        runstate = etree.Element(f"{{{TEST_NS}}}runstate", nsmap={"test": TEST_NS})
        runstate.text = str(RUNSTATES[n % len(RUNSTATES)])
        root.insert(at, E.domain(
            E.name(f"{['app', 'build', 'ci-runner', 'mail', 'web'][n % 5]}-{n:02d}.example.org"),
            E.uuid(f"aaaaaaaa-0000-4000-8000-{n:012d}"),
            E.memory(str(512 << (n % 4)), unit="MiB"), E.vcpu(str(1 << (n % 3))),
            E.os(E.type("hvm", arch="x86_64")), runstate, type="test"))
    path = folder / "fifty.xml"
    path.write_bytes(etree.tostring(root))
    return path




def test_main_pages_fit_the_window_in_both_colour_schemes(asgi_server, browser, lab: dict[str, Any], lab_domain,
                                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    world = fifty_vm_world(tmp_path_factory.mktemp("screens"))
    demo = Host.objects.create(name="demo", transport="test", path=str(world))
    Host.objects.create(name="lab", transport="local", path="system")
    console_vm = lab_domain().UUIDString()
    get_user_model().objects.create_superuser("admin", "", BROWSER_PASSWORD)
    for name in ("alice", "bob", "carol"):
        get_user_model().objects.create_user(name, "", BROWSER_PASSWORD)
    pages = [
        ("vms", reverse("instances:list")),
        ("vm", reverse("instances:detail", args=[demo.name, WEB_01_UUID])),
        ("create", reverse("instances:create") + f"?host={demo.name}"),
        ("console", reverse("console:page", args=["lab", console_vm])),
        ("hosts", reverse("hosts:list")),
        ("host", reverse("hosts:detail", args=[demo.name])),
        ("pools", reverse("storage:pools", args=[demo.name])),
        ("pool", reverse("storage:pool", args=[demo.name, "images"])),
        ("networks", reverse("networks:list", args=[demo.name])),
        ("users", reverse("users:list")),
        ("audit", reverse("audit")),
    ]
    problems: list[str] = []
    for width, height in VIEWPORTS:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(15000)
        try:
            page.goto(asgi_server + "/login/")
            check(page, f"{width}-login", problems)
            log_in(page, asgi_server)
            for name, path in pages:
                response = page.goto(asgi_server + path)
                if response is None or response.status != 200:
                    problems.append(f"{path}: HTTP {response and response.status}")
                    continue
                if name == "console":
                    try:
                        page.wait_for_function(SCREEN_DRAWN_JS, timeout=10000, polling=200)
                    except PlaywrightTimeout:
                        problems.append(f"{width}-console: the guest's screen was not drawn within 10 s")
                check(page, f"{width}-{name}", problems)
        finally:
            context.close()
    assert not problems, "\n".join(problems)


def check(page: Any, name: str, problems: list[str]) -> None:
    """Screenshots of the open page in both schemes; what does not fit or overlaps goes to `problems`."""
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        save_screenshot(page, f"screens-{name}-{scheme}.png", full_page=True)
        scroll_width, inner_width = page.evaluate(SCROLL_JS)
        if scroll_width > inner_width:
            problems.append(f"{name} ({scheme}): the page scrolls sideways ({scroll_width} px in {inner_width})")
        problems.extend(f"{name} ({scheme}): overlap {pair}" for pair in page.evaluate(OVERLAPS_JS))
    if page.evaluate(TEMPLATE_TEXT_JS):
        problems.append(f"{name}: template syntax shown as text")
