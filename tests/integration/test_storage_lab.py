"""Pools and volumes through the panel on the lab's real libvirtd, over the unix socket and over qemu+ssh.

A dir pool in a temporary folder is created, filled, cloned, grown, uploaded into (through the ASGI
application the panel serves, which streams the body into libvirt), downloaded again with the same
checksum, wiped and deleted; an interrupted upload leaves nothing behind. virsh is asked at each step.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import resolve, reverse

from api.models import ApiToken
from hosts import services
from hosts.models import Host
from storage.asgi import QUEUED_CHUNKS
from storage.transfers import CHUNK
from tests.conftest import need
from tests.unit.test_api_access import TokenClient
from tests.unit.test_body_limit import Counted
from tests.unit.test_storage_asgi import asgi, body_of, csrf_token, headers_for
from virt.streams import Download
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
MIB = 1 << 20


def _quiet(*_: object) -> None:
    """libvirt prints every error to stderr by default; the exceptions are enough."""


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def vol_names(pool: str) -> set[str]:
    return {line.split()[0] for line in virsh("vol-list", pool).splitlines()[2:] if line.strip()}


def vol_capacity(pool: str, vol: str) -> int:
    return int(virsh("vol-info", "--bytes", "--pool", pool, vol).split("Capacity:")[1].split()[0])


@pytest.fixture
def lab_conn(lab: dict[str, Any]) -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(_quiet, None)
    conn = libvirt.open(lab["unix_uri"])
    yield conn
    conn.close()


@pytest.fixture
def pool_dir(tmp_path: Path, settings: Any) -> Path:
    settings.WEBKVM_POOL_ROOTS = [str(tmp_path)]
    return tmp_path / "pool"


@pytest.fixture
def pool_name(lab_conn: libvirt.virConnect) -> Iterator[str]:
    """A name for the pool the test creates; whatever is left of it is removed afterwards."""
    name = f"test-pool-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(libvirt.libvirtError):
        pool = lab_conn.storagePoolLookupByName(name)
        with contextlib.suppress(libvirt.libvirtError):
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
        with contextlib.suppress(libvirt.libvirtError):
            pool.destroy()
        pool.undefine()


@pytest.fixture
def made_vms(lab_conn: libvirt.virConnect) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(libvirt.libvirtError):
            lab_conn.lookupByName(name).undefine()


@pytest.fixture(params=["local", "ssh"])
def lab_host(request: pytest.FixtureRequest, lab: dict[str, Any]) -> Host:
    if request.param == "local":
        return Host.objects.create(name="lab-local", transport="local", path="system")
    request.getfixturevalue("panel_key_authorized")
    host = Host.objects.create(name="lab-ssh", transport="ssh", hostname="127.0.0.1", port=2222, username="root",
                               ssh_host_keys="\n".join(lab["ssh"]["host_keys"]))
    services.sync_known_hosts()
    return host


# --- the panel's ASGI application, driven directly ----------------------------------------------


async def generated_body(size: int, piece: int = 64 << 10) -> AsyncIterator[dict[str, Any]]:
    block = os.urandom(piece)
    for start in range(0, size, piece):
        yield {"type": "http.request", "body": block, "more_body": start + piece < size}


def upload(client: Client, host: Host, pool: str, name: str, data: bytes, **body: Any) -> tuple[int, bytes]:
    url = reverse("storage:volume_upload", args=[host.name, pool]) + f"?name={name}"
    headers = [*headers_for(client, csrf_token(client, host, pool)), (b"content-length", str(len(data)).encode())]
    status, _headers_back, content = asgi("PUT", url, headers, body_of(data, **body))
    return status, content


def download_asgi(client: Client, host: Host, pool: str, name: str) -> tuple[int, dict[bytes, bytes], bytes]:
    url = reverse("storage:volume_download", args=[host.name, pool, name])
    return asgi("GET", url, headers_for(client, csrf_token(client, host, pool)))


def wait_for_job(client: Client, location: str) -> dict[str, Any]:
    """A clone or wipe answers with its job page; its JSON says when it has ended."""
    status = reverse("jobs:status", kwargs=resolve(location).kwargs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = client.get(status).json()
        if not state["active"]:
            return state
        time.sleep(0.2)
    raise AssertionError("job did not end")


# --- the tests -------------------------------------------------------------------------------------


def test_pool_and_volumes_end_to_end(admin_client: Client, lab_host: Host, pool_dir: Path, pool_name: str,
                                     lab_conn: libvirt.virConnect, made_vms: list[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    host, pool = lab_host, pool_name
    monkeypatch.setattr(Download, "SEGMENT_BYTES", MIB + 4321)  # a download of several segments
    # A dir pool in a temporary folder, through the form (built = the directory made by libvirt).
    response = admin_client.post(reverse("storage:pool_new", args=[host.name, "dir"]), {
        "name": pool, "target_path": str(pool_dir), "build": "on", "start": "on"})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert pool_dir.is_dir()
    listed = virsh("pool-list", "--all")
    assert any(line.split()[:2] == [pool, "active"] for line in listed.splitlines())
    page = admin_client.get(reverse("storage:pools", args=[host.name])).content.decode()
    assert f'data-pool="{pool}"' in page

    # Create, clone, grow.
    new = reverse("storage:volume_new", args=[host.name, pool])
    assert admin_client.post(new, {"name": "disk.qcow2", "size": "64M", "format": "qcow2"}).status_code == 302
    assert vol_capacity(pool, "disk.qcow2") == 64 * MIB
    assert "qcow2" in virsh("vol-dumpxml", "--pool", pool, "disk.qcow2")
    clone = admin_client.post(reverse("storage:volume_clone", args=[host.name, pool, "disk.qcow2"]),
                              {"name": "copy.qcow2", "format": "qcow2"})
    assert wait_for_job(admin_client, clone["Location"])["state"] == "done"
    assert vol_names(pool) == {"disk.qcow2", "copy.qcow2"}
    # A raw volume with all its space allocated now: a job; the file holds every byte afterwards.
    fat = admin_client.post(new, {"name": "fat.img", "size": "32M", "format": "raw", "preallocate": "on"})
    assert fat["Location"].startswith("/jobs/"), fat.content.decode()[:2000]
    made = wait_for_job(admin_client, fat["Location"])
    assert (made["state"], made["kind"]) == ("done", "volume.create"), made
    assert vol_capacity(pool, "fat.img") == 32 * MIB and (pool_dir / "fat.img").stat().st_blocks * 512 >= 32 * MIB
    grow = admin_client.post(reverse("storage:volume_resize", args=[host.name, pool, "copy.qcow2"]), {"size": "128M"})
    assert grow.status_code == 302, grow.content.decode()[:2000]
    assert vol_capacity(pool, "copy.qcow2") == 128 * MIB
    shrink = admin_client.post(reverse("storage:volume_resize", args=[host.name, pool, "copy.qcow2"]), {"size": "64M"})
    assert shrink.status_code == 200 and vol_capacity(pool, "copy.qcow2") == 128 * MIB

    # Upload a few MB through the streaming ASGI path; download through the panel: same bytes.
    data = os.urandom(5 * MIB + 12345)
    status, content = upload(admin_client, host, pool, "blob.iso", data)
    assert status == 201, content
    assert vol_capacity(pool, "blob.iso") == len(data)
    assert hashlib.sha256((pool_dir / "blob.iso").read_bytes()).digest() == hashlib.sha256(data).digest()
    status, headers, body = download_asgi(admin_client, host, pool, "blob.iso")
    assert status == 200 and headers[b"content-length"] == str(len(data)).encode()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    wsgi = admin_client.get(reverse("storage:volume_download", args=[host.name, pool, "blob.iso"]))
    assert hashlib.sha256(b"".join(wsgi.streaming_content)).digest() == hashlib.sha256(data).digest()
    assert int(wsgi["Content-Length"]) == len(data)

    # A VM uses the ISO: deleting it is refused, naming the VM.
    vm = f"test-{uuid.uuid4().hex[:8]}"
    made_vms.append(vm)
    lab_conn.defineXML(
        f"<domain type='qemu'><name>{vm}</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>"
        f"<devices><disk type='file' device='cdrom'><source file='{pool_dir / 'blob.iso'}'/>"
        f"<target dev='hdc' bus='ide'/><readonly/></disk></devices></domain>")
    page = admin_client.get(reverse("storage:pool", args=[host.name, pool])).content.decode()
    assert f"VM {vm}" in page.split('data-volume="blob.iso"')[1].split("</tr>")[0]
    refused = admin_client.post(reverse("storage:volume_delete", args=[host.name, pool, "blob.iso"]), follow=True)
    assert f"used by VM {vm}: it was not deleted" in refused.content.decode()
    assert "blob.iso" in vol_names(pool)
    lab_conn.lookupByName(vm).undefine()

    # Wipe (real storage supports it): the bytes are zeros afterwards.
    wipe = admin_client.post(reverse("storage:volume_wipe", args=[host.name, pool, "blob.iso"]))
    assert wait_for_job(admin_client, wipe["Location"])["state"] == "done"
    wiped = (pool_dir / "blob.iso").read_bytes()
    assert len(wiped) >= len(data) and wiped.count(0) == len(wiped), (len(wiped), len(data))

    # Delete the volumes, then the pool with its storage.
    for name in ("blob.iso", "copy.qcow2", "disk.qcow2", "fat.img"):
        assert admin_client.post(reverse("storage:volume_delete", args=[host.name, pool, name])).status_code == 302
    assert vol_names(pool) == set()
    gone = admin_client.post(reverse("storage:pool_delete", args=[host.name, pool]), {"delete_storage": "on"})
    assert gone.status_code == 302
    assert pool not in virsh("pool-list", "--all") and not pool_dir.exists()
    actions = [e.action for e in AuditEvent.objects.filter(host_name=host.name, result="ok").order_by("id")]
    assert actions == ["pool.create", "volume.create", "volume.clone", "volume.create", "volume.resize",
                       "volume.upload", "volume.download", "volume.download", "volume.wipe", "volume.delete",
                       "volume.delete", "volume.delete", "volume.delete", "pool.delete"]


def test_interrupted_upload_leaves_no_volume(admin_client: Client, lab: dict[str, Any], pool_dir: Path,
                                             pool_name: str, settings: Any) -> None:
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    assert admin_client.post(reverse("storage:pool_new", args=[host.name, "dir"]), {
        "name": pool_name, "target_path": str(pool_dir), "build": "on", "start": "on"}).status_code == 302
    data = os.urandom(4 * MIB)
    status, _ = upload(admin_client, host, pool_name, "half.iso", data, stop_after=2 * MIB)
    assert vol_names(pool_name) == set() and list(pool_dir.iterdir()) == []
    event = AuditEvent.objects.get(action="volume.upload")
    assert event.result == "failed" and "went away after" in event.detail
    # More bytes than announced is refused as well, and leaves nothing.
    url = reverse("storage:volume_upload", args=[host.name, pool_name]) + "?name=long.iso"
    headers = [*headers_for(admin_client, csrf_token(admin_client, host, pool_name)), (b"content-length", b"1000")]
    status, _h, content = asgi("PUT", url, headers, body_of(os.urandom(3000), piece=1000))
    assert status == 400 and b"Nothing was kept" in content
    assert vol_names(pool_name) == set()
    # A client that stays connected and sends nothing more is cut off after the stall deadline.
    settings.WEBKVM_UPLOAD_STALL_SECONDS = 0.5
    started = time.monotonic()
    status, content = upload(admin_client, host, pool_name, "stalled.iso", data, stall_after=2 * MIB)
    assert status == 400 and b"Nothing was kept" in content and time.monotonic() - started < 10
    assert vol_names(pool_name) == set() and list(pool_dir.iterdir()) == []
    event = AuditEvent.objects.filter(action="volume.upload", object_name__endswith="stalled.iso").get()
    assert event.result == "failed" and "nothing arrived for 0.5 s" in event.detail


async def request_then_gone() -> AsyncIterator[dict[str, Any]]:
    yield {"type": "http.request", "body": b"", "more_body": False}
    yield {"type": "http.disconnect"}  # at once: long before 64 MiB can have gone out


def test_download_stopped_by_the_browser(admin_client: Client, lab: dict[str, Any], pool_dir: Path,
                                         pool_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Download, "SEGMENT_BYTES", MIB)
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    assert admin_client.post(reverse("storage:pool_new", args=[host.name, "dir"]), {
        "name": pool_name, "target_path": str(pool_dir), "build": "on", "start": "on"}).status_code == 302
    data = os.urandom(64 * MIB)
    assert upload(admin_client, host, pool_name, "big.img", data)[0] == 201
    url = reverse("storage:volume_download", args=[host.name, pool_name, "big.img"])
    headers = headers_for(admin_client, csrf_token(admin_client, host, pool_name))
    status, _h, body = asgi("GET", url, headers, request_then_gone())
    assert status == 200 and len(body) < len(data)  # it stopped when the browser went away
    status, _h, body = download_asgi(admin_client, host, pool_name, "big.img")  # nothing was left stuck
    assert status == 200 and body == data


def test_upload_memory_stays_flat(admin_client: Client, lab: dict[str, Any], pool_dir: Path, pool_name: str) -> None:
    """256 MiB through the ASGI path: Python's own allocations stay at a few chunks (the body is never held)."""
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    assert admin_client.post(reverse("storage:pool_new", args=[host.name, "dir"]), {
        "name": pool_name, "target_path": str(pool_dir), "build": "on", "start": "on"}).status_code == 302
    size = 256 * MIB
    url = reverse("storage:volume_upload", args=[host.name, pool_name]) + "?name=big.img"
    headers = [*headers_for(admin_client, csrf_token(admin_client, host, pool_name)),
               (b"content-length", str(size).encode())]
    tracemalloc.start()
    try:
        status, _h, content = asgi("PUT", url, headers, generated_body(size))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 201, content
    assert vol_capacity(pool_name, "big.img") == size
    assert peak < (QUEUED_CHUNKS + 4) * CHUNK < size // 8, peak  # queued + being sent + being gathered


