"""In Chromium, on libvirt's test driver: the VM page's confirmations are dialogs (static/js/confirm.js), Cancel
changes nothing and Confirm posts; after a shutdown request the page offers Force off when its wait is over
(static/js/vm-live.js). libvirt is asked at each step."""

from __future__ import annotations

import time
from pathlib import Path

import libvirt
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts import services
from hosts.models import Host
from instances.models import VMState
from instances.views.detail import FORCE_OFF_AFTER_SECONDS
from tests.browser.conftest import BROWSER_PASSWORD, log_in
from tests.conftest import BASIC_WORLD, WEB_01_UUID
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def state(host: Host) -> int:
    return int(services.call(host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).state()[0]))


def test_force_off_in_a_dialog_and_the_offer_after_an_ignored_shutdown(asgi_server, page) -> None:
    get_user_model().objects.create_superuser("admin", "", BROWSER_PASSWORD)
    host = Host.objects.create(name="demo", transport="test", path=str(BASIC_WORLD))
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    log_in(page, asgi_server)
    page.goto(f"{asgi_server}/instances/demo/{WEB_01_UUID}/")
    expect(page.locator("#vm-state")).to_have_text("running")

    # Cancel: nothing posted, the VM runs on.
    page.click("#vm-more > summary")
    page.click("#vm-more button[value=destroy]")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Force off web-01?")
    expect(dialog.locator("p")).to_contain_text("unsaved data in the guest is lost")
    expect(dialog.locator("button[value=cancel]")).to_be_focused()  # the safe choice is the default
    dialog.locator("button[value=cancel]").click()
    expect(dialog).to_be_hidden()
    assert state(host) == libvirt.VIR_DOMAIN_RUNNING and not AuditEvent.objects.filter(action="vm.destroy").exists()
    folder = Path(settings.BASE_DIR) / "var" / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "vm-page.png"))

    # A guest that ignored a shutdown request: Force off appears beside the notice when its wait is over.
    VMState.objects.filter(vm_uuid=WEB_01_UUID).update(shutdown_asked=time.time() - FORCE_OFF_AFTER_SECONDS + 1.5)
    page.reload()
    offer = page.locator("#shutdown-force-off")
    expect(page.locator("#shutdown-pending")).to_contain_text("Asked the guest to shut down")
    expect(offer).to_be_hidden()
    expect(offer).to_be_visible(timeout=5000)
    expect(page.locator("#shutdown-wait")).to_be_hidden()

    # Confirm: the form posts its confirmation, libvirt forces the VM off.
    offer.locator("button[value=destroy]").click()
    expect(dialog).to_be_visible()
    dialog.locator("button[value=confirm]").click()
    expect(page.locator("#vm-state")).to_have_text("shut off")
    assert state(host) == libvirt.VIR_DOMAIN_SHUTOFF
    assert AuditEvent.objects.get(action="vm.destroy").result == "ok"
    expect(page.locator("#actions button[value=start]")).to_be_visible()
    # At 1024 px the page fits: no horizontal scroll.
    page.set_viewport_size({"width": 1024, "height": 768})
    page.click("#vm-more > summary")
    page.screenshot(path=str(folder / "vm-page-1024.png"))
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert problems == []
