"""In Chromium, on the two lab hosts: migrate a running VM from its page, land on the migration's job
page, watch it end done without a reload, and see the VM running on the other host in the fleet view
(and in libvirt); cancel a slow one from its job page."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import BROWSER_PASSWORD, log_in, save_screenshot
from tests.lab import domain_xml, lab2, remove_domain  # noqa: F401  (lab2 is a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def running_vm(lab: dict[str, Any],
               lab2: dict[str, Any],  # noqa: F811
               ) -> Iterator[tuple[libvirt.virConnect, libvirt.virConnect, libvirt.virDomain]]:
    one, two = libvirt.open(lab["unix_uri"]), libvirt.open(lab2["uri"])
    name = f"test-mig-{uuid.uuid4().hex[:8]}"
    dom = one.defineXML(domain_xml(name, lab["domain_type"]))
    dom.create()
    yield one, two, dom
    for conn in (one, two):
        with contextlib.suppress(libvirt.libvirtError):
            remove_domain(conn.lookupByName(name))
        conn.close()


def test_migrate_from_the_instance_page(live_server, page, lab: dict[str, Any], lab2: dict[str, Any],  # noqa: F811
                                        running_vm) -> None:
    one, two, dom = running_vm
    vm_uuid = dom.UUIDString()
    get_user_model().objects.create_superuser("admin", "", BROWSER_PASSWORD)
    Host.objects.create(name="lab1", transport="local", path="system")
    Host.objects.create(name="lab2", transport="tcp", hostname=lab2["address"], port=16509, insecure_tcp=True)
    log_in(page, live_server.url)

    page.goto(f"{live_server.url}/instances/lab1/{vm_uuid}/")
    page.click("#vm-more > summary")  # the VM page's "More" menu
    page.click("#migrate")
    page.select_option("#id_target", "lab2")
    page.click("#check")
    expect(page.locator("#preflight-ok, #findings")).to_be_visible()
    expect(page.locator("#findings .problem")).to_have_count(0)
    save_screenshot(page, "migration-check.png", full_page=True)
    page.click("#migrate-now")
    page.wait_for_url(re.compile(r".*/jobs/\d+/$"))
    page.evaluate("window.__marker = 'same page'")
    expect(page.locator("#job")).to_have_attribute("data-state", "done", timeout=60000)
    expect(page.locator("[data-job=result]")).to_contain_text(f"{dom.name()} now runs on lab2")
    expect(page.locator("[data-job=result]")).to_contain_text(re.compile(r"downtime \d+ ms"))
    assert page.evaluate("window.__marker") == "same page"  # progress came without a reload
    expect(page.locator("[data-job=cancel]")).to_be_hidden()
    save_screenshot(page, "migration-done.png", full_page=True)

    # libvirt agrees, and so does the fleet view.
    assert two.lookupByUUIDString(vm_uuid).isActive()
    with pytest.raises(libvirt.libvirtError):
        one.lookupByUUIDString(vm_uuid)
    page.click("[data-job=link] a")
    page.wait_for_url(re.compile(rf".*/instances/lab2/{vm_uuid}/$"))
    expect(page.locator("#vm-state")).to_have_text("running")
    page.goto(live_server.url + "/instances/")
    expect(page.locator(f'tr[data-key="lab2/{vm_uuid}"] [data-col=state]')).to_have_text("running")
    expect(page.locator(f'tr[data-key="lab1/{vm_uuid}"]')).to_have_count(0)


def test_cancel_from_the_progress_page(live_server, page, lab: dict[str, Any], lab2: dict[str, Any],  # noqa: F811
                                       running_vm) -> None:
    """A throttled migration of a larger guest, cancelled with the button: the VM stays on host 1."""
    one, two, small = running_vm
    small.destroy()
    name = f"{small.name()}-big"
    dom = one.defineXML(domain_xml(name, lab["domain_type"], memory_mib=2048))
    try:
        dom.create()
        vm_uuid = dom.UUIDString()
        get_user_model().objects.create_superuser("admin", "", BROWSER_PASSWORD)
        Host.objects.create(name="lab1", transport="local", path="system")
        Host.objects.create(name="lab2", transport="tcp", hostname=lab2["address"], port=16509, insecure_tcp=True)
        log_in(page, live_server.url)
        page.goto(f"{live_server.url}/instances/lab1/{vm_uuid}/migrate/?target=lab2&bandwidth_mib=1")
        page.click("#migrate-now")
        page.wait_for_url(re.compile(r".*/jobs/\d+/$"))
        expect(page.locator("[data-job=state]")).to_have_text("running")
        expect(page.locator("[data-job=phase]")).to_have_text(re.compile(r"^copying memory"))
        expect(page.locator("[data-job=amount]")).to_have_text(re.compile(r"^[1-9][\d.]* \w+ of "))
        page.click("#job-cancel")
        expect(page.locator("#job")).to_have_attribute("data-state", "cancelled", timeout=30000)
        expect(page.locator("[data-job=result]")).to_contain_text("still running on lab1 with its definition intact")
        assert dom.isActive() and dom.isPersistent()
        with pytest.raises(libvirt.libvirtError):
            two.lookupByUUIDString(vm_uuid)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            remove_domain(dom)