def test_types_the_host_lacks_are_not_offered_and_a_failed_rbd_leaves_no_secret(
        admin_client: Client, lab: dict[str, Any], pool_name: str) -> None:
    """The lab's libvirt has no RBD backend: the chooser leaves RBD out; forced anyway, the Ceph key's
    secret (made first, on the real secret driver) is removed again with the failed pool."""
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    supported = {line.split("'")[1] for line in virsh("pool-capabilities").splitlines()
                 if "<pool type=" in line and "supported='yes'" in line}
    page = admin_client.get(reverse("storage:pool_types", args=[host.name])).content.decode()
    assert ("/new/rbd/" in page) == ("rbd" in supported) and "/new/dir/" in page
    need("rbd" not in supported, "this test needs a libvirt without the RBD backend, as the lab installs it")
    secrets_before = virsh("secret-list")
    response = admin_client.post(reverse("storage:pool_new", args=[host.name, "rbd"]), {
        "name": pool_name, "source_name": "rbdpool", "hosts": "127.0.0.1:6789", "ceph_user": "libvirt",
        "ceph_key": "AQBvaBFZAAAAABAA9VHgwCgY1mcLzOQ8oE6vrg==", "start": "on"})
    assert response.status_code == 200
    assert "Could not define the pool" in response.content.decode()
    assert "Nothing was left behind" in response.content.decode()
    assert virsh("secret-list") == secrets_before
    assert pool_name not in virsh("pool-list", "--all")


