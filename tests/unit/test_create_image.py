"""Creating a VM from a cloud image on libvirt's test driver: the form's bad input (nothing made), the job and its
phases, the undo of a failure, the VM page's ssh command, the seed deleted with the VM, and self-service within a
quota. The test driver cannot upload through a stream (virStorageVolUpload) nor resize: the seed upload is
replaced here by a plain volume of the seed's size; tests/integration/test_create_image_lab.py does it for real."""

from __future__ import annotations

import base64
import dataclasses
import re
from typing import Any

import libvirt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from api.models import ApiToken
from hosts import services
from hosts.models import Host
from instances import quotas
from instances.models import Flavor, OwnedVM, Quota
from instances.views import create_image
from jobs import runner
from jobs.models import Job, JobState
from storage.models import CloudImage, ImageLibrary
from tests.conftest import PASSWORD
from tests.unit.test_api_access import TokenClient
from virt import cloudinit, image_meta
from virt.capabilities import BIOS, UEFI
from virt.create import NIC, PoolVolume
from virt.errors import VirtError
from virt.image_create import ImageVM, create_from_image
from virt.xml import Domain
from webkvm.models import AuditEvent, SharedKind, SharedResource, VMGrant

pytestmark = pytest.mark.django_db
GIB = 1 << 30
URL = reverse("instances:create_image", args=["testhost"])
OWN_URL = reverse("instances:create_own")
KEY = "ssh-ed25519 " + base64.b64encode(
    b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode() + " me@laptop"


@pytest.fixture
def image(test_host: Host) -> CloudImage:
    """A 1 GiB qcow2 image in pool images (a library with linked clones)."""
    xml = "<volume><name>debian-12.qcow2</name><capacity>1073741824</capacity></volume>"
    services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").createXML(xml, 0).name())
    ImageLibrary.objects.create(host=test_host, pool="images", linked_clones=False)
    return CloudImage.objects.create(host=test_host, pool="images", volume="debian-12.qcow2", name="debian-12",
                                     default_user="debian", min_disk_bytes=GIB, format="qcow2", virtual_bytes=GIB)


@pytest.fixture
def fake_upload(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The seed "uploaded" as a volume of its size (the test driver has no stream upload); the bytes kept."""
    sent: list[bytes] = []

    def upload(conn: libvirt.virConnect, pool: str, name: str, data: bytes, *, timeout: float) -> str:
        sent.append(data)
        xml = f"<volume><name>{name}</name><capacity>{len(data)}</capacity></volume>"
        return str(conn.storagePoolLookupByName(pool).createXML(xml, 0).path())

    monkeypatch.setattr(cloudinit, "upload_seed", upload)
    return sent


def good(chosen: CloudImage, **changes: str) -> dict[str, str]:
    data = {"name": "app-01", "image": str(chosen.pk), "size": "custom", "vcpus": "1", "memory": "256M",
            "disk_size": "1G", "disk_pool": "images", "disk_kind": "copy", "network": "network:lan",
            "virt_type": "test", "hostname": "", "user": "", "ssh_keys": KEY, "password": "", "user_data": "",
            "network_mode": "dhcp", "address": "", "gateway": "", "dns": ""}
    return {**data, **changes}


def world(host: Host) -> tuple[list[str], list[str]]:
    def look(conn: libvirt.virConnect) -> tuple[list[str], list[str]]:
        return (sorted(d.name() for d in conn.listAllDomains()),
                sorted(conn.storagePoolLookupByName("images").listVolumes()))
    return services.call(host, look)


def run_jobs() -> list[Job]:
    """The jobs the requests started (their thread starts on commit, which a test's transaction never does)."""
    jobs = list(Job.objects.filter(state=JobState.QUEUED))
    for job in jobs:
        runner.execute(job.pk)
        job.refresh_from_db()
    return jobs


ALIASES = "#cloud-config\na: &x [1, 2]\nb: *x\n"
BAD_INPUT = [
    ("hostname with a shell", {"hostname": "web;reboot"}, "hostname"),
    ("hostname with a leading hyphen", {"hostname": "-web"}, "hostname"),
    ("hostname all digits", {"hostname": "web.123"}, "hostname"),
    ("the VM's name is no hostname", {"name": "app_01"}, "hostname"),
    ("a system user", {"user": "root"}, "user"),
    ("a user with spaces", {"user": "a b"}, "user"),
    ("a cut key", {"ssh_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"}, "ssh_keys"),
    ("a key with options", {"ssh_keys": f'command="/bin/sh" {KEY}'}, "ssh_keys"),
    ("an unknown key type", {"ssh_keys": "ssh-dss AAAAB3NzaC1kc3M="}, "ssh_keys"),
    ("no key and no password", {"ssh_keys": ""}, "ssh_keys"),
    ("a short password", {"password": "short"}, "password"),
    ("a password with a line break", {"password": "abcd\nefghij"}, "password"),
    ("user-data setting users", {"user_data": "#cloud-config\nusers: []\n"}, "user_data"),
    ("user-data without its header", {"user_data": "runcmd: [reboot]\n"}, "user_data"),
    ("user-data with aliases", {"user_data": ALIASES}, "user_data"),
    ("user-data too large", {"user_data": "#cloud-config\n" + "a: b\n" * 4000}, "user_data"),
    ("a disk smaller than the image", {"disk_size": "512M"}, "disk_size"),
    ("a disk without a unit", {"disk_size": "20"}, "disk_size"),
    ("an image of no library", {"image": "999"}, "image"),
    ("a linked clone the library does not allow", {"disk_kind": "linked"}, "disk_kind"),
    ("a static address that is the network's", {"network_mode": "static", "address": "10.0.0.0/24"}, "address"),
    ("a gateway outside the network", {"network_mode": "static", "address": "10.0.0.5/24", "gateway": "10.1.0.1"},
     "gateway"),
    ("a DNS server that is no address", {"network_mode": "static", "address": "10.0.0.5/24", "dns": "evil.com"},
     "dns"),
    ("a name with a slash", {"name": "../etc"}, "name"),
    ("a taken name", {"name": "web-01"}, "name"),
    ("an unknown pool", {"disk_pool": "other"}, "disk_pool"),
    ("an unknown network", {"network": "network:evil"}, "network"),
    ("an unknown virtualization", {"virt_type": "xen"}, "virt_type"),
    ("memory without a unit", {"memory": "lots"}, "memory"),
]


@pytest.mark.parametrize(("case", "changes", "field"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_a_field_error_and_makes_nothing(admin_client: Client, test_host: Host, image: CloudImage,
                                                      case: str, changes: dict[str, str], field: str) -> None:
    before = world(test_host)
    response = admin_client.post(URL, good(image, **changes))
    assert response.status_code == 200, case
    errors = response.context["form"].errors
    assert field in errors, f"{case}: {dict(errors)}"
    assert not Job.objects.exists() and world(test_host) == before
    assert changes.get("password", "\x00") not in response.content.decode()  # a password is never shown again


def test_the_admin_page_makes_the_vm_through_a_job(admin_client: Client, test_host: Host, image: CloudImage,
                                                   fake_upload: list[bytes]) -> None:
    create_page = admin_client.get(reverse("instances:create") + "?host=testhost")
    assert URL in create_page.content.decode()  # the create page offers "From an image"
    response = admin_client.post(URL, good(image, password="correct horse", hostname="Web-1.example.org"))
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert "correct horse" not in str(job.params)  # the clear password is stored nowhere
    assert job.kind == "vm.create-from-image" and job.params["seed"]
    [job] = run_jobs()
    assert job.state == JobState.DONE, job.result
    # Every phase is in the result with its time, even those shorter than the job page's refresh.
    assert re.search(r"Phases: copying image [\d.]+ s, uploading seed [\d.]+ s, defining [\d.]+ s, "
                     r"starting [\d.]+ s\.", job.result), job.result
    assert "seed" not in job.params  # its hash goes with the job's end
    files = cloudinit.read_seed(fake_upload[0])
    assert "instance-id: " + job.params["uuid"] in files["meta-data"]
    assert "local-hostname: web-1.example.org" in files["meta-data"]
    assert "name: debian" in files["user-data"] and KEY in files["user-data"]
    assert "$6$rounds=" in files["user-data"] and "correct horse" not in files["user-data"]

    def read(conn: libvirt.virConnect) -> tuple[Domain, bool, image_meta.ImageMeta | None]:
        dom = conn.lookupByUUIDString(job.params["uuid"])
        return Domain.from_xml(dom.XMLDesc(0)), bool(dom.isActive()), image_meta.of_domain(dom)

    doc, active, meta = services.call(test_host, read)
    assert active and doc.name == "app-01"
    disk, cdrom = list(doc.disks)
    assert disk.source_path and disk.source_path.endswith("app-01.qcow2") and disk.device == "disk"
    assert cdrom.device == "cdrom" and cdrom.readonly and cdrom.source_path.endswith("app-01-seed.iso")
    assert meta == image_meta.ImageMeta("debian-12", "debian", "images", "app-01-seed.iso")
    nic = next(iter(doc.interfaces))
    assert nic.mac and yaml.safe_load(files["network-config"])["ethernets"]["nic0"]["match"]["macaddress"] == nic.mac
    assert _link(admin_client, job) == reverse("instances:detail", args=["testhost", job.params["uuid"]])
    assert AuditEvent.objects.filter(action="vm.create-from-image", result="ok").exists()


def _link(client: Client, job: Job) -> str:
    page = client.get(job.get_absolute_url()).content.decode()
    assert "Open the VM" in page
    return reverse("instances:detail", args=["testhost", job.params["uuid"]])


def spec(**changes: Any) -> ImageVM:
    values: dict[str, Any] = dict(
        name="undo-me", vcpus=1, memory_mib=128, image=PoolVolume("images", "debian-12.qcow2"), image_format="qcow2",
        disk_pool="images", disk_bytes=GIB, disk_volume="undo-me.qcow2", uuid="44444444-4444-4444-8444-444444444444",
        nics=(NIC(network="lan"),), domain_type="test", user="debian", image_name="debian-12")
    return ImageVM(**{**values, **changes})


def test_a_failed_creation_removes_what_it_made_and_says_so(test_host: Host, image: CloudImage) -> None:
    before = world(test_host)
    phases: list[str] = []
    # The test driver has no stream upload: the seed fails after the disk was copied.
    with pytest.raises(VirtError) as failed:
        services.call(test_host, lambda conn: create_from_image(conn, spec(), b"seed", phases.append))
    assert phases == ["copying image", "uploading seed"]
    assert "Removed what it had made: the disk images/undo-me.qcow2" in str(failed.value)
    assert world(test_host) == before
    # A disk smaller than the image: a field error before anything is made.
    with pytest.raises(VirtError, match=r"at least 1\.0 GiB"):
        services.call(test_host, lambda conn: create_from_image(conn, spec(disk_bytes=GIB // 2), b"seed"))
    assert world(test_host) == before


def test_a_failed_job_says_its_phase_and_leaves_nothing(admin_client: Client, test_host: Host,
                                                        image: CloudImage) -> None:
    before = world(test_host)
    admin_client.post(URL, good(image))
    [job] = run_jobs()  # the real upload_seed: the test driver refuses it
    assert job.state == JobState.FAILED and "Removed what it had made" in job.result
    assert job.phase == "uploading seed" and "seed" not in job.params
    assert world(test_host) == before


def test_the_vm_page_shows_the_ssh_command_and_delete_takes_the_seed(admin_client: Client, test_host: Host,
                                                                     image: CloudImage, fake_upload: list[bytes],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    admin_client.post(URL, good(image))
    [job] = run_jobs()
    vm_uuid = job.params["uuid"]
    from virt import domains

    real = domains._addresses
    monkeypatch.setattr(domains, "_addresses", lambda dom, *args: {
        mac: ["192.168.150.23/24", "fe80::1/64"] for mac in real(dom, *args) or _macs(dom)})
    page = admin_client.get(reverse("instances:detail", args=["testhost", vm_uuid])).content.decode()
    assert 'value="ssh debian@192.168.150.23"' in page and "fe80" not in page.split('id="image-login"')[1]
    confirm = admin_client.get(reverse("instances:delete", args=["testhost", vm_uuid])).content.decode()
    assert "Its cloud-init seed <span class=\"mono\">images/app-01-seed.iso</span> is deleted with it" in confirm
    assert 'id="kept"' not in confirm
    response = admin_client.post(reverse("instances:delete", args=["testhost", vm_uuid]), {"force_off": "1"})
    assert response.status_code == 302
    names, volumes = world(test_host)
    assert "app-01" not in names and "app-01-seed.iso" not in volumes
    assert "app-01.qcow2" in volumes  # the disk stays unless ticked


def _macs(dom: libvirt.virDomain) -> list[str]:
    return [nic.mac or "" for nic in Domain.from_xml(dom.XMLDesc(0)).interfaces]


# --- self-service ------------------------------------------------------------------------------------------

def _quota_user(host: Host, image: CloudImage, **limits: int) -> Client:
    user = get_user_model().objects.create_user("carol", "", PASSWORD)
    quota = Quota.objects.create(user=user, **{"max_vms": 1, "max_vcpus": 2, "max_memory_mib": 1024,
                                               "max_disk_gib": 10, **limits})
    quota.hosts.add(host)
    quota.images.add(image)
    quota.shared.add(SharedResource.objects.create(host=host, kind=SharedKind.POOL, name="images"),
                     SharedResource.objects.create(host=host, kind=SharedKind.NETWORK, name="lan"))
    client = Client()
    client.force_login(user)
    return client


def test_a_user_creates_their_own_vm_within_the_quota(test_host: Host, image: CloudImage,
                                                      fake_upload: list[bytes]) -> None:
    client = _quota_user(test_host, image)
    page = client.get(OWN_URL)
    form = page.context["form"]
    assert list(form.images) == [str(image.pk)] and [c for c, _ in form.fields["disk_pool"].choices] == ["images"]
    assert "1 of 1 VMs" in page.content.decode()
    assert client.post(OWN_URL, good(image)).status_code == 302
    owned = OwnedVM.objects.get()
    assert owned.vm_uuid is None and owned.vcpus == 1 and owned.disk_bytes == GIB  # reserved before the job
    [job] = run_jobs()
    assert job.state == JobState.DONE and job.kind == "vm.create-own", job.result
    owned.refresh_from_db()
    assert str(owned.vm_uuid) == job.params["uuid"]
    grant = VMGrant.objects.get(vm_uuid=owned.vm_uuid)
    assert grant.can_change and grant.can_delete and grant.can_console and grant.can_power
    # Over quota: refused with what is left, nothing made.
    before = world(test_host)
    refused = client.post(OWN_URL, good(image, name="app-02"))
    assert "0 of 1 VMs left" in refused.content.decode() and Job.objects.count() == 1
    assert world(test_host) == before and OwnedVM.objects.count() == 1


def test_a_failed_own_creation_gives_the_quota_back(test_host: Host, image: CloudImage) -> None:
    client = _quota_user(test_host, image)
    client.post(OWN_URL, good(image))
    [job] = run_jobs()  # the test driver refuses the seed's upload
    assert job.state == JobState.FAILED and not OwnedVM.objects.exists()


def test_a_user_cannot_use_what_the_quota_does_not_open(test_host: Host, image: CloudImage,
                                                        outsider_client: Client) -> None:
    other = CloudImage.objects.create(host=test_host, pool="images", volume="other.qcow2", name="other",
                                      min_disk_bytes=GIB, format="qcow2", virtual_bytes=GIB)
    client = _quota_user(test_host, image)
    # A pool of the host, opened to users, that her quota does not list.
    scratch = "<pool type='dir'><name>scratch</name><target><path>/scratch</path></target></pool>"
    services.call(test_host, lambda conn: conn.storagePoolCreateXML(scratch, 0).name())
    SharedResource.objects.create(host=test_host, kind=SharedKind.POOL, name="scratch")
    before = world(test_host)
    for changes, field in (({"image": str(other.pk)}, "image"), ({"network": "network:none"}, "network"),
                           ({"disk_pool": "scratch"}, "disk_pool")):
        response = client.post(OWN_URL, good(image, **changes))
        assert field in response.context["form"].errors, changes
    assert not Job.objects.exists() and not OwnedVM.objects.exists() and world(test_host) == before
    # Without a quota: the page says so, and a post makes nothing.
    assert "You have no quota" in outsider_client.get(OWN_URL).content.decode()
    outsider_client.post(OWN_URL, good(image))
    assert not Job.objects.exists() and quotas.limits_for(None) is None


def test_a_quota_of_flavors_only_offers_no_sizes_of_ones_own(test_host: Host, image: CloudImage,
                                                              fake_upload: list[bytes]) -> None:
    """custom_sizes off: the page offers the quota's flavors only, a posted size of one's own (page or API) is a
    field error and makes nothing; a flavor is made."""
    client = _quota_user(test_host, image, max_vms=2, custom_sizes=False)
    tiny = Flavor.objects.create(name="quota-tiny", vcpus=1, memory_mib=512, disk_gib=1)
    Quota.objects.get().flavors.add(tiny)
    page = client.get(OWN_URL)
    assert [value for value, _ in page.context["form"].fields["size"].choices] == [f"flavor:{tiny.pk}"]
    html = page.content.decode()
    assert 'value="custom"' not in html and 'name="vcpus"' not in html and 'name="memory"' not in html
    before = world(test_host)
    refused = client.post(OWN_URL, good(image, vcpus="2", memory="1G"))  # size: custom
    assert refused.context["form"].errors["size"] == ["Your quota allows its flavors only: choose one of them."]
    api = TokenClient(ApiToken.make(Quota.objects.get().user, "t")[1])
    for body in ({**good(image), "host": "testhost"}, {"name": "app-01", "image": str(image.pk), "ssh_keys": KEY,
                                                        "vcpus": 2, "memory": "1G"}):
        answer = api.post("/api/v1/self-service/vms/", body)
        assert answer.status_code == 400 and "size" in answer.json()["fields"], answer.content
    assert not Job.objects.exists() and not OwnedVM.objects.exists() and world(test_host) == before
    # The flavor it lists is made, with the flavor's sizes (the posted vCPUs and memory are no fields here).
    assert client.post(OWN_URL, good(image, size=f"flavor:{tiny.pk}", vcpus="2")).status_code == 302
    owned = OwnedVM.objects.get()
    assert (owned.vcpus, owned.memory_mib) == (1, 512)
    # A quota that allows sizes of one's own offers them again.
    Quota.objects.update(custom_sizes=True)
    assert "custom" in [value for value, _ in client.get(OWN_URL).context["form"].fields["size"].choices]


# --- UEFI images -------------------------------------------------------------------------------------------

def test_a_uefi_image_makes_a_uefi_vm(admin_client: Client, test_host: Host, image: CloudImage,
                                      fake_upload: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """An image with firmware efi: the defined domain asks libvirt for UEFI firmware (the test driver has no
    domain capabilities, so its offer is BIOS only: the host is said to offer UEFI here)."""
    image.firmware = UEFI
    image.save()
    real = create_image.offer_of
    monkeypatch.setattr(create_image, "offer_of", lambda host: dataclasses.replace(real(host),
                                                                                   firmwares=(BIOS, UEFI)))
    assert admin_client.post(URL, good(image)).status_code == 302
    [job] = run_jobs()
    assert job.state == JobState.DONE, job.result
    xml = services.call(test_host, lambda conn: conn.lookupByUUIDString(job.params["uuid"]).XMLDesc(0))
    assert Domain.from_xml(xml).os.firmware == UEFI


def test_a_host_without_uefi_refuses_a_uefi_image(admin_client: Client, test_host: Host, image: CloudImage) -> None:
    image.firmware = UEFI
    image.save()
    assert UEFI not in create_image.offer_of(test_host).firmwares  # the test driver: BIOS only
    before = world(test_host)
    response = admin_client.post(URL, good(image))
    assert response.status_code == 200
    assert response.context["form"].errors["image"] == [
        "debian-12 boots with EFI, which this host does not offer."]
    assert not Job.objects.exists() and world(test_host) == before
