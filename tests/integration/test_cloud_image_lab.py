"""The tests' Debian 12 cloud image (tests/cloud_image.py) really boots on the lab's libvirtd under full
emulation (domain type `qemu`), takes its host name, user, ssh key and a static network-config v2 from a
NoCloud seed (virt.cloudinit.build_seed) on a read-only CD-ROM, grows its root partition and filesystem to
the VM's 3 GiB disk, and answers ssh on a NAT network this test makes (and removes).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from lxml import etree
from lxml.builder import E

from tests.cloud_image import cloud_image  # noqa: F401  (fixture)
from tests.integration.test_networks_lab import free_subnet
from virt import networks
from virt.cloudinit import SeedSpec, StaticNetwork, build_seed
from virt.networks import Addressing, NetworkSpec
from virt.xml import StoragePool

pytestmark = [pytest.mark.lab]
DISK_BYTES = 3 * 2**30
SSH_DEADLINE = 300  # seconds from start to login: measured 61 s at a load of 2-3.5 on 2 cores, 90 s at 6
MAC = "52:54:00:c1:0d:17"


@pytest.fixture
def nat_net(lab_conn: libvirt.virConnect) -> Iterator[tuple[str, int]]:
    """A NAT network 10.213.x.0/24 (the host is .1, no DHCP range): its name and x."""
    name, x = f"test-{uuid.uuid4().hex[:8]}", free_subnet(lab_conn)
    try:
        networks.create_network(lab_conn, NetworkSpec(name, "nat", ipv4=Addressing(f"10.213.{x}.1/24")), start=True)
        yield name, x
    finally:
        with contextlib.suppress(Exception):
            networks.stop(lab_conn, name)
        with contextlib.suppress(Exception):
            networks.delete(lab_conn, name)


def domain_xml(name: str, disk: Path, seed: Path, network: str) -> str:
    dom = E.domain(
        E.name(name),
        E.memory("1024", unit="MiB"),
        E.vcpu("2"),
        E.os(E.type("hvm", arch="x86_64", machine="pc"), E.boot(dev="hd")),
        E.features(E.acpi(), E.apic()),  # as the panel's VMs have (virt/create.py)
        E.on_poweroff("destroy"), E.on_reboot("restart"), E.on_crash("destroy"),
        E.devices(
            E.disk(E.driver(name="qemu", type="qcow2"), E.source(file=str(disk)), E.target(dev="vda", bus="virtio"),
                   type="file", device="disk"),
            E.disk(E.driver(name="qemu", type="raw"), E.source(file=str(seed)), E.target(dev="hdc", bus="ide"),
                   E.readonly(), type="file", device="cdrom"),
            E.interface(E.source(network=network), E.mac(address=MAC), E.model(type="virtio"), type="network"),
            E.graphics(type="vnc", autoport="yes", listen="127.0.0.1"),
            E.serial(E.target(port="0"), type="pty"),
            E.console(E.target(type="serial", port="0"), type="pty"),
            E.memballoon(model="none"),
        ),
        type="qemu",  # full emulation: the lab's KVM hangs in real-mode boot loaders
    )
    return etree.tostring(dom, encoding="unicode")


def answers_ssh(address: str) -> bool:
    """sshd's banner on port 22 (the guest starts sshd once cloud-init made the user and host keys)."""
    try:
        with socket.create_connection((address, 22), timeout=1) as sock:
            sock.settimeout(2)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ssh(key: Path, address: str, command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"tester@{address}", command],
                          capture_output=True, text=True, timeout=timeout)


def test_the_image_boots_takes_its_seed_and_grows(cloud_image: Path, lab_conn: libvirt.virConnect,  # noqa: F811
                                                  test_pool: libvirt.virStoragePool, nat_net: tuple[str, int],
                                                  made_vms: list[str], tmp_path: Path) -> None:
    network, x = nat_net
    name = f"test-{uuid.uuid4().hex[:8]}"
    made_vms.append(name)
    folder = Path(StoragePool.from_xml(test_pool.XMLDesc(0)).target_path or "")
    disk, seed = folder / f"{name}.qcow2", folder / f"{name}-seed.iso"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(cloud_image), str(disk)], check=True)
    subprocess.run(["qemu-img", "resize", "-q", str(disk), str(DISK_BYTES)], check=True)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    address = f"10.213.{x}.50"
    spec = SeedSpec(hostname="test-guest", user="tester", ssh_keys=(key.with_suffix(".pub").read_text().strip(),),
                    network=StaticNetwork(f"{address}/24", f"10.213.{x}.1", (f"10.213.{x}.1",)), mac=MAC)
    seed.write_bytes(build_seed(spec, str(uuid.uuid4())))
    test_pool.refresh(0)

    dom = lab_conn.defineXML(domain_xml(name, disk, seed, network))
    started = time.monotonic()
    dom.create()
    login, banner = None, 0.0
    while time.monotonic() - started < SSH_DEADLINE and dom.isActive():
        if not answers_ssh(address):
            time.sleep(0.5)
            continue
        banner = banner or time.monotonic() - started
        with contextlib.suppress(subprocess.TimeoutExpired):
            login = ssh(key, address, "hostname; cat /sys/class/block/vda1/size; df -B1 --output=size / | tail -1;"
                        " ip -4 -o addr show; ip -4 route show default; resolvectl dns")
            if login.returncode == 0:
                break
        time.sleep(1)
    took = time.monotonic() - started
    print(f"\nsshd answered {banner:.0f} s and the ssh login was done {took:.0f} s after the VM was started")
    assert login is not None and login.returncode == 0, (took, login and login.stderr, dom.isActive())

    lines = login.stdout.splitlines()
    assert lines[0] == "test-guest"
    # growpart: the partition (from 1 MiB) reaches the end of the disk, less the 33 sectors it always keeps
    # free for a GPT's backup header
    assert int(lines[1]) * 512 == DISK_BYTES - 2**20 - 33 * 512
    assert int(lines[2]) > DISK_BYTES * 0.9  # resize2fs: and so does the filesystem (2 GiB in the image)
    assert f"inet {address}/24" in login.stdout  # the static network-config v2, rendered for systemd-networkd
    assert f"default via 10.213.{x}.1" in login.stdout
    assert f"10.213.{x}.1" in lines[-1]  # and its DNS server, given to systemd-resolved
