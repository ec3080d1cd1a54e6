"""In Chromium, on the lab: create a VM through the form, start it, watch the fleet view follow virsh
without a reload (pushed over the live WebSocket, so the panel is served by asgi_server), force it off
and delete it with its disk; libvirt is asked at every step."""

from __future__ import annotations

import re
import subprocess
import uuid
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import save_screenshot
from tests.lab_resources import isolated_net, lab_conn, made_vms, test_net, test_pool  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]
LIVE_MS = 1500  # the fleet view follows virsh within 1 s; a little more for the browser to draw it


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()



def test_create_start_watch_force_off_and_delete(asgi_server: str, page, lab: dict[str, Any], lab_conn,  # noqa: F811
                                                 test_pool, test_net, made_vms) -> None:  # noqa: F811
    get_user_model().objects.create_superuser("admin", "", "browser-test-pass-1")
    Host.objects.create(name="labhost", transport="local", path="system")
    name = f"test-{uuid.uuid4().hex[:8]}"
    made_vms.append(name)

    page.goto(asgi_server + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "browser-test-pass-1")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/hosts/$"))

    # Create through the form: the host's own pool and network are offered.
    page.goto(asgi_server + "/instances/new/?host=labhost")
    page.fill("#id_name", name)
    page.check("input[name=size][value=custom]")
    page.fill("#id_vcpus", "1")
    page.fill("#id_memory", "64M")
    page.check("input[name=disk_source][value=new]")
    page.select_option("#id_disk_pool", test_pool.name())
    page.fill("#id_disk_size", "20M")
    page.select_option("#id_nic1_source", f"network:{test_net}")
    page.uncheck("#id_start")  # started below, from the VM's page
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r".*/instances/labhost/[0-9a-f-]{36}/$"))
    dom = lab_conn.lookupByName(name)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    test_pool.refresh(0)
    assert test_pool.listVolumes() == [f"{name}.qcow2"]

    page.click("#actions button[value=start]")
    expect(page.locator("#vm-state")).to_have_text("running")
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    # The fleet view follows changes made outside the panel, without a reload.
    # Filtered by name: other VMs on the lab daemon (a benchmark's) may fill the first page of the fleet.
    page.goto(asgi_server + f"/instances/?q={name}")
    cell = page.locator(f'tr[data-key="labhost/{dom.UUIDString()}"] [data-col=state]')
    expect(cell).to_have_text("running")
    expect(page.locator("html")).to_have_attribute("data-live", "socket")  # live.js: the WebSocket is open
    expect(page.locator("#fleet[data-updated]")).to_have_count(1)  # and its first message was applied
    page.evaluate("window.__marker = 'same page'")
    virsh("suspend", name)
    expect(cell).to_have_text("paused", timeout=LIVE_MS)
    virsh("resume", name)
    expect(cell).to_have_text("running", timeout=LIVE_MS)
    assert page.evaluate("window.__marker") == "same page"  # no reload happened
    assert page.evaluate("document.documentElement.dataset.live") == "socket"  # pushed, not polled
    save_screenshot(page, "fleet-view.png")

    # Force off (in the page's "More" menu) needs a confirmation: a dialog where JavaScript runs.
    page.click(f'tr[data-key="labhost/{dom.UUIDString()}"] a')
    page.click("#vm-more > summary")
    page.click("#actions button[value=destroy]")
    expect(page.locator("#confirm-dialog h2")).to_contain_text("Force off")
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    page.click("#confirm-dialog button[value=confirm]")
    expect(page.locator("#vm-state")).to_have_text("shut off")
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF

    # Delete with its disk.
    page.click("#vm-more > summary")
    page.click("text=Delete…")
    page.check("#volumes input[type=checkbox]")
    page.click("#delete-vm")
    page.wait_for_url(re.compile(r".*/instances/host/labhost/$"))
    with pytest.raises(libvirt.libvirtError):
        lab_conn.lookupByName(name)
    test_pool.refresh(0)
    assert test_pool.listVolumes() == []
