"""Pytest fixtures for what lab tests make on the lab's main daemon: a connection, the panel's host for it,
a dir pool, isolated networks and a list of VMs to remove. Everything is named test-* (so that `labctl down`
removes leftovers too) and removed by the fixture, also when a test fails.

The integration conftest imports them; a browser test imports the ones it needs.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from hosts import services
from hosts.models import Host
from tests.lab import remove_domain
from virt.xml import Network, StoragePool

IMAGES = Path("/var/lib/libvirt/images")  # qemu runs as libvirt-qemu: pytest's tmp dirs are 0700


def local_or_ssh(transport: str, lab: dict[str, Any]) -> Host:
    """The lab's main daemon added to the panel as a local host, or over qemu+ssh to the lab's sshd
    (the panel's key must be authorised: the panel_key_authorized fixture)."""
    if transport == "local":
        return Host.objects.create(name="lab-local", transport="local", path="system")
    host = Host.objects.create(name="lab-ssh", transport="ssh", hostname="127.0.0.1", port=2222, username="root",
                               ssh_host_keys="\n".join(lab["ssh"]["host_keys"]))
    services.sync_known_hosts()
    return host


def _quiet(*_: object) -> None:
    """libvirt prints every error to stderr by default; the exceptions are enough."""


@pytest.fixture
def lab_conn(lab: dict[str, Any]) -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(_quiet, None)
    conn = libvirt.open(lab["unix_uri"])
    yield conn
    conn.close()


@pytest.fixture
def lab_host(db: None, lab: dict[str, Any]) -> Host:
    """The lab's main daemon as an admin adds it to the panel: the local socket."""
    assert lab["unix_uri"] == "qemu:///system"
    return Host.objects.create(name="labhost", transport="local", path="system")


@pytest.fixture
def test_pool(lab_conn: libvirt.virConnect) -> Iterator[libvirt.virStoragePool]:
    """A dir pool of our own under a temporary directory, removed with whatever is left in it."""
    name = f"test-pool-{uuid.uuid4().hex[:8]}"
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=IMAGES))
    path.chmod(0o755)
    pool = lab_conn.storagePoolDefineXML(StoragePool.new(type="dir", name=name, target_path=str(path)).to_xml(), 0)
    pool.create(0)
    yield pool
    remove_pool(pool)
    shutil.rmtree(path, ignore_errors=True)


def remove_pool(pool: libvirt.virStoragePool) -> None:
    """The pool and every volume in it, whatever state each is in."""
    with contextlib.suppress(libvirt.libvirtError):
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
    with contextlib.suppress(libvirt.libvirtError):
        pool.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        pool.undefine()


@pytest.fixture
def isolated_net(lab_conn: libvirt.virConnect) -> Iterator[Callable[[], str]]:
    """Factory: ``name = isolated_net()`` starts a network without forward or addresses (a bridge only our
    VMs are on)."""
    made: list[libvirt.virNetwork] = []

    def make() -> str:
        net = lab_conn.networkDefineXML(Network.new(name=f"test-net-{uuid.uuid4().hex[:8]}").to_xml())
        made.append(net)
        net.create()
        return str(net.name())

    yield make
    for net in made:
        with contextlib.suppress(libvirt.libvirtError):
            net.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            net.undefine()


@pytest.fixture
def test_net(isolated_net: Callable[[], str]) -> str:
    """The name of one isolated network."""
    return isolated_net()


@pytest.fixture
def made_vms(lab_conn: libvirt.virConnect) -> Iterator[list[str]]:
    """Names of the VMs a test made (or the panel made for it); removed afterwards even when the test fails."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(libvirt.libvirtError):
            remove_domain(lab_conn.lookupByName(name))
