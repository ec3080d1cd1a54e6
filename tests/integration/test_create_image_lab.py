"""A VM made from a cloud image on the real libvirtd, with libvirt as the witness: a small qcow2 "image" made
with qemu-img in a dir pool of the test's own; a full copy grown to the disk size and a linked clone on the
image as backing file; the seed a read-only CD-ROM whose cidata content is read back from its volume; the
panel's metadata; the undo of a failure; the seed deleted with the VM. (The real guest booting with cloud-init
is the e2e test's.)"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import libvirt
import pytest
import yaml
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from jobs import runner
from jobs.models import Job, JobState
from storage.models import CloudImage, ImageLibrary
from tests.conftest import need
from tests.unit.test_create_image import KEY
from virt import image_meta
from virt.cloudinit import SeedSpec, build_seed, read_seed
from virt.create import NIC, PoolVolume
from virt.delete import delete_vm
from virt.errors import VirtError
from virt.image_create import ImageVM, create_from_image
from virt.streams import Download
from virt.xml import Domain, StoragePool, StorageVolume

pytestmark = pytest.mark.lab
MIB = 1 << 20


@pytest.fixture
def image(lab_conn: libvirt.virConnect, test_pool: libvirt.virStoragePool) -> PoolVolume:
    need(Path("/usr/bin/qemu-img").exists(), "qemu-img is not installed")
    path = Path(StoragePool.from_xml(test_pool.XMLDesc(0)).target_path or "")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path / "tiny.qcow2"), "64M"], check=True)
    test_pool.refresh(0)
    return PoolVolume(str(test_pool.name()), "tiny.qcow2")


def _spec(image: PoolVolume, name: str, net: str, **changes: object) -> ImageVM:
    values: dict[str, object] = dict(
        name=name, vcpus=1, memory_mib=64, image=image, image_format="qcow2", disk_pool=image.pool,
        disk_bytes=96 * MIB, disk_volume=f"{name}.qcow2", uuid=str(uuid.uuid4()),
        nics=(NIC(network=net, mac="52:54:00:12:34:56"),), domain_type="qemu", user="debian", image_name="tiny")
    return ImageVM(**{**values, **changes})  # type: ignore[arg-type]


def _seed(spec: ImageVM) -> bytes:
    return build_seed(SeedSpec(spec.name, "debian", (KEY,), mac="52:54:00:12:34:56"), spec.uuid)


def _download(conn: libvirt.virConnect, pool: str, name: str) -> bytes:
    download = Download.begin(conn, pool, name)
    got = b""
    while chunk := download.read(1 << 20):
        got += chunk
    return got


@pytest.mark.parametrize("linked", [False, True], ids=["full copy", "linked clone"])
def test_create_from_image(lab_conn: libvirt.virConnect, test_pool: libvirt.virStoragePool, image: PoolVolume,
                           test_net: str, made_vms: list[str], linked: bool) -> None:
    name = f"test-img-{uuid.uuid4().hex[:6]}"
    made_vms.append(name)
    spec = _spec(image, name, test_net, linked=linked)
    phases: list[str] = []
    new_uuid = create_from_image(lab_conn, spec, _seed(spec), phases.append)
    assert phases == ["copying image", "uploading seed", "defining", "starting"] and new_uuid == spec.uuid
    dom = lab_conn.lookupByUUIDString(new_uuid)
    assert dom.isActive()
    doc = Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert doc.type == "qemu"
    disk, cdrom = list(doc.disks)
    pool = str(test_pool.name())
    vol = StorageVolume.from_xml(test_pool.storageVolLookupByName(spec.disk_volume).XMLDesc(0))
    assert vol.capacity == 96 * MIB and vol.format == "qcow2"  # grown from the image's 64 MiB
    image_path = str(test_pool.storageVolLookupByName("tiny.qcow2").path())
    if linked:
        assert vol.backing_path == image_path and vol.backing_format == "qcow2"
    else:
        assert vol.backing_path is None
    assert disk.source_file == str(test_pool.storageVolLookupByName(spec.disk_volume).path())
    assert cdrom.device == "cdrom" and cdrom.readonly and cdrom.source_file and cdrom.source_file.endswith(
        f"{name}-seed.iso")
    files = read_seed(_download(lab_conn, pool, f"{name}-seed.iso"))
    assert f"instance-id: {new_uuid}" in files["meta-data"] and KEY in files["user-data"]
    assert yaml.safe_load(files["network-config"])["ethernets"]["nic0"]["match"]["macaddress"] == "52:54:00:12:34:56"
    assert next(iter(doc.interfaces)).mac == "52:54:00:12:34:56"
    assert image_meta.of_domain(dom) == image_meta.ImageMeta("tiny", "debian", pool, f"{name}-seed.iso")
    # Deleting the VM takes its seed, whatever volumes were chosen (here: none).
    report = delete_vm(dom, (), force_off=True)
    test_pool.refresh(0)
    assert f"{pool}/{name}-seed.iso" in report.deleted
    assert sorted(test_pool.listVolumes()) == sorted(["tiny.qcow2", spec.disk_volume])


def test_a_failure_removes_the_copy_and_leaves_what_was_not_its(
        lab_conn: libvirt.virConnect, test_pool: libvirt.virStoragePool, image: PoolVolume, test_net: str,
        made_vms: list[str]) -> None:
    name = f"test-img-{uuid.uuid4().hex[:6]}"
    made_vms.append(name)
    spec = _spec(image, name, test_net)
    # Somebody's volume already has the seed's name: the upload is refused after the copy was made.
    test_pool.createXML(StorageVolume.new(name=f"{name}-seed.iso", capacity=MIB, format="raw").to_xml(), 0)
    with pytest.raises(VirtError) as failed:
        create_from_image(lab_conn, spec, _seed(spec))
    assert f"Removed what it had made: the disk {spec.disk_pool}/{spec.disk_volume}" in str(failed.value)
    test_pool.refresh(0)
    assert sorted(test_pool.listVolumes()) == sorted(["tiny.qcow2", f"{name}-seed.iso"])
    with pytest.raises(libvirt.libvirtError):
        lab_conn.lookupByName(name)
    # A domain the host refuses (an unknown network): disk and seed both go again.
    test_pool.storageVolLookupByName(f"{name}-seed.iso").delete(0)
    with pytest.raises(VirtError, match=r"the seed .* the disk"):
        create_from_image(lab_conn, _spec(image, name, "test-no-such-net"), _seed(spec))
    test_pool.refresh(0)
    assert test_pool.listVolumes() == ["tiny.qcow2"]


@pytest.mark.django_db
def test_the_panels_job_on_the_lab(lab_host: Host, lab_conn: libvirt.virConnect,
                                   test_pool: libvirt.virStoragePool, image: PoolVolume, test_net: str,
                                   made_vms: list[str], admin_client: Client) -> None:
    """The admin page's job on the real daemon: its progress in bytes (the copy's allocation against the
    image's), the VM running from its copy, and the page's delete taking the seed."""
    pool = str(test_pool.name())
    ImageLibrary.objects.create(host=lab_host, pool=pool)
    cloud = CloudImage.objects.create(host=lab_host, pool=pool, volume="tiny.qcow2", name="tiny",
                                      default_user="debian", min_disk_bytes=64 * MIB, format="qcow2",
                                      virtual_bytes=64 * MIB)
    name = f"test-img-{uuid.uuid4().hex[:6]}"
    made_vms.append(name)
    response = admin_client.post(reverse("instances:create_image", args=[lab_host.name]), {
        "name": name, "image": str(cloud.pk), "size": "custom", "vcpus": "1", "memory": "64M", "disk_size": "80M",
        "disk_pool": pool, "disk_kind": "copy", "network": f"network:{test_net}", "virt_type": "qemu",
        "ssh_keys": KEY, "network_mode": "dhcp"})
    assert response.status_code == 302, response.context["form"].errors if response.context else response
    job = Job.objects.get()
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.DONE, job.result
    allocation = int(test_pool.storageVolLookupByName("tiny.qcow2").info()[2])
    assert job.total == allocation > 0 and job.done == job.total and job.phase == "done"
    dom = lab_conn.lookupByUUIDString(job.params["uuid"])
    assert dom.isActive() and dom.name() == name
    test_pool.refresh(0)
    assert f"{name}-seed.iso" in test_pool.listVolumes()
    admin_client.post(reverse("instances:delete", args=[lab_host.name, job.params["uuid"]]), {"force_off": "1"})
    test_pool.refresh(0)
    assert f"{name}-seed.iso" not in test_pool.listVolumes() and f"{name}.qcow2" in test_pool.listVolumes()
