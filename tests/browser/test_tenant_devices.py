"""Issue 14's "done when", in Chromium on the lab: an ordinary user with the change grant on their own VM manages
its disks, its CD-ROM and its NICs within what an admin opened, and sees nothing else.

The host holds a pool and a network the admin opened (the pool also as an ISO library) beside a pool and a
network nobody opened, where another tenant keeps a disk and an ISO. The user logs in through the form, adds a
new volume and detaches it, adds a CD-ROM drive with the library's ISO (read-only), ejects and inserts it again,
adds a NIC on the opened network (its MAC generated) and removes it: libvirt's saved definition is read after
each step. No page the user opens names the closed pool, the closed network or the other tenant's volumes.
The VM stays shut off, so every change is immediate (the lab's VMs run no guest to answer a hot-unplug).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import log_in, save_screenshot
from tests.lab import domain_xml, remove_domain
from tests.lab_resources import isolated_net, lab_conn, remove_pool, test_pool  # noqa: F401  (fixtures)
from virt.xml import Domain, StoragePool, StorageVolume
from webkvm.models import SharedKind, SharedResource, VMGrant

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]
PASSWORD = "tenant-devices-pass-14"


@pytest.fixture
def closed_pool(lab_conn: libvirt.virConnect, test_pool: libvirt.virStoragePool,  # noqa: F811
                ) -> Iterator[libvirt.virStoragePool]:
    """A second dir pool beside the test's own, holding another tenant's disk and ISO; nobody opens it."""
    folder = f"{StoragePool.from_xml(test_pool.XMLDesc(0)).target_path}-closed"
    pool = lab_conn.storagePoolDefineXML(
        StoragePool.new(type="dir", name=f"test-closed-{uuid.uuid4().hex[:8]}", target_path=folder).to_xml(), 0)
    try:
        pool.build(0)
        pool.create(0)
        for name in ("other-tenant-disk.qcow2", "other-tenant-secrets.iso"):
            pool.createXML(StorageVolume.new(name=name, capacity=1 << 20, allocation=0, format="raw").to_xml(), 0)
        yield pool
    finally:
        remove_pool(pool)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def own_vm(lab: dict[str, Any], lab_conn: libvirt.virConnect) -> Iterator[libvirt.virDomain]:  # noqa: F811
    """The tenant's VM: defined, shut off, with ACPI as the panel makes them."""
    doc = Domain.from_xml(domain_xml(f"test-tenant-{uuid.uuid4().hex[:8]}", lab["domain_type"]))
    doc.features.acpi = True
    dom = lab_conn.defineXML(doc.to_xml())
    try:
        yield dom
    finally:
        remove_domain(dom)