def test_upload_and_download_through_the_api_with_a_token(admin_user: Any, lab: dict[str, Any], pool_dir: Path,
                                                          pool_name: str) -> None:
    """The API's content URL streams through the same ASGI path: an upload cut short leaves nothing and is
    resumed by sending it again from the first byte; the download gives the same bytes with Content-Length;
    a read-only token's upload is refused before a byte is read; each record names the token."""
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    text = ApiToken.make(admin_user, "lab-token")[1]
    api = TokenClient(text)
    made = api.post(f"/api/v1/pools/{host.name}/", {"kind": "dir", "name": pool_name, "target_path": str(pool_dir)})
    assert made.status_code == 201, made.content
    auth = [(b"host", b"testserver"), (b"authorization", f"Bearer {text}".encode())]
    url = f"/api/v1/pools/{host.name}/{pool_name}/volumes/blob.iso/content"
    data = os.urandom(3 * MIB + 12345)
    length = [(b"content-length", str(len(data)).encode())]
    asgi("PUT", url, [*auth, *length], body_of(data, stop_after=MIB))
    assert vol_names(pool_name) == set() and list(pool_dir.iterdir()) == []
    status, headers, content = asgi("PUT", url, [*auth, *length], body_of(data))
    assert status == 201, content
    assert headers[b"location"].endswith(f"/api/v1/pools/{host.name}/{pool_name}/volumes/blob.iso/".encode())
    assert hashlib.sha256((pool_dir / "blob.iso").read_bytes()).digest() == hashlib.sha256(data).digest()
    status, headers, body = asgi("GET", url, auth)
    assert status == 200 and headers[b"content-length"] == str(len(data)).encode() and body == data
    reader = ApiToken.make(admin_user, "lab-reader", read_only=True)[1]
    counted = Counted(data)
    other = url.replace("blob.iso", "other.iso")
    status, _h, content = asgi("PUT", other, [(b"host", b"testserver"), (b"authorization", f"Bearer {reader}".encode()),
                                              *length], counted.messages())
    assert status == 403 and b"read_only_token" in content and counted.read == 0
    assert vol_names(pool_name) == {"blob.iso"}
    records = AuditEvent.objects.filter(action__in=["volume.upload", "volume.download"]).order_by("id")
    assert [(e.action, e.result) for e in records] == [("volume.upload", "failed"), ("volume.upload", "ok"),
                                                       ("volume.download", "ok")]
    assert all(e.detail.endswith("(through the API, token lab-token)") for e in records)
    gone = api.call("DELETE", f"/api/v1/pools/{host.name}/{pool_name}/?delete_storage=true")
    assert gone.status_code == 200, gone.content
    assert pool_name not in virsh("pool-list", "--all") and not pool_dir.exists()
