"""In Chromium, on the lab: create a dir pool, upload an ISO with the progress bar reaching 100%,
then pick that ISO as the CD-ROM of a new VM; libvirt is asked what it holds at each step."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import save_screenshot
from virt.xml import Domain

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def _quiet(*_: object) -> None:
    """libvirt prints every error to stderr by default; the exceptions are enough."""


@pytest.fixture
def conn(lab: dict[str, Any]) -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(_quiet, None)
    connection = libvirt.open(lab["unix_uri"])
    yield connection
    connection.close()


@pytest.fixture
def names(conn: libvirt.virConnect) -> Iterator[dict[str, str]]:
    """The pool and VM this test makes; whatever is left of them is removed afterwards."""
    made = {"pool": f"test-pool-{uuid.uuid4().hex[:8]}", "vm": f"test-{uuid.uuid4().hex[:8]}"}
    yield made
    with contextlib.suppress(libvirt.libvirtError):
        conn.lookupByName(made["vm"]).undefine()
    with contextlib.suppress(libvirt.libvirtError):
        pool = conn.storagePoolLookupByName(made["pool"])
        with contextlib.suppress(libvirt.libvirtError):
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
        with contextlib.suppress(libvirt.libvirtError):
            pool.destroy()
        pool.undefine()



def test_upload_an_iso_and_boot_a_new_vm_from_it(live_server, page, settings, tmp_path: Path,
                                                 conn: libvirt.virConnect, names: dict[str, str]) -> None:
    settings.WEBKVM_POOL_ROOTS = [str(tmp_path)]
    get_user_model().objects.create_superuser("admin", "", "browser-test-pass-1")
    Host.objects.create(name="labhost", transport="local", path="system")
    iso = tmp_path / "test-installer.iso"
    iso.write_bytes(os.urandom(3 * 1024 * 1024 + 17))

    page.goto(live_server.url + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "browser-test-pass-1")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/hosts/$"))

    # From the host page to its storage, and a new dir pool in a temporary folder.
    page.goto(live_server.url + "/hosts/labhost/")
    page.click("#host-storage")
    page.click("#new-pool")
    page.click("#pool-types a[href$='/new/dir/']")
    page.fill("#id_name", names["pool"])
    page.fill("#id_target_path", str(tmp_path / "pool"))
    page.click("#create-pool")
    expect(page.locator("#pool-state")).to_have_text("active")
    assert conn.storagePoolLookupByName(names["pool"]).isActive() == 1

    # Upload: the name comes from the file, the bar reaches 100 %.
    page.set_input_files("#upload-file", str(iso))
    expect(page.locator("#upload-name")).to_have_value("test-installer.iso")
    page.click("#upload-start")
    expect(page.locator("#upload-status")).to_contain_text("done", timeout=30000)
    assert page.evaluate("document.getElementById('upload-bar').value") == 100
    expect(page.locator("#upload-status")).to_contain_text("100%")
    save_screenshot(page, "storage-upload.png")
    vol = conn.storagePoolLookupByName(names["pool"]).storageVolLookupByName("test-installer.iso")
    assert hashlib.sha256(Path(vol.path()).read_bytes()).digest() == hashlib.sha256(iso.read_bytes()).digest()
    # The list shows the new volume when the upload ends, without a reload.
    expect(page.locator('tr[data-volume="test-installer.iso"]')).to_be_visible()
    expect(page.locator("#volumes")).not_to_contain_text("No volumes.")

    # The create-VM form offers it as the CD-ROM.
    page.goto(live_server.url + "/instances/new/?host=labhost")
    page.fill("#id_name", names["vm"])
    page.check("input[name=size][value=custom]")
    page.fill("#id_vcpus", "1")
    page.fill("#id_memory", "64M")
    page.check("input[name=disk_source][value=new]")
    page.select_option("#id_disk_pool", names["pool"])
    page.fill("#id_disk_size", "20M")
    page.uncheck("#id_start")
    page.select_option("#id_iso", f"{names['pool']}/test-installer.iso")
    page.select_option("#id_nic1_source", "")
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r".*/instances/labhost/[0-9a-f-]{36}/$"))
    dom = Domain.from_xml(conn.lookupByName(names["vm"]).XMLDesc(0))
    cdroms = [d.source_path for d in dom.disks if d.device == "cdrom"]
    assert cdroms == [vol.path()]