def saved(dom: libvirt.virDomain) -> Domain:
    return Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def test_a_tenant_manages_their_vms_devices_within_what_was_opened(
        asgi_server: str, page: Any, lab_conn: libvirt.virConnect,  # noqa: F811
        test_pool: libvirt.virStoragePool, closed_pool: libvirt.virStoragePool,  # noqa: F811
        isolated_net: Callable[[], str], own_vm: libvirt.virDomain) -> None:  # noqa: F811
    opened_net, closed_net = isolated_net(), isolated_net()
    pool = test_pool.name()
    test_pool.createXML(StorageVolume.new(name="tools.iso", capacity=1 << 20, allocation=0, format="raw").to_xml(), 0)
    host = Host.objects.create(name="labhost", transport="local", path="system")
    for kind, name in ((SharedKind.POOL, pool), (SharedKind.ISO_LIBRARY, pool), (SharedKind.NETWORK, opened_net)):
        SharedResource.objects.create(host=host, kind=kind, name=name)
    tenant = get_user_model().objects.create_user("tenant", password=PASSWORD)
    VMGrant.objects.create(user=tenant, host=host, vm_uuid=own_vm.UUIDString(), vm_name=own_vm.name(),
                           can_change=True)
    never = [closed_pool.name(), closed_net, "other-tenant-disk", "other-tenant-secrets"]
    base = f"{asgi_server}/instances/labhost/{own_vm.UUIDString()}"

    def sees_nothing_else(what: str) -> None:
        html = page.content()
        assert not [name for name in never if name in html], what

    def message() -> str:
        return page.locator(".msg").first.inner_text()

    log_in(page, asgi_server, "tenant", PASSWORD)

    # Disks: a new volume, only in the opened pool; then detached (the volume stays in its pool).
    page.goto(base + "/disks/")
    sees_nothing_else("disks page")
    assert page.locator("#attach-disk input[name=source]").count() == 1  # no existing volumes for users
    assert page.locator("#attach-disk select[name=pool] option").all_inner_texts()[0].startswith(pool)
    assert page.locator("#attach-disk select[name=pool] option").count() == 1
    page.fill("#attach-disk input[name=size]", "16M")
    page.click("#attach-disk-submit")
    expect(page.locator(".msg").first).to_contain_text("attached as vda")
    vda = next(d for d in saved(own_vm).disks if d.target_dev == "vda")
    volume = f"{own_vm.name()}-data.qcow2"
    assert vda.source_file and vda.source_file.endswith(f"/{volume}")
    assert volume in test_pool.listVolumes()
    sees_nothing_else("after attach")
    page.locator('#disk-table tr[data-target="vda"] button:has-text("Detach")').click()
    if page.locator("dialog[open]").count():
        page.locator("dialog[open] button[value=confirm], dialog[open] button[type=submit]").first.click()
    expect(page.locator(".msg").first).to_contain_text("vda")
    assert not [d for d in saved(own_vm).disks if d.target_dev == "vda"], message()
    assert volume in test_pool.listVolumes()

    # CD-ROM: a drive with the library's ISO, read-only; ejected and inserted again.
    assert page.locator("#add-cdrom select[name=iso] option", has_text="tools.iso").count() == 1
    page.select_option("#add-cdrom select[name=iso]", f"{pool}/tools.iso")
    page.locator("#add-cdrom button[type=submit]").click()
    expect(page.locator(".msg").first).to_contain_text("tools.iso")
    drive = next(d for d in saved(own_vm).disks if d.device == "cdrom")
    assert drive.readonly and drive.source_file and drive.source_file.endswith("/tools.iso")
    target = drive.target_dev
    row = page.locator(f'#cdrom-table tr[data-target="{target}"]')
    row.locator('button:has-text("Eject")').click()
    expect(page.locator(".msg").first).to_contain_text(target)
    assert not next(d for d in saved(own_vm).disks if d.target_dev == target).source_file
    row = page.locator(f'#cdrom-table tr[data-target="{target}"]')
    row.locator("select[name=iso]").select_option(f"{pool}/tools.iso")
    row.locator('button:has-text("Insert")').click()
    expect(page.locator(".msg").first).to_contain_text("tools.iso")
    again = next(d for d in saved(own_vm).disks if d.target_dev == target)
    assert again.readonly and again.source_file and again.source_file.endswith("/tools.iso")
    sees_nothing_else("after the CD-ROM")
    save_screenshot(page, "tenant-disks.png", full_page=True)

    # NICs: only the opened network; the MAC is the panel's to choose.
    page.goto(base + "/nics/")
    sees_nothing_else("NIC page")
    assert page.locator("#add-nic input[name=mac]").count() == 0
    page.select_option("#add-nic select[name=source]", f"network:{opened_net}")
    page.click("#add-nic-submit")
    expect(page.locator(".msg").first).to_contain_text(re.compile(r"52:54:00"))
    nics = saved(own_vm).interfaces
    assert [n.source_network for n in nics] == [opened_net]
    mac = nics[0].mac
    assert mac and mac.startswith("52:54:00:")
    sees_nothing_else("after the NIC")
    save_screenshot(page, "tenant-nics.png", full_page=True)
    page.locator(f'form:has(input[name=mac][value="{mac}"]) button:has-text("Remove")').click()
    if page.locator("dialog[open]").count():
        page.locator("dialog[open] button[value=confirm], dialog[open] button[type=submit]").first.click()
    expect(page.locator(".msg").first).to_contain_text(mac)
    assert list(saved(own_vm).interfaces) == []

    # The VM's own page and the user's VM list say nothing of the rest either.
    for path in (base + "/", asgi_server + "/instances/"):
        page.goto(path)
        sees_nothing_else(path)
