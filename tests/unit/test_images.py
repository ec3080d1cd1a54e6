"""The image library on libvirt's test driver (its volumes report the format and backing store they were
created with, as the real daemon reports what it read from the file): marking pools, the import table
(libvirt as witness of what a volume is, the records of what was stored), edit, delete, who sees what."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from storage import images as library
from storage.models import CloudImage, ImageLibrary
from tests.conftest import PASSWORD, need
from virt.create import PoolVolume
from virt.images import check_image, inspect_volume
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db
GIB = 1 << 30


def make_volume(host: Host, name: str, fmt: str, size: int = 2 * GIB, backing: str = "") -> None:
    backing_xml = f"<backingStore><path>{backing}</path><format type='qcow2'/></backingStore>" if backing else ""
    xml = (f"<volume><name>{name}</name><capacity unit='bytes'>{size}</capacity><allocation>0</allocation>"
           f"<target><format type='{fmt}'/></target>{backing_xml}</volume>")
    services.call(host, lambda c: c.storagePoolLookupByName("images").createXML(xml, 0))


def volume_names(host: Host) -> set[str]:
    return services.call(host, lambda c: {v.name() for v in c.storagePoolLookupByName("images").listAllVolumes(0)})


def url(name: str, *args: Any) -> str:
    return reverse(f"storage:{name}", args=list(args))


@pytest.fixture
def lib(test_host: Host) -> Host:
    """testhost's pool `images` as an image library, with volumes of every kind the table needs."""
    ImageLibrary.objects.create(host=test_host, pool="images")
    make_volume(test_host, "good.qcow2", "qcow2", 2 * GIB)
    make_volume(test_host, "plain.img", "raw", 3 * GIB)
    make_volume(test_host, "liar.qcow2", "raw", GIB)  # a raw file named .qcow2: libvirt read its header
    make_volume(test_host, "overlay.qcow2", "qcow2", 2 * GIB, backing="/var/lib/libvirt/images/base.qcow2")
    make_volume(test_host, "disk.vmdk", "vmdk", GIB)
    return test_host


def form(volume: str, **fields: str) -> dict[str, str]:
    return {"volume": volume, "name": "debian-12", "os": "", "os_family": "debian", "os_version": "12",
            "default_user": "debian", "min_disk": "", "firmware": "bios", **fields}


# --- the import table -------------------------------------------------------------------------------

GOOD = [("good.qcow2", "qcow2", 2 * GIB), ("plain.img", "raw", 3 * GIB), ("liar.qcow2", "raw", GIB)]


@pytest.mark.parametrize(("volume", "fmt", "size"), GOOD, ids=[g[0] for g in GOOD])
def test_an_image_is_recorded_as_libvirt_reads_it(admin_client: Client, lib: Host, volume: str, fmt: str,
                                                  size: int) -> None:
    facts = services.call(lib, lambda c: inspect_volume(c, "images", volume))  # the witness
    assert (facts.format, facts.virtual_bytes) == (fmt, size)
    response = admin_client.post(url("image_import", "testhost", "images"), form(volume))
    assert response.status_code == 302, response.content.decode()[:2000]
    image = CloudImage.objects.get()
    assert (image.volume, image.format, image.virtual_bytes, image.min_disk_bytes) == (volume, fmt, size, size)
    assert image.volume_ref == PoolVolume("images", volume) and image.default_user == "debian"
    assert image.created_by is not None and image.created_by.username == "root-admin"
    event = AuditEvent.objects.get(action="image.import", result="ok")
    assert event.object_name == "debian-12" and f"{fmt} (read by libvirt)" in event.detail


BAD = [
    ("overlay.qcow2", {}, "volume", "overlay on /var/lib/libvirt/images/base.qcow2"),
    ("disk.vmdk", {}, "volume", "format is vmdk"),
    ("good.qcow2", {"min_disk": "1G"}, "min_disk", "cannot be smaller"),
    ("good.qcow2", {"min_disk": "ten"}, "min_disk", "Give a size"),
    ("good.qcow2", {"name": "../etc"}, "name", "Use letters"),
    ("good.qcow2", {"default_user": "root"}, "default_user", "already has"),
    ("good.qcow2", {"firmware": "coreboot"}, "firmware", "valid choice"),
    ("nothere.qcow2", {}, "volume", "valid choice"),
]


@pytest.mark.parametrize(("volume", "changed", "field", "words"), BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD])
def test_an_unfit_import_is_a_field_error_and_stores_nothing(admin_client: Client, lib: Host, volume: str,
                                                             changed: dict[str, str], field: str, words: str) -> None:
    before = volume_names(lib)
    response = admin_client.post(url("image_import", "testhost", "images"), form(volume, **changed))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field] and words in errors[field][0], errors
    assert not CloudImage.objects.exists() and volume_names(lib) == before
    assert AuditEvent.objects.filter(action="image.import", result="failed", detail__startswith="refused").exists()
    assert not AuditEvent.objects.filter(action="image.import", result="ok").exists()


