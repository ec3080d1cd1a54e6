"""The newcomer's walk, in Chromium, timed: log in as the admin `make run` made, create a pool on the local
host, upload a real Debian installer ISO through the pool page, create a VM from it with the create form
(full emulation, started when created), open its console from the VM's page and wait until the Debian
installer is on screen. Done when that takes under two minutes (issue 15).

libvirt is asked what the pages did (the VM's XML, its screenshot); what the test made is removed afterwards.
Screenshots are kept in var/test-artifacts/newcomer-*.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import BROWSER_PASSWORD, hypervisor_screenshot, log_in, save_artifact
from tests.browser.test_console import keep
from tests.installer_iso import ISO_NAME, MIN_BLUE, MIN_GREY, installer_iso, installer_on_screen  # noqa: F401
from tests.lab import remove_domain
from tests.lab_resources import IMAGES, lab_conn, remove_pool  # noqa: F401  (fixture)
from virt.xml import Domain

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]

DONE_WITHIN = 120  # seconds from log-in to the installer on screen: issue 15's "under two minutes"

# The shares of VGA blue and light grey on the console canvas, with the colour tests of
# tests.installer_iso.screen_colours: polled cheaply in the page, while the final verdict decodes PNGs in Python.
CANVAS_SHARES = """() => {
    const canvas = document.querySelector('#console-screen canvas');
    if (!canvas || !canvas.width) { return [0, 0]; }
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let blue = 0, grey = 0;
    for (let i = 0; i < data.length; i += 4) {
        const r = data[i], g = data[i + 1], b = data[i + 2];
        if (b >= 128 && r < 64 && g < 64) { blue++; }
        else if (r >= 128 && r <= 210 && Math.abs(r - g) < 16 && Math.abs(g - b) < 16) { grey++; }
    }
    const pixels = data.length / 4;
    return [blue / pixels, grey / pixels];
}"""
CANVAS_PNG = """() => {
    const canvas = document.querySelector('#console-screen canvas');
    return canvas && canvas.width ? canvas.toDataURL('image/png') : '';
}"""


@pytest.fixture
def made(lab_conn: libvirt.virConnect, settings: Any) -> Iterator[dict[str, str]]:  # noqa: F811
    """Names for the pool and VM, a folder the admin may put pools in (below /var/lib/libvirt/images: qemu
    reads the ISO as libvirt-qemu), and whatever is left of them removed afterwards."""
    suffix = uuid.uuid4().hex[:8]
    IMAGES.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="test-newcomer-", dir=IMAGES))
    root.chmod(0o755)
    settings.WEBKVM_POOL_ROOTS = [str(root)]
    names = {"pool": f"test-pool-{suffix}", "vm": f"test-newcomer-{suffix}", "dir": str(root / "isos")}
    yield names
    with contextlib.suppress(libvirt.libvirtError):
        remove_domain(lab_conn.lookupByName(names["vm"]))
    with contextlib.suppress(libvirt.libvirtError):
        remove_pool(lab_conn.storagePoolLookupByName(names["pool"]))
    shutil.rmtree(root, ignore_errors=True)






def test_from_log_in_to_a_debian_installer_in_the_console_in_two_minutes(
        asgi_server: str, page: Any, lab_conn: libvirt.virConnect, installer_iso: Path,  # noqa: F811
        made: dict[str, str]) -> None:
    # What `make run` leaves: the first admin, and the local libvirtd added as host "localhost".
    get_user_model().objects.create_superuser("admin", "", BROWSER_PASSWORD)
    Host.objects.create(name="localhost", transport="local", path="system")
    marks: dict[str, float] = {}
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    began = time.monotonic()

    def mark(step: str) -> None:
        marks[step] = time.monotonic() - began

    log_in(page, asgi_server)
    mark("logged in")

    # A pool for the ISO: Hosts -> localhost -> Storage -> New pool -> directory.
    page.get_by_role("link", name="Hosts", exact=True).click()
    page.get_by_role("link", name="localhost", exact=True).first.click()
    page.click("#host-storage")
    page.click("#new-pool")
    page.click("#pool-types a[href$='/new/dir/']")
    page.get_by_label("Name", exact=True).fill(made["pool"])
    page.get_by_label("Directory", exact=True).fill(made["dir"])
    page.get_by_label("Create the directory").check()
    page.click("#create-pool")
    expect(page.locator("#pool-state")).to_have_text("active")
    mark("pool")

    # The ISO, uploaded through the pool page as a user would: the file's name becomes the volume's.
    page.set_input_files("#upload-file", str(installer_iso))
    expect(page.locator("#upload-name")).to_have_value(ISO_NAME)
    page.click("#upload-start")
    expect(page.locator("#upload-status")).to_contain_text("done", timeout=60000)
    expect(page.locator(f'tr[data-volume="{ISO_NAME}"]')).to_be_visible()  # listed without a reload
    expect(page.locator("#upload-error")).to_be_empty()
    mark("upload")

    # The create form: the newest Debian the OS list offers, the ISO, full emulation, started when created.
    page.get_by_role("link", name="VMs", exact=True).click()
    page.get_by_role("link", name="New VM").click()
    page.get_by_label("Name", exact=True).fill(made["vm"])
    page.get_by_label("Search").fill("debian")  # "Search the operating systems"
    # Debian 12's osinfo-db (0.20221130) predates Debian 12: its newest Debian is 11, the nearest choice.
    shown = [label.strip() for label in page.locator("#id_os option:not([hidden])").all_text_contents()]
    debians = sorted((d for d in shown if re.fullmatch(r"Debian \d+", d)), key=lambda d: int(d.split()[1]))
    assert debians, f"the OS list offers no Debian: {shown}"
    page.get_by_label("Operating system", exact=True).select_option(label=debians[-1])
    page.get_by_label("Pool for the new disk").select_option(made["pool"])
    page.get_by_label(re.compile(r"^Installer ISO")).select_option(f"{made['pool']}/{ISO_NAME}")
    # q35: its CD-ROM is on SATA (AHCI), which loads GRUB's 50 MB about 15 s sooner than i440fx's IDE under full
    # emulation (43 s against 57 s from power-on to the installer, measured on the lab machine).
    machines = page.get_by_label("Machine type", exact=True)
    q35 = next(o for o in machines.locator("option").all_text_contents() if o.strip().startswith("q35"))
    machines.select_option(label=q35.strip())
    # The lab's KVM hangs in real-mode boot loaders ("Welcome to GRUB!"): full emulation boots the ISO.
    page.get_by_label(re.compile(r"Full emulation")).check()
    expect(page.get_by_label(re.compile(r"Start it"))).to_be_checked()
    keep(page, "newcomer-create-form")
    page.get_by_role("button", name="Create VM").click()
    page.wait_for_url(re.compile(r".*/instances/localhost/[0-9a-f-]{36}/$"))
    expect(page.locator(".msg.error")).to_have_count(0)
    mark("created")

    # libvirt has what the form said: full emulation, the uploaded ISO on a CD-ROM, running.
    dom = lab_conn.lookupByName(made["vm"])
    xml = Domain.from_xml(dom.XMLDesc(0))
    pool_path = lab_conn.storagePoolLookupByName(made["pool"]).storageVolLookupByName(ISO_NAME).path()
    assert xml.type == "qemu", xml.type
    assert [d.source_path for d in xml.disks if d.device == "cdrom"] == [pool_path]
    assert dom.isActive()

    # The console, from the VM's page, until the installer is on the canvas.
    page.get_by_role("link", name="Console", exact=True).click()
    page.wait_for_url(re.compile(r".*/console/localhost/"))
    expect(page.locator("#console-status")).to_have_text("connected", timeout=20000)
    mark("console")
    blue = grey = 0.0
    try:
        while time.monotonic() - began < DONE_WITHIN:
            blue, grey = page.evaluate(CANVAS_SHARES)
            if blue >= MIN_BLUE and grey >= MIN_GREY:
                break
            time.sleep(1)
        mark("installer")
    finally:
        keep(page, "newcomer-installer")
        save_artifact("newcomer-installer-libvirt.png", hypervisor_screenshot(lab_conn, dom))
    elapsed = marks["installer"]
    print("newcomer walk: " + ", ".join(f"{step} {at:.1f} s" for step, at in marks.items()))

    canvas = page.evaluate(CANVAS_PNG)
    assert canvas, "the console shows no canvas"
    assert installer_on_screen(base64.b64decode(canvas.split(",", 1)[1])), (
        f"no installer on the console canvas after {elapsed:.0f} s (blue {blue:.2f}, grey {grey:.2f})")
    assert installer_on_screen(hypervisor_screenshot(lab_conn, dom)), "libvirt's screenshot shows no installer"
    expect(page.locator("#console-reconnect")).to_be_hidden()
    assert not script_errors, f"the pages' scripts failed: {script_errors}"
    assert elapsed < DONE_WITHIN, f"log-in to installer took {elapsed:.0f} s: " + str(marks)
