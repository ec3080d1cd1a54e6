"""Issue 17 over a host added by qemu+ssh (the lab's sshd in front of its libvirtd): the admin's pages mark a
library and import the Debian 12 cloud image (tests/cloud_image.py) through the ssh transport, the create job
builds the seed in the panel and streams it to the host; libvirt (virsh, over the local socket) has the seed
volume, whose cidata content read back over ssh is the panel's; the guest boots under full emulation on a NAT
network of the test's own with a static address from the seed, a login with the key reads the host name, the
grown disk and the address, and the VM page shows `ssh USER@ADDRESS` learnt from the QEMU guest agent (no DHCP
lease); the page's delete takes the seed. (The browser's run of the same on the local transport, with DHCP, is
tests/browser/test_cloud_image_e2e.py.)
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from django.test import Client
from django.urls import reverse

from jobs import runner
from jobs.models import Job, JobState
from storage.models import CloudImage
from tests.cloud_image import cloud_image  # noqa: F401  (fixture)
from tests.conftest import need
from tests.integration.test_networks_lab import free_subnet
from tests.lab_resources import local_or_ssh
from virt import networks
from virt.cloudinit import read_seed
from virt.networks import Addressing, NetworkSpec
from virt.streams import Download
from virt.xml import Domain, StoragePool

pytestmark = [pytest.mark.lab, pytest.mark.django_db]
DISK_BYTES = 3 * 2**30
LOGIN_BOUND = 240  # seconds from the job's start to the ssh login under full emulation


@pytest.fixture
def nat_net(lab_conn: libvirt.virConnect) -> Iterator[tuple[str, int]]:
    """A NAT network with DHCP (10.213.x.100-200) of the test's own, removed afterwards: its name and x."""
    name, x = f"test-net-{uuid.uuid4().hex[:8]}", free_subnet(lab_conn)
    try:
        networks.create_network(lab_conn, NetworkSpec(name, "nat", ipv4=Addressing(
            f"10.213.{x}.1/24", f"10.213.{x}.100", f"10.213.{x}.200")), start=True)
        yield name, x
    finally:
        with contextlib.suppress(Exception):
            networks.stop(lab_conn, name)
        with contextlib.suppress(Exception):
            networks.delete(lab_conn, name)