def test_a_taken_name_and_a_volume_imported_twice_are_refused(admin_client: Client, lib: Host) -> None:
    assert admin_client.post(url("image_import", "testhost", "images"), form("good.qcow2")).status_code == 302
    again = admin_client.post(url("image_import", "testhost", "images"), form("plain.img"))
    assert "already has an image named debian-12" in again.context["form"].errors["name"][0]
    CloudImage.objects.create(host=lib, pool="images", volume="liar.qcow2", name="liar", min_disk_bytes=GIB,
                              format="raw", virtual_bytes=GIB)
    page = admin_client.get(url("image_import", "testhost", "images")).content.decode()
    assert 'value="plain.img"' in page and 'value="good.qcow2"' not in page  # imported volumes are not offered
    assert list(CloudImage.objects.values_list("volume", flat=True).order_by("volume")) == ["good.qcow2",
                                                                                              "liar.qcow2"]


def test_check_image_never_reads_the_name() -> None:
    from virt.devices import FieldProblem
    from virt.images import VolumeFacts

    assert check_image(VolumeFacts("raw", GIB, 0, path="/x/debian.qcow2")).format == "raw"
    with pytest.raises(FieldProblem, match="format is iso"):
        check_image(VolumeFacts("iso", GIB, 0, path="/x/debian.qcow2"))


def test_only_a_library_pool_imports(admin_client: Client, test_host: Host) -> None:
    make_volume(test_host, "good.qcow2", "qcow2")
    assert admin_client.get(url("image_import", "testhost", "images")).status_code == 404
    assert admin_client.post(url("image_import", "testhost", "images"), form("good.qcow2")).status_code == 404
    assert not CloudImage.objects.exists()


def test_the_osinfo_choice_fills_family_and_version(admin_client: Client, lib: Host) -> None:
    from datetime import date

    from virt.osinfo import catalogue

    offered = [e for e in catalogue().offered(date.today()) if e.id.startswith("http://debian.org/debian/")]
    # osinfo-db is installed by the set-up: under CI=true a catalogue without Debian fails, never skips.
    need(bool(offered), "no Debian entry in this machine's osinfo catalogue (Debian package osinfo-db)")
    need_entry = offered[0]
    response = admin_client.post(url("image_import", "testhost", "images"),
                                 form("good.qcow2", os=need_entry.id, os_family="", os_version=""))
    assert response.status_code == 302
    image = CloudImage.objects.get()
    version = need_entry.id.rsplit("/", 1)[1]
    assert (image.os_id, image.os_family, image.os_version) == (need_entry.id, "debian", version)
    # An entry the catalogue no longer offers stays choosable on the image's edit page.
    CloudImage.objects.filter(pk=image.pk).update(os_id="http://example.com/gone/1")
    page = admin_client.get(url("image_edit", image.pk)).content.decode()
    assert 'value="http://example.com/gone/1" selected' in page


# --- libraries -----------------------------------------------------------------------------------------

def test_marking_a_pool_and_its_linked_clones(admin_client: Client, test_host: Host) -> None:
    page = admin_client.get(url("images")).content.decode()
    assert "Make it an image library" in page and "into the image's own pool" in page
    response = admin_client.post(url("image_library", "testhost", "images"), {"library": "on", "linked_clones": "on"})
    assert response.status_code == 302
    marked = ImageLibrary.objects.get()
    assert (marked.host, marked.pool, marked.linked_clones) == (test_host, "images", True)
    image = CloudImage.objects.create(host=test_host, pool="images", volume="a", name="a", min_disk_bytes=1,
                                      format="qcow2", virtual_bytes=1)
    raw = CloudImage.objects.create(host=test_host, pool="images", volume="b", name="b", min_disk_bytes=1,
                                    format="raw", virtual_bytes=1)
    assert image.linked_clones and not raw.linked_clones  # only a qcow2 image can be a backing file
    # Unmarking a library that holds images is refused, as a field error; nothing changes.
    refused = admin_client.post(url("image_library", "testhost", "images"), {})
    assert "holds 2 images" in refused.context["form"].errors["library"][0]
    assert ImageLibrary.objects.filter(pool="images", linked_clones=True).exists()
    CloudImage.objects.all().delete()
    assert admin_client.post(url("image_library", "testhost", "images"), {}).status_code == 302
    assert not ImageLibrary.objects.exists()
    assert [e.detail for e in AuditEvent.objects.filter(action="library.set", result="ok").order_by("id")] == [
        "Pool images is now an image library (with linked clones).", "Pool images is no longer an image library."]


