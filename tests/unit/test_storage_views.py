"""Storage pages on libvirt's test driver: who may use them, what they show, what bad input changes (nothing)."""

from __future__ import annotations

import time
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import resolve, reverse

from hosts import services
from hosts.models import Host
from virt.xml import StoragePool, StorageVolume
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db
GIB = 1 << 30


def lv(host: Host, fn: Any) -> Any:
    """Ask libvirt (the host's own test-driver world) directly."""
    return services.call(host, fn)


def pool_names(host: Host) -> set[str]:
    return lv(host, lambda c: {p.name() for p in c.listAllStoragePools(0)})


def volume_names(host: Host, pool: str = "images") -> set[str]:
    return lv(host, lambda c: {v.name() for v in c.storagePoolLookupByName(pool).listAllVolumes(0)})


def make_volume(host: Host, name: str, size: int = GIB, pool: str = "images", fmt: str = "raw",
                allocation: int = 0) -> str:
    xml = StorageVolume.new(name=name, capacity=size, allocation=allocation, format=fmt).to_xml()
    return lv(host, lambda c: c.storagePoolLookupByName(pool).createXML(xml, 0).path())


def fill(host: Host) -> None:
    """The test driver's pool starts empty (100 GiB free): take 10 GiB so free and capacity differ."""
    make_volume(host, "filler.img", 10 * GIB, allocation=10 * GIB)


def define_vm_using(host: Host, name: str, path: str) -> None:
    xml = (f"<domain type='test'><name>{name}</name><memory>65536</memory><os><type>hvm</type></os><devices>"
           f"<disk type='file' device='disk'><source file='{path}'/><target dev='vda'/></disk></devices></domain>")
    lv(host, lambda c: c.defineXML(xml))


def audited(action: str, result: str = "ok") -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, result=result))


def url(name: str, *args: str) -> str:
    return reverse(f"storage:{name}", args=list(args))


# --- methods and CSRF (who may use each route: tests/unit/test_routes.py) ---------------

def test_changes_need_post_and_csrf(admin_user, test_host: Host) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.get(url("pool_action", "testhost", "images", "stop")).status_code == 405
    assert client.post(url("pool_action", "testhost", "images", "stop")).status_code == 403
    assert client.put(url("volume_upload", "testhost", "images") + "?name=x.iso", b"abc",
                      content_type="application/octet-stream").status_code == 403
    assert lv(test_host, lambda c: c.storagePoolLookupByName("images").isActive()) == 1


# --- what the pages show --------------------------------------------------------------


def test_pool_list_shows_what_libvirt_reports(admin_client: Client, test_host: Host) -> None:
    fill(test_host)
    page = admin_client.get(url("pools", "testhost")).content.decode()
    row = page.split('data-pool="images"')[1].split("</tr>")[0]
    info = lv(test_host, lambda c: c.storagePoolLookupByName("images").info())
    assert 'data-col="type">dir<' in row and ">active<" in row
    assert f'max="{info[1]}" value="{info[2]}"' in row
    assert ">90.0 GiB</span> free" in row and "/var/lib/libvirt/images" in row
    assert admin_client.get(url("index")).status_code == 302  # one host: straight to its pools


def test_pool_page_lists_volumes_and_their_vms(admin_client: Client, test_host: Host) -> None:
    path = make_volume(test_host, "web.qcow2", 2 * GIB, fmt="qcow2")
    make_volume(test_host, "spare.img", GIB)
    define_vm_using(test_host, "vm-with-disk", path)
    page = admin_client.get(url("pool", "testhost", "images")).content.decode()
    web = page.split('data-volume="web.qcow2"')[1].split("</tr>")[0]
    assert "2.0 GiB" in web and "VM vm-with-disk" in web and path in web and 'data-col="format">qcow2' in web
    spare = page.split('data-volume="spare.img"')[1].split("</tr>")[0]
    assert "nothing" in spare
    assert 'data-fact="users">vm-with-disk<' in page


