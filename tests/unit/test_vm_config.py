"""The VM configuration pages (clone, snapshots, resize, boot, VNC) on libvirt's test driver.

Forms, validation and permissions: bad input gets a field error and libvirt's definition is
unchanged; every URL is walked with the personas. What the test driver cannot do (live device
updates, real disk copies) is covered by tests/integration/test_vm_config_lab.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import resolve, reverse
from django.utils import timezone

from hosts import services
from hosts.models import Host
from instances import clone_jobs
from jobs.models import Job, JobState
from jobs.reconcile import reconcile
from tests.conftest import DB_01_UUID, PASSWORD, WEB_01_UUID
from virt.clone import plan_clone, plan_params
from virt.xml import Domain
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db
SECURE_CONFIG = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
IMAGES = "/var/lib/libvirt/images"  # the basic world's pool "images"


def domain(host: Host, vm: str) -> Any:
    return services.call(host, lambda conn: conn.lookupByUUIDString(vm))


def config_xml(host: Host, vm: str) -> str:
    return services.call(host, lambda conn: conn.lookupByUUIDString(vm).XMLDesc(SECURE_CONFIG))


def live_xml(host: Host, vm: str) -> str:
    return services.call(host, lambda conn: conn.lookupByUUIDString(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))


def define_vm(host: Host, name: str, disk_format: str = "qcow2", *, pool_volume: bool = True,
              cdrom: bool = True) -> str:
    """A shut-off VM with a disk (a volume of the pool 'images' unless told), a CD-ROM and a NIC."""
    ext = "qcow2" if disk_format == "qcow2" else "img"

    def make(conn: libvirt.virConnect) -> str:
        path = f"/srv/elsewhere/{name}.{ext}"
        if pool_volume:
            vol = conn.storagePoolLookupByName("images").createXML(
                f"<volume><name>{name}.{ext}</name><capacity unit='MiB'>16</capacity>"
                f"<target><format type='{disk_format}'/></target></volume>", 0)
            path = vol.path()
        dom = Domain.new(type="test", name=name)
        dom.memory = dom.current_memory = 256 * 1024
        dom.vcpus = 1
        dom.os.type, dom.os.arch = "hvm", "x86_64"
        dom.os.boot_devices = ["hd"]
        xml = dom.to_xml().replace("</domain>", f"""<devices>
          <disk type='file' device='disk'><driver name='qemu' type='{disk_format}'/><source file='{path}'/>
            <target dev='vda' bus='virtio'/></disk>
          {"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/srv/iso/d.iso'/>"
           "<target dev='hdc' bus='ide'/><readonly/></disk>" if cdrom else ""}
          <interface type='network'><mac address='52:54:00:12:34:56'/><source network='lan'/></interface>
          <graphics type='vnc' port='5907' autoport='no' listen='127.0.0.1' passwd='keepme'/>
        </devices></domain>""")
        return str(conn.defineXML(xml).UUIDString())

    return services.call(host, make)


def page(client: Client, response: Any) -> str:
    """The page a redirect leads to (where messages are shown)."""
    assert response.status_code == 302, response.status_code
    return client.get(response["Location"]).content.decode()


# ---- methods (who may use each route: tests/unit/test_routes.py) -------------------------

@pytest.mark.parametrize("name", ["instances:snapshot_create", "instances:snapshot_revert",
                                  "instances:snapshot_delete"])
def test_get_on_snapshot_actions_leads_to_the_list(admin_client: Client, test_host: Host, name: str) -> None:
    """A reload of an action's URL never ends on a bare 405 (nor runs it): without a snapshot it is the list
    (tests/unit/test_vm_page.py has the confirmations)."""
    response = admin_client.get(reverse(name, args=["testhost", WEB_01_UUID]))
    assert response.status_code == 302
    assert response["Location"] == reverse("instances:snapshots", args=["testhost", WEB_01_UUID])


def test_post_without_csrf_is_refused(admin_user, test_host: Host) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    before = config_xml(test_host, WEB_01_UUID)
    url = reverse("instances:vnc", args=["testhost", WEB_01_UUID])
    assert client.post(url, {"password_action": "set", "password": "x", "listen": "0.0.0.0"}).status_code == 403
    assert config_xml(test_host, WEB_01_UUID) == before


def test_detail_page_links(personas: dict[str, Client], granted_user, test_host: Host) -> None:
    url = reverse("instances:detail", args=["testhost", WEB_01_UUID])
    admin = personas["admin"].get(url).content.decode()
    for link in ("link-snapshots", "link-resize", "link-boot", "link-vnc", "link-clone"):
        assert f'id="{link}"' in admin
    user = personas["user"].get(url).content.decode()
    assert 'id="link-snapshots"' in user and 'id="link-resize"' not in user and 'id="link-clone"' not in user


# ---- resize -----------------------------------------------------------------------------


def test_resize_a_running_vm(admin_client: Client, test_host: Host) -> None:
    url = reverse("instances:resize", args=["testhost", WEB_01_UUID])
    shown = admin_client.get(url)
    assert shown.status_code == 200 and shown.context["form"].initial["memory_mib"] == 1024
    html = page(admin_client, admin_client.post(
        url, {"vcpus": "2", "max_vcpus": "4", "memory_mib": "512", "max_memory_mib": "2048"}))
    config = Domain.from_xml(config_xml(test_host, WEB_01_UUID))
    live = Domain.from_xml(live_xml(test_host, WEB_01_UUID))
    assert (config.current_vcpus or config.vcpus, config.vcpus) == (2, 4)
    assert (config.current_memory, config.memory) == (512 * 1024, 2048 * 1024)
    assert live.current_memory == 512 * 1024 and live.memory == 1024 * 1024  # the running maximum stays
    assert "Applied now: memory (handed to the guest&#x27;s balloon driver)." in html
    assert "Waits for the next boot: maximum vCPUs, maximum memory." in html
    assert 'data-size="max_memory"' in html and "Waiting for the next boot:" in html
    event = AuditEvent.objects.get(action="vm.resize")
    assert event.result == "ok" and "memory 1024/1024 MiB -> 512/2048 MiB" in event.detail


def test_resize_a_shut_off_vm(admin_client: Client, test_host: Host) -> None:
    domain(test_host, DB_01_UUID).destroy()
    url = reverse("instances:resize", args=["testhost", DB_01_UUID])
    html = page(admin_client, admin_client.post(
        url, {"vcpus": "1", "max_vcpus": "2", "memory_mib": "1024", "max_memory_mib": "1024"}))
    config = Domain.from_xml(config_xml(test_host, DB_01_UUID))
    assert (config.vcpus, config.current_vcpus, config.memory) == (2, 1, 1024 * 1024)
    assert "the new sizes apply when the VM starts" in html


BAD_RESIZE = [
    ("vcpus", {"vcpus": "3", "max_vcpus": "2"}),
    ("vcpus", {"vcpus": "0"}),
    ("vcpus", {"vcpus": "two"}),
    ("max_vcpus", {"max_vcpus": "100000"}),
    ("memory_mib", {"memory_mib": "4096", "max_memory_mib": "2048"}),
    ("memory_mib", {"memory_mib": "1"}),
    ("max_memory_mib", {"max_memory_mib": str(10**9)}),
    ("max_memory_mib", {"max_memory_mib": "-5"}),
    ("max_memory_mib", {"max_memory_mib": ""}),
]


@pytest.mark.parametrize(("field", "data"), BAD_RESIZE)
def test_resize_bad_input_changes_nothing(admin_client: Client, test_host: Host, field: str,
                                          data: dict[str, str]) -> None:
    before = config_xml(test_host, WEB_01_UUID), live_xml(test_host, WEB_01_UUID)
    form = {"vcpus": "2", "max_vcpus": "2", "memory_mib": "1024", "max_memory_mib": "1024", **data}
    response = admin_client.post(reverse("instances:resize", args=["testhost", WEB_01_UUID]), form)
    assert response.status_code == 200 and field in response.context["form"].errors
    assert (config_xml(test_host, WEB_01_UUID), live_xml(test_host, WEB_01_UUID)) == before
    assert not AuditEvent.objects.filter(action="vm.resize").exists()


# ---- boot -----------------------------------------------------------------------------------


def test_boot_order_menu_and_autostart(admin_client: Client, test_host: Host) -> None:
    vm = define_vm(test_host, "bootvm")
    url = reverse("instances:boot", args=["testhost", vm])
    shown = admin_client.get(url)
    assert shown.status_code == 200
    assert shown.context["form"].initial["order_disk-vda"] == 1  # <boot dev='hd'/>: the first disk
    html = page(admin_client, admin_client.post(url, {
        "order_nic-525400123456": "1", "order_disk-hdc": "2", "order_disk-vda": "", "bootmenu": "on",
        "autostart": "on"}))
    config = Domain.from_xml(config_xml(test_host, vm))
    assert [d.boot_order for d in config.disks] == [None, 2] and config.interfaces[0].boot_order == 1
    assert config.os.boot_devices == [] and config.os.bootmenu is True
    assert config.graphics[0].passwd == "keepme"  # redefined from the SECURE definition
    assert domain(test_host, vm).autostart() == 1
    assert "boot order and menu saved." in html
    assert AuditEvent.objects.get(action="vm.boot").result == "ok"


def test_boot_on_a_running_vm_waits_for_the_next_boot(admin_client: Client, test_host: Host) -> None:
    vm = define_vm(test_host, "bootrun")
    domain(test_host, vm).create()
    url = reverse("instances:boot", args=["testhost", vm])
    html = page(admin_client, admin_client.post(url, {"order_disk-hdc": "1", "order_disk-vda": "2"}))
    assert "they apply at the next boot" in html
    assert Domain.from_xml(live_xml(test_host, vm)).os.boot_devices == ["hd"]
    assert [d.boot_order for d in Domain.from_xml(config_xml(test_host, vm)).disks] == [2, 1]
    assert 'id="pending"' in admin_client.get(url).content.decode()


BAD_BOOT = [
    ("__all__", {}),
    ("order_disk-vda", {"order_disk-vda": "1", "order_disk-hdc": "1"}),
    ("order_disk-vda", {"order_disk-vda": "first"}),
    ("order_disk-vda", {"order_disk-vda": "0"}),
    ("order_disk-vda", {"order_disk-vda": "99"}),
]


@pytest.mark.parametrize(("field", "data"), BAD_BOOT)
def test_boot_bad_input_changes_nothing(admin_client: Client, test_host: Host, field: str,
                                        data: dict[str, str]) -> None:
    vm = define_vm(test_host, "bootbad")
    before = config_xml(test_host, vm)
    response = admin_client.post(reverse("instances:boot", args=["testhost", vm]),
                                 {**data, "order_disk-x/../y": "1"})
    assert response.status_code == 200 and field in response.context["form"].errors
    assert config_xml(test_host, vm) == before and domain(test_host, vm).autostart() == 0


# ---- VNC --------------------------------------------------------------------------------


def vnc_of(xml: str) -> Any:
    return next(g for g in Domain.from_xml(xml).graphics if g.type == "vnc")


def test_vnc_password_is_stored_in_libvirt_only(admin_client: Client, test_host: Host) -> None:
    url = reverse("instances:vnc", args=["testhost", WEB_01_UUID])
    response = admin_client.post(url, {"password_action": "set", "password": "Zq7#pw!x", "keymap": "de",
                                       "listen": "127.0.0.1"})
    html = page(admin_client, response)
    saved = vnc_of(config_xml(test_host, WEB_01_UUID))
    assert (saved.passwd, saved.keymap, saved.listen) == ("Zq7#pw!x", "de", "127.0.0.1")
    # The test driver cannot update a running VM's devices: the page says it waits for the next boot.
    assert "VNC settings saved." in html and "On next boot: password (" in html and "keymap" in html
    shown = admin_client.get(url).content.decode()
    assert "Zq7#pw!x" not in html and "Zq7#pw!x" not in shown and "set (never shown)" in shown
    event = AuditEvent.objects.get(action="vm.vnc")
    assert event.result == "ok" and "password changed" in event.detail and "Zq7" not in event.detail

    page(admin_client, admin_client.post(url, {"password_action": "keep", "keymap": "de", "listen": "127.0.0.1"}))
    assert vnc_of(config_xml(test_host, WEB_01_UUID)).passwd == "Zq7#pw!x"
    page(admin_client, admin_client.post(url, {"password_action": "clear", "keymap": "", "listen": "127.0.0.1"}))
    cleared = vnc_of(config_xml(test_host, WEB_01_UUID))
    assert (cleared.passwd, cleared.keymap) == (None, None)


def test_vnc_on_every_address_is_warned_about(admin_client: Client, test_host: Host) -> None:
    domain(test_host, DB_01_UUID).destroy()
    vm = define_vm(test_host, "vncvm")
    url = reverse("instances:vnc", args=["testhost", vm])
    html = page(admin_client, admin_client.post(url, {"password_action": "keep", "keymap": "",
                                                      "listen": "0.0.0.0"}))
    assert "VNC listens on every address of the host" in html and "they apply when the VM starts" in html
    assert vnc_of(config_xml(test_host, vm)).listen == "0.0.0.0"
    assert 'id="exposed-warning"' in admin_client.get(url).content.decode()


BAD_VNC = [
    ("listen", {"listen": "evil.example.org"}),
    ("listen", {"listen": "127.0.0.1; rm -rf /"}),
    ("listen", {"listen": "<b>x</b>"}),
    ("listen", {"listen": ""}),
    ("password", {"password_action": "set", "password": "nine-char"}),
    ("password", {"password_action": "set", "password": ""}),
    ("password", {"password_action": "set", "password": "a\x00b"}),
    ("password", {"password_action": "set", "password": "pässwd"}),
    ("keymap", {"keymap": "../../etc"}),
    ("password_action", {"password_action": "leak"}),
]


@pytest.mark.parametrize(("field", "data"), BAD_VNC)
def test_vnc_bad_input_changes_nothing(admin_client: Client, test_host: Host, field: str,
                                       data: dict[str, str]) -> None:
    before = config_xml(test_host, WEB_01_UUID)
    form = {"password_action": "keep", "keymap": "", "listen": "127.0.0.1", **data}
    response = admin_client.post(reverse("instances:vnc", args=["testhost", WEB_01_UUID]), form)
    assert response.status_code == 200 and field in response.context["form"].errors
    assert config_xml(test_host, WEB_01_UUID) == before
    if data.get("password"):
        assert data["password"] not in response.content.decode()  # never echoed back
    assert not AuditEvent.objects.filter(action="vm.vnc").exists()


def test_vm_without_vnc(admin_client: Client, test_host: Host) -> None:
    url = reverse("instances:vnc", args=["testhost", DB_01_UUID])
    assert 'id="no-vnc"' in admin_client.get(url).content.decode()
    before = config_xml(test_host, DB_01_UUID)
    assert admin_client.post(url, {"password_action": "set", "password": "x", "listen": "1.2.3.4"}).status_code == 200
    assert config_xml(test_host, DB_01_UUID) == before


# ---- snapshots -------------------------------------------------------------------------


def snapshot_names(host: Host, vm: str) -> list[str]:
    return sorted(s.getName() for s in domain(host, vm).listAllSnapshots(0))


def test_snapshot_create_revert_delete(admin_client: Client, test_host: Host) -> None:
    vm = define_vm(test_host, "snapvm")
    base = ["testhost", vm]
    services.call(test_host, lambda conn: conn.lookupByUUIDString(vm).setMetadata(
        libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "before", None, None, libvirt.VIR_DOMAIN_AFFECT_CONFIG))
    html = page(admin_client, admin_client.post(reverse("instances:snapshot_create", args=base),
                                                {"name": "s1", "description": "known <good>"}))
    assert "snapshot s1 taken" in html and snapshot_names(test_host, vm) == ["s1"]
    listing = admin_client.get(reverse("instances:snapshots", args=base))
    row = listing.context["snapshots"][0]
    assert (row.name, row.state, row.description, row.current) == ("s1", "shutoff", "known <good>", True)
    assert "known &lt;good&gt;" in listing.content.decode()
    assert row.created_at.strftime("%Y-%m-%d %H:%M") in listing.content.decode()  # when it was taken (UTC)

    services.call(test_host, lambda conn: conn.lookupByUUIDString(vm).setMetadata(
        libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "after", None, None, libvirt.VIR_DOMAIN_AFFECT_CONFIG))
    revert = reverse("instances:snapshot_revert", args=base)
    confirm = admin_client.post(revert, {"snapshot": "s1"})
    assert confirm.status_code == 200 and "Whatever changed since the snapshot is lost" in confirm.content.decode()
    assert Domain.from_xml(config_xml(test_host, vm)).description == "after"
    assert "back to snapshot s1" in page(admin_client, admin_client.post(revert, {"snapshot": "s1", "confirm": "yes"}))
    assert Domain.from_xml(config_xml(test_host, vm)).description == "before"

    missing = page(admin_client, admin_client.post(revert, {"snapshot": "nope", "confirm": "yes"}))
    assert "has no snapshot named" in missing
    delete = reverse("instances:snapshot_delete", args=base)
    page(admin_client, admin_client.post(delete, {"snapshot": "s1", "confirm": "yes"}))
    assert snapshot_names(test_host, vm) == []
    actions = list(AuditEvent.objects.filter(action__startswith="vm.snapshot").order_by("id")
                   .values_list("action", "result"))
    assert actions == [("vm.snapshot.create", "ok"), ("vm.snapshot.revert", "ok"), ("vm.snapshot.revert", "failed"),
                       ("vm.snapshot.delete", "ok")]


def test_raw_disks_get_a_clear_message(admin_client: Client, test_host: Host) -> None:
    vm = define_vm(test_host, "rawvm", disk_format="raw")
    base = ["testhost", vm]
    shown = admin_client.get(reverse("instances:snapshots", args=base)).content.decode()
    assert 'id="snapshot-blockers"' in shown and "is raw: snapshots are stored inside qcow2 disks only" in shown
    assert 'id="snapshot-create"' not in shown
    html = page(admin_client, admin_client.post(reverse("instances:snapshot_create", args=base), {"name": "s1"}))
    assert "No snapshot was taken: rawvm cannot be snapshotted: disk vda" in html
    assert snapshot_names(test_host, vm) == []
    assert AuditEvent.objects.get(action="vm.snapshot.create").result == "failed"


@pytest.mark.parametrize("name", ["", "a b", "../x", "<b>", "x" * 64, "-lead", "taken"])
def test_snapshot_bad_names(admin_client: Client, test_host: Host, name: str) -> None:
    vm = define_vm(test_host, "snapbad")
    domain(test_host, vm).snapshotCreateXML("<domainsnapshot><name>taken</name></domainsnapshot>", 0)
    response = admin_client.post(reverse("instances:snapshot_create", args=["testhost", vm]), {"name": name})
    assert response.status_code == 200 and "name" in response.context["form"].errors
    assert snapshot_names(test_host, vm) == ["taken"]


def test_snapshot_list_for_a_view_only_user(personas: dict[str, Client], test_host: Host) -> None:
    domain(test_host, WEB_01_UUID).snapshotCreateXML("<domainsnapshot><name>s0</name></domainsnapshot>", 0)
    html = personas["user"].get(reverse("instances:snapshots", args=["testhost", WEB_01_UUID])).content.decode()
    assert 'data-snapshot="s0"' in html and "Revert" not in html and 'id="snapshot-create"' not in html


# ---- clone ------------------------------------------------------------------------------


def wait_for(client: Client, location: str, timeout: float = 10.0) -> dict[str, Any]:
    """A clone answers with its job page; poll the job's JSON until it ends. "uuid": the clone's, from the link."""
    status = reverse("jobs:status", kwargs=resolve(location).kwargs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state: dict[str, Any] = client.get(status).json()
        if not state["active"]:
            state["uuid"] = str(resolve(state["link"]).kwargs["vm"]) if state["link"] else ""
            return state
        time.sleep(0.05)
    raise AssertionError("the clone job did not end")


@pytest.mark.django_db(transaction=True)  # the job's thread writes the audit record
def test_clone_a_shut_off_vm(admin_client: Client, test_host: Host) -> None:
    vm = define_vm(test_host, "srcvm")
    url = reverse("instances:clone", args=["testhost", vm])
    shown = admin_client.get(url)
    assert shown.context["form"].initial["name"] == "srcvm-clone"
    assert "copied: <span class=\"mono\" translate=\"no\">vda: images/srcvm.qcow2</span>" in shown.content.decode()
    response = admin_client.post(url, {"name": "srcvm-copy"})
    assert response.status_code == 302 and response["Location"].startswith("/jobs/")
    status = wait_for(admin_client, response["Location"])
    assert status["state"] == "done", status
    assert not services.vm_locks.held(str(test_host.pk), vm)
    progress = admin_client.get(response["Location"]).content.decode()
    assert "Open the clone" in progress and "job-progress.js" in progress
    assert status["percent"] == 100 and status["link"] == reverse("instances:detail", args=["testhost", status["uuid"]])
    assert status["link"] in progress and (status["kind"], status["target"]) == ("vm.clone", {"type": "vm",
                                                                                               "name": "srcvm"})

    source = Domain.from_xml(config_xml(test_host, vm))
    copy = Domain.from_xml(config_xml(test_host, status["uuid"]))
    assert copy.name == "srcvm-copy" and copy.uuid != source.uuid
    assert copy.disks[0].source_file == f"{IMAGES}/srcvm-copy.qcow2" and source.disks[0].source_file.endswith(
        "/srcvm.qcow2")
    assert copy.disks[1].source_file == source.disks[1].source_file == "/srv/iso/d.iso"  # shared CD-ROM
    mac = copy.interfaces[0].mac or ""
    assert mac.startswith("52:54:00:") and mac != source.interfaces[0].mac
    assert (copy.graphics[0].passwd, copy.graphics[0].autoport) == ("keepme", True)
    volumes = services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").listVolumes())
    assert "srcvm-copy.qcow2" in volumes
    event = AuditEvent.objects.get(action="vm.clone")
    assert (event.result, event.username, event.object_name) == ("ok", "root-admin", "srcvm")
    assert "images/srcvm.qcow2 -> srcvm-copy.qcow2" in event.detail


@pytest.mark.django_db(transaction=True)
def test_clone_refusals_change_nothing(admin_client: Client, test_host: Host) -> None:
    vm = define_vm(test_host, "srcbad")
    url = reverse("instances:clone", args=["testhost", vm])
    names = lambda: sorted(services.call(test_host, lambda conn: [d.name() for d in conn.listAllDomains(0)]))  # noqa: E731
    before = names()
    for bad in ("", "a/b", "<img src=x>", "x" * 64, "web-01", "../etc"):
        response = admin_client.post(url, {"name": bad})
        assert response.status_code == 200 and "name" in response.context["form"].errors, bad
    domain(test_host, vm).create()
    running = admin_client.get(url).content.decode()
    assert "srcbad is running: shut it off before cloning it" in running and 'id="clone-submit"' not in running
    refused = admin_client.post(url, {"name": "srcbad-2"})
    assert refused.status_code == 200 and "srcbad is running: shut it off" in refused.content.decode()
    domain(test_host, vm).destroy()
    services.vm_locks.acquire(str(test_host.pk), vm)
    try:
        busy = admin_client.post(url, {"name": "srcbad-2"})
        assert "Another action on this VM is still running" in busy.content.decode()
    finally:
        services.vm_locks.release(str(test_host.pk), vm)
    loose = define_vm(test_host, "loose", pool_volume=False)
    shown = admin_client.get(reverse("instances:clone", args=["testhost", loose])).content.decode()
    assert "is not a volume of a storage pool" in shown
    assert names() == sorted([*before, "loose"])
    assert list(AuditEvent.objects.filter(action="vm.clone").values_list("result", flat=True)) == ["failed", "failed"]


@pytest.mark.django_db(transaction=True)
def test_clone_jobs_are_shown_to_admins(admin_client: Client, test_host: Host) -> None:
    vm = define_vm(test_host, "srcjob", cdrom=False)
    response = admin_client.post(reverse("instances:clone", args=["testhost", vm]), {"name": "srcjob-2"})
    wait_for(admin_client, response["Location"])
    other = get_user_model().objects.create_superuser("other-admin", "", PASSWORD)
    client = Client()
    client.force_login(other)
    status = wait_for(client, response["Location"])
    assert status["state"] == "done" and status["uuid"] and status["summary"] == "clone of srcjob as srcjob-2"


@pytest.mark.django_db(transaction=True)
def test_a_failed_clone_removes_its_volumes(admin_client: Client, test_host: Host, monkeypatch) -> None:
    import virt.clone

    real = virt.clone.clone_domain_xml

    def refused_by_libvirt(*args: Any) -> Domain:
        dom = real(*args)
        dom.type = "no-such-hypervisor"
        return dom

    monkeypatch.setattr(virt.clone, "clone_domain_xml", refused_by_libvirt)
    vm = define_vm(test_host, "srcfail")
    response = admin_client.post(reverse("instances:clone", args=["testhost", vm]), {"name": "srcfail-2"})
    status = wait_for(admin_client, response["Location"])
    assert status["state"] == "failed" and status["result"].startswith("The clone failed: ")
    assert status["link"] is None
    volumes = services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").listVolumes())
    assert "srcfail-2.qcow2" not in volumes and "srcfail.qcow2" in volumes
    names = services.call(test_host, lambda conn: [d.name() for d in conn.listAllDomains(0)])
    assert "srcfail-2" not in names
    progress = admin_client.get(response["Location"]).content.decode()
    assert 'class="job-result">The clone failed: ' in progress
    event = AuditEvent.objects.get(action="vm.clone")
    assert event.result == "failed" and "The clone failed" in event.detail
    assert not services.vm_locks.held(str(test_host.pk), vm)


@pytest.mark.django_db(transaction=True)
def test_the_source_stays_locked_for_the_whole_job(admin_client: Client, test_host: Host, monkeypatch) -> None:
    """Busy for every other action while the job runs, unlocked before the job reads "done"."""
    copying, go_on = threading.Event(), threading.Event()
    real = clone_jobs.run_clone

    def slow(*args: Any) -> str:
        copying.set()
        go_on.wait(10)
        return real(*args)

    monkeypatch.setattr(clone_jobs, "run_clone", slow)
    vm = define_vm(test_host, "srclock")
    url = reverse("instances:clone", args=["testhost", vm])
    response = admin_client.post(url, {"name": "srclock-2"})
    assert copying.wait(10)
    assert services.vm_locks.held(str(test_host.pk), vm)
    again = admin_client.post(url, {"name": "srclock-3"})
    assert "Another action on this VM is still running" in again.content.decode()
    go_on.set()
    assert wait_for(admin_client, response["Location"])["state"] == "done"
    assert not services.vm_locks.held(str(test_host.pk), vm)
    assert list(AuditEvent.objects.filter(action="vm.clone").values_list("result", flat=True).order_by("id")) == [
        "failed", "ok"]


@pytest.mark.django_db(transaction=True)
def test_a_clone_whose_worker_died_is_reconciled(admin_client: Client, admin_user: Any, test_host: Host) -> None:
    """Its half-made copy and definition are removed and the source VM is unlocked, once."""
    vm = define_vm(test_host, "srcdead")
    plan = services.call(test_host, lambda conn: plan_clone(conn.lookupByUUIDString(vm), "srcdead-2"))
    lock = services.vm_locks.acquire(str(test_host.pk), vm)
    partial = f"{IMAGES}/srcdead-2.qcow2"

    def half_made(conn: libvirt.virConnect) -> None:  # what the worker had done when it died
        conn.storagePoolLookupByName("images").createXML(
            "<volume><name>srcdead-2.qcow2</name><capacity unit='MiB'>16</capacity>"
            "<target><format type='qcow2'/></target></volume>", 0)
        dom = Domain.from_xml(conn.lookupByUUIDString(vm).XMLDesc(SECURE_CONFIG))
        dom.name, dom.uuid = "srcdead-2", None
        dom.disks[0].source_file = partial
        conn.defineXML(dom.to_xml())

    services.call(test_host, half_made)
    dead = Job.objects.create(
        kind="vm.clone", host=test_host, owner=admin_user, state=JobState.RUNNING, started=timezone.now(),
        target_type="vm", target_name="srcdead", summary="clone of srcdead as srcdead-2", phase="copying disk vda",
        params={"host_key": str(test_host.pk), "vm": vm, "lock": lock, "plan": plan_params(plan)}, rq_id="gone")
    assert "interrupted" in admin_client.get(reverse("jobs:list")).content.decode()
    dead.refresh_from_db()
    assert dead.state == JobState.INTERRUPTED, dead.result
    assert dead.result == ("Interrupted: the worker running it stopped (copying disk vda). "
                           "Removed the definition of srcdead-2, images/srcdead-2.qcow2.")
    assert not services.vm_locks.held(str(test_host.pk), vm)
    volumes = services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").listVolumes())
    assert "srcdead-2.qcow2" not in volumes and "srcdead.qcow2" in volumes
    names = services.call(test_host, lambda conn: [d.name() for d in conn.listAllDomains(0)])
    assert "srcdead-2" not in names and "srcdead" in names
    assert reconcile() == 0 and AuditEvent.objects.get(action="vm.clone").result == "failed"  # once only
    again = admin_client.post(reverse("instances:clone", args=["testhost", vm]), {"name": "srcdead-3"})
    assert wait_for(admin_client, again["Location"])["state"] == "done"  # free again


@pytest.mark.django_db(transaction=True)
def test_a_clone_cancelled_before_it_ran_unlocks_its_source(admin_client: Client, admin_user: Any,
                                                            test_host: Host) -> None:
    vm = define_vm(test_host, "srcqueued")
    plan = services.call(test_host, lambda conn: plan_clone(conn.lookupByUUIDString(vm), "srcqueued-2"))
    lock = services.vm_locks.acquire(str(test_host.pk), vm)
    queued = Job.objects.create(
        kind="vm.clone", host=test_host, owner=admin_user, target_type="vm", target_name="srcqueued",
        params={"host_key": str(test_host.pk), "vm": vm, "lock": lock, "plan": plan_params(plan)}, rq_id="waiting")
    admin_client.post(reverse("jobs:cancel", args=[queued.pk]))
    queued.refresh_from_db()
    assert queued.state == JobState.CANCELLED and not services.vm_locks.held(str(test_host.pk), vm)