def test_linked_clones_need_the_library_box_and_an_existing_pool(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post(url("image_library", "testhost", "images"), {"linked_clones": "on"})
    assert "linked_clones" in response.context["form"].errors
    assert admin_client.get(url("image_library", "testhost", "nosuchpool")).status_code == 404
    assert not ImageLibrary.objects.exists()


# --- edit and delete -------------------------------------------------------------------------------------

def _imported(client: Client, volume: str = "good.qcow2", **fields: str) -> CloudImage:
    assert client.post(url("image_import", "testhost", "images"), form(volume, **fields)).status_code == 302
    return CloudImage.objects.get(volume=volume)


def test_edit_keeps_the_facts_libvirt_gave(admin_client: Client, lib: Host) -> None:
    image = _imported(admin_client)
    page = admin_client.get(url("image_edit", image.pk)).content.decode()
    assert 'value="2G"' in page  # the minimum disk, written as the size field reads it
    too_small = admin_client.post(url("image_edit", image.pk), form("", name="deb", min_disk="1G", firmware="efi"))
    assert "cannot be smaller" in too_small.context["form"].errors["min_disk"][0]
    image.refresh_from_db()
    assert (image.name, image.firmware) == ("debian-12", "bios")
    saved = admin_client.post(url("image_edit", image.pk), form("", name="deb", min_disk="8G", firmware="efi"))
    assert saved.status_code == 302
    image.refresh_from_db()
    assert (image.name, image.min_disk_bytes, image.firmware, image.format) == ("deb", 8 * GIB, "efi", "qcow2")
    assert AuditEvent.objects.get(action="image.update", result="ok").detail.startswith("renamed from debian-12")


def test_delete_keeps_the_volume_unless_asked(admin_client: Client, lib: Host) -> None:
    kept = _imported(admin_client)
    assert "Delete debian-12" in admin_client.get(url("image_delete", kept.pk)).content.decode()
    assert admin_client.post(url("image_delete", kept.pk), {}).status_code == 302
    assert not CloudImage.objects.exists() and "good.qcow2" in volume_names(lib)
    gone = _imported(admin_client, "plain.img", name="plain")
    assert admin_client.post(url("image_delete", gone.pk), {"delete_volume": "on"}).status_code == 302
    assert not CloudImage.objects.exists() and "plain.img" not in volume_names(lib)
    assert AuditEvent.objects.filter(action="image.delete", result="ok").count() == 2


def test_a_volume_in_use_is_not_deleted_nor_the_image(admin_client: Client, lib: Host) -> None:
    image = _imported(admin_client)
    make_volume(lib, "vm-disk.qcow2", "qcow2", backing="/var/lib/libvirt/images/good.qcow2")
    xml = ("<domain type='test'><name>uses-image</name><memory>65536</memory><os><type>hvm</type></os><devices>"
           "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/good.qcow2'/>"
           "<target dev='vda'/></disk>"
           "</devices></domain>")
    services.call(lib, lambda c: c.defineXML(xml))
    response = admin_client.post(url("image_delete", image.pk), {"delete_volume": "on"})
    assert response.status_code == 200
    assert CloudImage.objects.filter(pk=image.pk).exists() and "good.qcow2" in volume_names(lib)
    assert AuditEvent.objects.filter(action="image.delete", result="failed").exists()


# --- who sees what ----------------------------------------------------------------------------------------

def test_available_images(lib: Host, admin_user: Any) -> None:
    CloudImage.objects.create(host=lib, pool="images", volume="good.qcow2", name="deb", min_disk_bytes=GIB,
                              format="qcow2", virtual_bytes=GIB)
    other = Host.objects.create(name="other", transport="test", path=str(lib.path))
    CloudImage.objects.create(host=other, pool="images", volume="x", name="deb", min_disk_bytes=GIB, format="raw",
                              virtual_bytes=GIB)
    assert [i.host.name for i in library.available_images(user=admin_user)] == ["other", "testhost"]
    assert [i.host.name for i in library.available_images(lib)] == ["testhost"]
    nobody = get_user_model().objects.create_user("no-quota", "", PASSWORD)
    assert library.available_images(user=nobody) == []  # without a quota, nothing
    from instances.models import Quota

    quota = Quota.objects.create(user=nobody, max_vms=1)
    quota.hosts.add(lib)
    quota.images.add(*CloudImage.objects.all())  # the image on `other` too: but `other` is not among its hosts
    assert [(i.host.name, i.name) for i in library.available_images(user=nobody)] == [("testhost", "deb")]
    assert library.available_images(other, user=nobody) == []


def test_the_images_page_lists_images_and_links_the_upload(admin_client: Client, lib: Host) -> None:
    _imported(admin_client, default_user="debian")
    page = admin_client.get(url("images")).content.decode()
    row = page.split('data-image="debian-12"')[1].split("</tr>")[0]
    assert ">qcow2<" in row and "2.0 GiB" in row and "images/good.qcow2" in row
    assert url("pool", "testhost", "images") + "#upload" in page
    assert url("image_import", "testhost", "images") in page
    assert url("images") in admin_client.get(url("pools", "testhost")).content.decode()