def test_unreachable_host_is_words_not_500(admin_client: Client, db: None) -> None:
    Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=9, insecure_tcp=True)
    response = admin_client.get(url("pools", "gone"))
    assert response.status_code == 503 and "unreachable" in response.content.decode()
    assert admin_client.get(url("pool", "testhost-none", "x")).status_code == 404


def test_unknown_pool_is_404(admin_client: Client, test_host: Host) -> None:
    assert admin_client.get(url("pool", "testhost", "nope")).status_code == 404
    assert admin_client.post(url("pool_action", "testhost", "nope", "start")).status_code == 404
    assert admin_client.post(url("pool_action", "testhost", "images", "explode")).status_code == 404
    assert admin_client.get(url("pool_new", "testhost", "zfs")).status_code == 404


# --- creating pools ---------------------------------------------------------------------

GOOD_POOLS = {
    "dir": {"name": "t-dir", "target_path": "/var/lib/libvirt/images/t-dir", "build": "on", "start": "on"},
    "netfs": {"name": "t-nfs", "hosts": "nas.example.org", "source_dir": "/export/isos",
              "target_path": "/srv/libvirt/isos", "start": "on", "autostart": "on"},
    "logical": {"name": "t-lvm", "source_name": "vg_guests", "devices": "/dev/sdb /dev/sdc", "start": "on"},
    "iscsi": {"name": "t-iscsi", "hosts": "10.0.0.5:3260", "iqn": "iqn.2024-01.org.example:storage", "start": "on"},
    "disk": {"name": "t-disk", "devices": "/dev/sdb", "source_format": "gpt"},
}


