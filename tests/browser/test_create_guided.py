"""In Chromium, on the lab: the guided create form. Search and pick an OS (its sizes fill in), choose full
emulation (TCG), no ISO and no disk, keep "start when created", and libvirt says the VM runs as domain type
qemu; the VM's page has its console one click away."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import BROWSER_PASSWORD, log_in
from tests.lab_resources import isolated_net, lab_conn, made_vms, test_net  # noqa: F401  (fixtures)
from virt.xml import Domain

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def test_guided_create_with_full_emulation(asgi_server: str, page: Any, lab_conn: libvirt.virConnect,  # noqa: F811
                                           test_net: str, made_vms: list[str]) -> None:  # noqa: F811
    began = time.monotonic()
    get_user_model().objects.create_superuser("admin", "", BROWSER_PASSWORD)
    Host.objects.create(name="labhost", transport="local", path="system")
    name = f"test-{uuid.uuid4().hex[:8]}"
    made_vms.append(name)
    log_in(page, asgi_server)

    page.goto(asgi_server + "/instances/new/")  # the only host: preselected, no host page first
    expect(page.locator("#id_host")).to_have_value("labhost")
    expect(page.locator("#create-refresh")).to_be_hidden()  # the script re-reads choices by itself
    page.fill("#id_name", name)
    page.fill("#os-search", "debian")
    debian = page.locator("#id_os option:not([hidden])").filter(has_text=re.compile("Debian")).first
    expect(debian).to_be_visible()
    page.select_option("#id_os", debian.get_attribute("value"))
    expect(page.locator("#id_memory")).to_have_value(debian.get_attribute("data-memory") or "")  # recommended
    page.fill("#id_memory", "64M")  # typing a size chooses custom sizes
    expect(page.locator("input[name=size][value=custom]")).to_be_checked()
    page.check("input[name=disk_source][value=none]")
    page.select_option("#id_nic1_source", f"network:{test_net}")
    page.check("input[name=virt_type][value=qemu]")
    expect(page.locator("#field-virt_type")).to_contain_text("Welcome to GRUB!")
    expect(page.locator("#id_start")).to_be_checked()
    expect(page.locator('#create-summary dd[data-for="Virtualization"]')).to_contain_text("Full emulation")
    page.press("#id_name", "Enter")  # creates, as the button does (not "Update choices", the earlier button)
    page.wait_for_url(re.compile(r".*/instances/labhost/[0-9a-f-]{36}/$"))

    dom = lab_conn.lookupByName(name)
    xml = Domain.from_xml(dom.XMLDesc(0))
    assert dom.isActive() and xml.type == "qemu" and list(xml.disks) == []
    assert [i.model for i in xml.interfaces] == ["virtio"]  # Debian has virtio drivers
    assert page.locator("a[href*='/console/']").count() >= 1
    assert time.monotonic() - began < 15
