"""In Chromium: log in, add the lab over ssh (accepting its fingerprint), read the overview's real numbers."""

from __future__ import annotations

import math
import re
import subprocess
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from virt.ssh import HostKey

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def test_login_add_ssh_host_and_read_overview(live_server, page, lab: dict[str, Any], panel_key_authorized) -> None:
    get_user_model().objects.create_superuser("admin", "", "browser-test-pass-1")
    page.goto(live_server.url + "/")
    assert "/login/" in page.url
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "browser-test-pass-1")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/hosts/$"))

    page.click("text=Add host")
    page.fill("#id_name", "lab")
    page.select_option("#id_transport", "ssh")
    page.fill("#id_hostname", "127.0.0.1")
    page.fill("#id_port", "2222")
    page.fill("#id_username", "root")
    page.fill("#id_path", "system")
    page.click("#save-host")

    page.wait_for_selector("#fingerprints .fingerprint")  # the scan's answer is the next page
    shown = page.locator("#fingerprints .fingerprint").all_inner_texts()
    lab_fingerprints = {HostKey.parse(line).fingerprint for line in lab["ssh"]["host_keys"]}
    assert any(fp in text for fp in lab_fingerprints for text in shown), shown
    page.click("#accept-host-key")
    page.wait_for_url(re.compile(r".*/hosts/lab/$"))

    assert page.inner_text("#host-state") == "up"
    nodeinfo = subprocess.run(["virsh", "-c", lab["tcp_uri"], "nodeinfo"], capture_output=True, text=True,
                              check=True).stdout
    cpus = re.search(r"CPU\(s\):\s+(\d+)", nodeinfo).group(1)
    model = re.search(r"CPU model:\s+(\S+)", nodeinfo).group(1)
    assert page.inner_text("[data-fact=cpus]") == cpus
    assert model in page.inner_text("[data-fact=arch]") + page.inner_text("[data-fact=cpu_model]")
    total = subprocess.run(["virsh", "-c", lab["tcp_uri"], "list", "--all", "--name"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert page.inner_text("[data-fact=domains_total]") == str(len(total))
    # The live graph draws real samples: after two polls the CPU figure is a percentage.
    expect(page.locator("#usage-status")).to_have_text(re.compile(r"CPU [0-9.]+ %"), timeout=15000)
    # One reading of memory for the graph and the overview: the script writes the sample's figures into both.
    status, percent = page.inner_text("#usage-status"), page.inner_text("[data-fact=memory_percent]")
    assert status.endswith(f", memory {percent}") and re.fullmatch(r"\d+\.\d %", percent), (status, percent)
    used, free, total = (int(page.get_attribute(f"[data-fact={name}]", "data-bytes") or -1)
                         for name in ("memory_used", "free_memory", "memory"))
    assert used + free == total and percent == f"{math.floor(1000 * used / total + 0.5) / 10:.1f} %"
    page.screenshot(path=str(live_server_screenshot_path()))


def live_server_screenshot_path():
    from django.conf import settings

    path = settings.DATA_DIR / "screenshots"
    path.mkdir(exist_ok=True)
    return path / "host-overview.png"