def ssh_login(key: Path, target: str, command: str, deadline: float) -> subprocess.CompletedProcess[str] | None:
    """`ssh -i KEY target command`, retried until the guest's sshd takes the key or the deadline passes."""
    login = None
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            login = subprocess.run(["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                    "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", target, command],
                                   capture_output=True, text=True, timeout=30)
            if login.returncode == 0:
                return login
        time.sleep(2)
    return login


def test_create_from_image_on_a_qemu_ssh_host(lab: dict[str, Any], panel_key_authorized: None,
                                              lab_conn: libvirt.virConnect, test_pool: libvirt.virStoragePool,
                                              nat_net: tuple[str, int], made_vms: list[str],
                                              cloud_image: Path,  # noqa: F811
                                              admin_client: Client, tmp_path: Path) -> None:
    need(shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None, "openssh-client is missing")
    host = local_or_ssh("ssh", lab)
    pool = str(test_pool.name())
    folder = Path(StoragePool.from_xml(test_pool.XMLDesc(0)).target_path or "")
    shutil.copyfile(cloud_image, folder / "debian-12.qcow2")
    (folder / "debian-12.qcow2").chmod(0o644)
    test_pool.refresh(0)

    # The admin's pages, each reading the host over ssh: a library with linked clones, the image imported.
    answer = admin_client.post(reverse("storage:image_library", args=[host.name, pool]),
                               {"library": "on", "linked_clones": "on"})
    assert answer.status_code == 302, answer.content[-2000:]
    answer = admin_client.post(reverse("storage:image_import", args=[host.name, pool]), {
        "volume": "debian-12.qcow2", "name": "debian-12", "os_family": "debian", "os_version": "12",
        "default_user": "debian", "firmware": "bios"})
    assert answer.status_code == 302, answer.context and answer.context["form"].errors
    image = CloudImage.objects.get(host=host)
    assert (image.format, image.virtual_bytes) == ("qcow2", 2 * 2**30)

    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    name = f"test-{uuid.uuid4().hex[:8]}"
    made_vms.append(name)
    net, x = nat_net
    address = f"10.213.{x}.50"
    answer = admin_client.post(reverse("instances:create_image", args=[host.name]), {
        "name": name, "image": str(image.pk), "size": "custom", "vcpus": "2", "memory": "1G", "disk_size": "3G",
        "disk_pool": pool, "disk_kind": "linked", "network": f"network:{net}", "virt_type": "qemu",
        "hostname": "remote-guest", "user": "tester", "ssh_keys": key.with_suffix(".pub").read_text(),
        # A static address (outside the DHCP range): no lease, so the page learns it from the guest agent.
        "network_mode": "static", "address": f"{address}/24", "gateway": f"10.213.{x}.1", "dns": f"10.213.{x}.1"})
    assert answer.status_code == 302, answer.context and answer.context["form"].errors
    job = Job.objects.get(kind__contains="image")
    started = time.monotonic()
    runner.execute(job.pk)  # here, not in a thread: the libvirt calls go through the ssh transport
    job.refresh_from_db()
    assert job.state == JobState.DONE, job.result
    print(f"\nqemu+ssh: job done in {time.monotonic() - started:.1f} s")

    # libvirt's own view (virsh over the local socket): the overlay and the seed in the pool, the seed a
    # read-only CD-ROM of a TCG domain.
    listed = subprocess.run(["virsh", "-c", "qemu:///system", "vol-list", pool], capture_output=True, text=True,
                            check=True).stdout
    assert f"{name}-seed.iso" in listed and "debian-12.qcow2" in listed
    dom = lab_conn.lookupByUUIDString(job.params["uuid"])
    doc = Domain.from_xml(dom.XMLDesc(0))
    assert doc.type == "qemu" and dom.isActive()
    cdrom = next(d for d in doc.disks if d.device == "cdrom")
    assert cdrom.readonly and cdrom.source_file == str(folder / f"{name}-seed.iso")
    # The seed, read back through the ssh transport, is what the panel built for this VM.

    def download(conn: libvirt.virConnect) -> bytes:
        stream, data = Download.begin(conn, pool, f"{name}-seed.iso"), b""
        while chunk := stream.read(1 << 20):
            data += chunk
        return data

    from hosts import services

    files = read_seed(services.call(host, download, 60))
    assert f"instance-id: {dom.UUIDString()}" in files["meta-data"]
    user_data = yaml.safe_load(files["user-data"])
    assert user_data["hostname"] == "remote-guest"
    assert key.with_suffix(".pub").read_text().strip() in files["user-data"]

    # The guest boots with it, takes the key and the static network-config (rendered for systemd-networkd).
    deadline = started + LOGIN_BOUND
    login = ssh_login(key, f"tester@{address}", "hostname; df -B1 --output=size / | tail -1; ip -4 -o addr",
                      deadline)
    print(f"qemu+ssh: ssh login {time.monotonic() - started:.1f} s after the job started")
    assert login is not None and login.returncode == 0, login and login.stderr
    got_hostname, size, *addresses = login.stdout.split("\n")
    assert got_hostname == "remote-guest" and DISK_BYTES * 0.9 < int(size) <= DISK_BYTES
    assert f"inet {address}/24" in "\n".join(addresses)
    # The VM page (over ssh) shows the address from the QEMU guest agent and the ssh command.
    page_deadline = time.monotonic() + 30
    detail = reverse("instances:detail", args=[host.name, dom.UUIDString()])
    while f"ssh tester@{address}" not in admin_client.get(detail).content.decode():
        assert time.monotonic() < page_deadline, "the VM page never showed the agent's address"
        time.sleep(1)

    # The page's delete (over ssh) takes the seed with the VM.
    answer = admin_client.post(reverse("instances:delete", args=[host.name, dom.UUIDString()]), {"force_off": "1"})
    assert answer.status_code == 302
    test_pool.refresh(0)
    assert f"{name}-seed.iso" not in test_pool.listVolumes()
    with pytest.raises(libvirt.libvirtError):
        lab_conn.lookupByName(name)