@pytest.mark.parametrize("kind", sorted(GOOD_POOLS))
def test_create_each_pool_type(admin_client: Client, test_host: Host, kind: str) -> None:
    data = GOOD_POOLS[kind]
    response = admin_client.post(url("pool_new", "testhost", kind), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    pool = lv(test_host, lambda c: c.storagePoolLookupByName(data["name"]))
    desc = StoragePool.from_xml(lv(test_host, lambda c: pool.XMLDesc(0)))
    assert desc.type == kind
    assert bool(lv(test_host, lambda c: pool.isActive())) == ("start" in data)
    assert bool(lv(test_host, lambda c: pool.autostart())) == ("autostart" in data)
    if kind == "dir":
        assert desc.target_path == data["target_path"]
    if kind == "netfs":
        assert (desc.source_host, desc.source_dir, desc.target_path) == ("nas.example.org", "/export/isos",
                                                                         "/srv/libvirt/isos")
    if kind == "logical":
        assert [d.path for d in desc.source_devices] == ["/dev/sdb", "/dev/sdc"] and desc.source_name == "vg_guests"
    [event] = audited("pool.create")
    assert event.object_name == data["name"] and f"type {kind}" in event.detail


# (type, form data, field that must carry the error)
BAD_POOLS = [
    ("dir", {"name": "t-x", "target_path": "/etc/evil"}, "target_path"),
    ("dir", {"name": "t-x", "target_path": "/var/lib/libvirt/images/../../../etc"}, "target_path"),
    ("dir", {"name": "../t-x", "target_path": "/var/lib/libvirt/images/x"}, "name"),
    ("dir", {"name": "t..x", "target_path": "/var/lib/libvirt/images/x"}, "name"),
    ("dir", {"name": "t-\x07x", "target_path": "/var/lib/libvirt/images/x"}, "name"),
    ("dir", {"name": "images", "target_path": "/var/lib/libvirt/images/x"}, "name"),  # exists
    ("netfs", {"name": "t-n", "hosts": "-oProxyCommand=x", "source_dir": "/e", "target_path": "/srv/libvirt/m"},
     "hosts"),
    ("netfs", {"name": "t-n", "hosts": "nas", "source_dir": "/e", "target_path": "/mnt"}, "target_path"),
    ("logical", {"name": "t-l", "source_name": "vg/../root"}, "source_name"),
    ("logical", {"name": "t-l", "source_name": "vg", "devices": "/etc/passwd"}, "devices"),
    ("iscsi", {"name": "t-i", "hosts": "san:99999", "iqn": "iqn.2024-01.org.example:x"}, "hosts"),
    ("iscsi", {"name": "t-i", "hosts": "san", "iqn": "nonsense"}, "iqn"),
    ("rbd", {"name": "t-r", "source_name": "p", "hosts": "mon1", "ceph_user": "libvirt"}, "ceph_key"),
    ("rbd", {"name": "t-r", "source_name": "p", "hosts": "mon1", "ceph_user": "libvirt", "ceph_key": "%%%"},
     "ceph_key"),
    ("disk", {"name": "t-d", "devices": "/dev/sdb /dev/sdc", "source_format": "gpt"}, "devices"),
]


@pytest.mark.parametrize(("kind", "data", "field"), BAD_POOLS, ids=[f"{k}-{f}-{i}" for i, (k, _, f) in
                                                                      enumerate(BAD_POOLS)])
def test_bad_pool_input_is_a_field_error_and_creates_nothing(admin_client: Client, test_host: Host, kind: str,
                                                             data: dict[str, str], field: str) -> None:
    response = admin_client.post(url("pool_new", "testhost", kind), data)
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors.get(field), form.errors
    assert f'id="field-{field}"' in response.content.decode()
    assert pool_names(test_host) == {"images"}
    assert len(audited("pool.create", "failed")) == 1 and not audited("pool.create")


def test_rbd_with_an_existing_secret_is_defined(test_host: Host) -> None:
    """The test driver has no secrets: the pool half is checked here, the secret half on the lab."""
    from virt.storage import PoolSpec, define_pool

    spec = PoolSpec("rbd", "t-rbd", source_name="pool", hosts=(("mon1", 6789),), ceph_user="libvirt",
                    secret_uuid="2ec115d7-3a88-3ceb-bc12-0ac909a6fd87")
    lv(test_host, lambda c: define_pool(c, spec, [], start=False))
    desc = StoragePool.from_xml(lv(test_host, lambda c: c.storagePoolLookupByName("t-rbd").XMLDesc(0)))
    assert (desc.auth_username, desc.auth_secret_uuid) == ("libvirt", spec.secret_uuid)


def test_rbd_key_on_a_host_without_secrets_leaves_nothing(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post(url("pool_new", "testhost", "rbd"), {
        "name": "t-rbd", "source_name": "pool", "hosts": "mon1", "ceph_user": "libvirt",
        "ceph_key": "AQBvaBFZAAAAABAA9VHgwCgY1mcLzOQ8oE6vrg==", "start": "on"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "store the Ceph key as a libvirt secret" in page and "not supported" in page
    assert pool_names(test_host) == {"images"}
    assert "AQBvaBFZ" not in AuditEvent.objects.get(action="pool.create").detail


# --- pool lifecycle and deletion -------------------------------------------------------------


def test_stop_start_autostart_refresh(admin_client: Client, test_host: Host) -> None:
    def state() -> tuple[int, int]:
        return lv(test_host, lambda c: (c.storagePoolLookupByName("images").isActive(),
                                        c.storagePoolLookupByName("images").autostart()))

    admin_client.post(url("pool_action", "testhost", "images", "stop"))
    assert state()[0] == 0
    page = admin_client.get(url("pool", "testhost", "images")).content.decode()
    assert 'id="pool-start"' in page and "Start the pool to see its volumes" in page
    admin_client.post(url("pool_action", "testhost", "images", "start"))
    admin_client.post(url("pool_action", "testhost", "images", "autostart"))
    assert state() == (1, 1)
    admin_client.post(url("pool_action", "testhost", "images", "no-autostart"))
    admin_client.post(url("pool_action", "testhost", "images", "refresh"))
    assert state() == (1, 0)
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="pool.").order_by("id")] == [
        "pool.stop", "pool.start", "pool.autostart", "pool.no-autostart", "pool.refresh"]
    # starting an active pool: libvirt's refusal in words, audited as failed
    page = admin_client.post(url("pool_action", "testhost", "images", "start"), follow=True).content.decode()
    assert "Start pool: not done: Requested operation is not valid: storage pool &#x27;images&#x27; is active" in page
    assert len(audited("pool.start", "failed")) == 1


def test_delete_pool_in_use_needs_a_confirmation_naming_the_vm(admin_client: Client, test_host: Host) -> None:
    define_vm_using(test_host, "vm-on-pool", make_volume(test_host, "disk.img"))
    page = admin_client.get(url("pool_delete", "testhost", "images")).content.decode()
    assert "In use by: vm-on-pool" in page
    refused = admin_client.post(url("pool_delete", "testhost", "images"), {})
    assert refused.status_code == 200 and "vm-on-pool" in str(refused.context["form"].errors["confirm_in_use"])
    assert pool_names(test_host) == {"images"}
    done = admin_client.post(url("pool_delete", "testhost", "images"), {"confirm_in_use": "on"})
    assert done.status_code == 302
    assert pool_names(test_host) == set()
    event = audited("pool.delete")[0]
    assert "vm-on-pool (confirmed)" in event.detail and "definition removed" in event.detail


def test_delete_pool_keeps_the_storage_unless_asked(admin_client: Client, test_host: Host) -> None:
    make_volume(test_host, "keep.img")
    lv(test_host, lambda c: c.storagePoolDefineXML(
        StoragePool.new(type="dir", name="t-two", target_path="/var/lib/libvirt/images/two").to_xml(), 0).create(0))
    lv(test_host, lambda c: c.storagePoolLookupByName("t-two").createXML(
        StorageVolume.new(name="gone.img", capacity=GIB).to_xml(), 0))
    admin_client.post(url("pool_delete", "testhost", "images"), {})
    admin_client.post(url("pool_delete", "testhost", "t-two"), {"delete_storage": "on"})
    assert pool_names(test_host) == set()
    words = [e.detail for e in AuditEvent.objects.filter(action="pool.delete").order_by("id")]
    assert "volume" not in words[0] and "1 volume(s) deleted" in words[1] and "its storage deleted" in words[1]


# --- volumes ------------------------------------------------------------------------------


def test_create_volume_through_the_form(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post(url("volume_new", "testhost", "images"),
                                 {"name": "new.qcow2", "size": "20G", "format": "qcow2"})
    assert response.status_code == 302
    xml = lv(test_host, lambda c: c.storagePoolLookupByName("images").storageVolLookupByName("new.qcow2").XMLDesc(0))
    vol = StorageVolume.from_xml(xml)
    assert (vol.capacity, vol.format) == (20 * GIB, "qcow2")
    assert "qcow2, 21474836480 bytes" in audited("volume.create")[0].detail


# (form data, field with the error); the pool has 90 GiB free of 100 GiB.
BAD_VOLUMES = [
    ({"name": "../x.img", "size": "1G", "format": "raw"}, "name"),
    ({"name": "a..b", "size": "1G", "format": "raw"}, "name"),
    ({"name": "ok\x01.img", "size": "1G", "format": "raw"}, "name"),
    ({"name": "ok.img", "size": "10", "format": "raw"}, "size"),
    ({"name": "ok.img", "size": "ten G", "format": "raw"}, "size"),
    ({"name": "ok.img", "size": "0G", "format": "raw"}, "size"),
    ({"name": "ok.img", "size": "95G", "format": "raw", "preallocate": "on"}, "size"),  # beyond what is free
    ({"name": "ok.img", "size": "200G", "format": "qcow2"}, "size"),  # thin, but beyond the whole pool
    ({"name": "ok.img", "size": "1G", "format": "vmdk"}, "format"),
    ({"name": "ok.img", "size": "1G", "format": "raw", "backing": "base.img"}, "backing"),
    ({"name": "base.img", "size": "1G", "format": "raw"}, "name"),  # exists
]


@pytest.mark.parametrize(("data", "field"), BAD_VOLUMES, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_VOLUMES)])
def test_bad_volume_input_is_a_field_error(admin_client: Client, test_host: Host, data: dict[str, str],
                                           field: str) -> None:
    fill(test_host)
    make_volume(test_host, "base.img")
    response = admin_client.post(url("volume_new", "testhost", "images"), data)
    assert response.status_code == 200
    assert response.context["form"].errors.get(field), response.context["form"].errors
    assert volume_names(test_host) == {"base.img", "filler.img"}
    assert len(audited("volume.create", "failed")) == 1


def test_sparse_qcow2_within_the_pool_is_fine_preallocated_raw_is_not(admin_client: Client, test_host: Host) -> None:
    fill(test_host)
    assert admin_client.post(url("volume_new", "testhost", "images"),
                             {"name": "thin.qcow2", "size": "95G", "format": "qcow2"}).status_code == 302
    fat = {"name": "fat.img", "size": "95G", "format": "raw", "preallocate": "on"}
    assert admin_client.post(url("volume_new", "testhost", "images"), fat).status_code == 200
    assert volume_names(test_host) == {"thin.qcow2", "filler.img"}


def test_overlay_on_a_backing_volume(admin_client: Client, test_host: Host) -> None:
    base = make_volume(test_host, "base.qcow2", 3 * GIB, fmt="qcow2")
    response = admin_client.post(url("volume_new", "testhost", "images"),
                                 {"name": "overlay.qcow2", "format": "qcow2", "backing": "base.qcow2"})
    assert response.status_code == 302, response.context["form"].errors
    vol = StorageVolume.from_xml(lv(test_host, lambda c: c.storagePoolLookupByName("images")
                                    .storageVolLookupByName("overlay.qcow2").XMLDesc(0)))
    assert vol.capacity == 3 * GIB
    assert vol.backing_path == base or vol.backing_path is None  # the test driver drops backing stores


def test_delete_volume_refused_while_a_vm_uses_it(admin_client: Client, test_host: Host) -> None:
    define_vm_using(test_host, "vm-a", make_volume(test_host, "used.img"))
    make_volume(test_host, "free.img")
    page = admin_client.get(url("volume_delete", "testhost", "images", "used.img")).content.decode()
    assert "used by VM vm-a" in page and 'id="confirm-delete"' not in page
    refused = admin_client.post(url("volume_delete", "testhost", "images", "used.img"), follow=True)
    assert "used by VM vm-a: it was not deleted" in refused.content.decode()
    assert admin_client.post(url("volume_delete", "testhost", "images", "free.img")).status_code == 302
    assert volume_names(test_host) == {"used.img"}
    assert [e.result for e in AuditEvent.objects.filter(action="volume.delete").order_by("id")] == ["failed", "ok"]


def wait_for_job(client: Client, location: str) -> dict[str, Any]:
    """A clone or wipe answers with its job page; its JSON says when it has ended."""
    from jobs.models import Job

    status = reverse("jobs:status", kwargs=resolve(location).kwargs)
    for _ in range(200):
        state = client.get(status).json()
        if not state["active"] and Job.objects.filter(pk=state["id"], audit__isnull=False).exists():
            return state  # ended, and its audit record (written just after) is there
        time.sleep(0.05)
    raise AssertionError("job did not end")


@pytest.mark.django_db(transaction=True)  # the job runs (and audits) in its own thread
def test_clone_runs_in_the_background_and_reports(admin_client: Client, test_host: Host) -> None:
    make_volume(test_host, "src.qcow2", GIB, fmt="qcow2")
    response = admin_client.post(url("volume_clone", "testhost", "images", "src.qcow2"),
                                 {"name": "copy.qcow2", "format": "qcow2"})
    assert response.status_code == 302 and response["Location"].startswith("/jobs/")
    state = wait_for_job(admin_client, response["Location"])
    assert state["state"] == "done" and state["percent"] == 100.0, state
    assert volume_names(test_host) == {"src.qcow2", "copy.qcow2"}
    page = admin_client.get(response["Location"]).content.decode()
    assert 'id="job"' in page and 'data-state="done"' in page
    assert audited("volume.clone")[0].object_name == "images/copy.qcow2"


@pytest.mark.django_db(transaction=True)  # the job runs (and audits) in its own thread
def test_unsupported_operations_are_words_not_500(admin_client: Client, test_host: Host) -> None:
    """The test driver can neither resize, wipe, upload nor download: each says so."""
    make_volume(test_host, "v.img")
    page = admin_client.post(url("volume_resize", "testhost", "images", "v.img"), {"size": "2G"}).content.decode()
    assert "Grow volume: not done:" in page and "not supported" in page
    small = admin_client.post(url("volume_resize", "testhost", "images", "v.img"), {"size": "512M"})
    assert "volumes only grow" in str(small.context["form"].errors["size"])
    wiped = admin_client.post(url("volume_wipe", "testhost", "images", "v.img"))
    assert wait_for_job(admin_client, wiped["Location"])["result"].endswith("virStorageVolWipe")
    download = admin_client.get(url("volume_download", "testhost", "images", "v.img"))
    assert download.status_code == 502 and "not supported" in download.content.decode()
    upload = admin_client.put(url("volume_upload", "testhost", "images") + "?name=up.iso", b"x" * 1000,
                              content_type="application/octet-stream")
    assert upload.status_code == 502 and "not supported" in upload.json()["error"]
    assert volume_names(test_host) == {"v.img"}  # the volume made for the upload is gone again
    assert {e.action for e in AuditEvent.objects.filter(result="failed")} == {
        "volume.resize", "volume.wipe", "volume.download", "volume.upload"}


def test_upload_check_table(admin_client: Client, test_host: Host) -> None:
    fill(test_host)
    make_volume(test_host, "taken.iso")
    check = url("upload_check", "testhost", "images")
    ok = admin_client.post(check, {"name": "debian.iso", "size": "1000"}).json()
    assert ok == {"ok": True, "url": url("volume_upload", "testhost", "images")}
    for data, field in [({"name": "../x.iso", "size": "10"}, "name"), ({"name": "a/b", "size": "10"}, "name"),
                        ({"name": "taken.iso", "size": "10"}, "name"), ({"name": "x.iso", "size": "0"}, "size"),
                        ({"name": "x.iso", "size": str(91 * GIB)}, "size"), ({"name": "x.iso", "size": "-5"}, "size")]:
        answer = admin_client.post(check, data)
        assert answer.status_code == 400 and field in answer.json()["errors"], (data, answer.json())
    no_length = admin_client.generic("PUT", url("volume_upload", "testhost", "images") + "?name=x.iso", b"",
                                     CONTENT_LENGTH="")
    assert no_length.status_code == 411
    assert volume_names(test_host) == {"taken.iso", "filler.img"}


def test_names_urls_cannot_carry_are_listed_without_links(admin_client: Client, test_host: Host) -> None:
    make_volume(test_host, "ok.img")
    page = admin_client.get(url("pool", "testhost", "images")).content.decode()
    assert url("volume_delete", "testhost", "images", "ok.img") in page


def test_create_vm_form_offers_an_iso_of_a_pool(admin_client: Client, test_host: Host) -> None:
    make_volume(test_host, "installer.iso", 4 << 20)
    page = admin_client.get(reverse("instances:create") + "?host=testhost").content.decode()
    assert '<option value="images/installer.iso"' in page and '>images/installer.iso</option>' in page


def test_pool_type_chooser_and_forms_render(admin_client: Client, test_host: Host) -> None:
    page = admin_client.get(url("pool_types", "testhost")).content.decode()
    for kind in GOOD_POOLS:
        assert url("pool_new", "testhost", kind) in page
    for kind in (*GOOD_POOLS, "rbd"):
        assert admin_client.get(url("pool_new", "testhost", kind)).status_code == 200
    assert admin_client.get(reverse("hosts:detail", args=["testhost"])).content.decode().count(
        url("pools", "testhost")) == 1


def test_libvirt_never_sees_an_unknown_action(test_host: Host) -> None:
    from virt.errors import InvalidInput
    from virt.storage import pool_action

    with pytest.raises(InvalidInput):
        lv(test_host, lambda c: pool_action(c, "images", "undefine"))
    assert lv(test_host, lambda c: c.storagePoolLookupByName("images").isActive()) == 1
    assert libvirt.VIR_STORAGE_POOL_RUNNING == 2


def test_grow_refused_while_a_running_vm_uses_the_volume(admin_client: Client, test_host: Host) -> None:
    define_vm_using(test_host, "vm-running", make_volume(test_host, "busy.img"))
    lv(test_host, lambda c: c.lookupByName("vm-running").create())
    page = admin_client.post(url("volume_resize", "testhost", "images", "busy.img"), {"size": "2G"}).content.decode()
    assert "in use by the running VM vm-running: shut it down first" in page
    assert lv(test_host, lambda c: c.storagePoolLookupByName("images").storageVolLookupByName("busy.img").info()[1]) \
        == GIB
    assert audited("volume.resize", "failed")[0].object_name == "images/busy.img"


# --- one operation, one audit record ------------------------------------------------------------


def test_each_change_writes_one_record_with_its_duration(admin_client: Client, test_host: Host) -> None:
    admin_client.post(url("pool_action", "testhost", "images", "refresh"))
    admin_client.post(url("volume_new", "testhost", "images"), {"name": "a.img", "size": "1G", "format": "raw"})
    admin_client.post(url("volume_delete", "testhost", "images", "a.img"))
    events = list(AuditEvent.objects.exclude(action="login").order_by("id"))
    assert [(e.action, e.result, e.object_type, e.object_name) for e in events] == [
        ("pool.refresh", "ok", "pool", "images"), ("volume.create", "ok", "volume", "images/a.img"),
        ("volume.delete", "ok", "volume", "images/a.img")]
    assert all(e.duration_ms is not None and e.host_name == "testhost" for e in events)


def test_input_the_host_refuses_is_a_field_error_audited_as_refused(admin_client: Client, test_host: Host,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every problem the virt layer names lands on its field (capacity is the form's size), once."""
    from virt.storage_rules import Problem, StorageInputError

    def refuse(conn: Any, pool: str, spec: Any) -> None:
        raise StorageInputError([Problem("capacity", "Too big for the pool now."),
                                 Problem("name", "A volume of that name appeared meanwhile."),
                                 Problem("elsewhere", "The pool changed.")])

    monkeypatch.setattr("storage.views.volumes.create_volume", refuse)
    response = admin_client.post(url("volume_new", "testhost", "images"),
                                 {"name": "late.img", "size": "1G", "format": "raw"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert errors["size"] == ["Too big for the pool now."]
    assert errors["name"] == ["A volume of that name appeared meanwhile."]
    assert errors["__all__"] == ["The pool changed."]
    [event] = AuditEvent.objects.exclude(action="login")
    assert (event.action, event.result, event.object_name) == ("volume.create", "failed", "images/late.img")
    assert event.detail.startswith("refused: ") and "appeared meanwhile" in event.detail
    assert volume_names(test_host) == set()


def test_a_post_the_host_cannot_answer_is_audited_once(admin_client: Client, db: None) -> None:
    Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=9, insecure_tcp=True)
    response = admin_client.post(url("volume_delete", "gone", "images", "v.img"))
    assert response.status_code == 503 and "refused" in response.content.decode()
    [event] = AuditEvent.objects.exclude(action="login")
    assert (event.action, event.result) == ("volume.delete", "failed") and "could not be asked" in event.detail
