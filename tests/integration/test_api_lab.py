"""Issue 16 on the lab: a VM's whole life through the API with an admin's token, and `virsh` as the witness
after each step: create it on lab host 1, start it, attach a disk, take a snapshot (and delete it: libvirt
does not move snapshots, the pre-flight says so), migrate it with its storage to lab host 2, delete it there.
Each job is followed through /api/v1/jobs/ID/; each step's audit record says it came through the API with
the token's name.

The VM is the lab's kind of small guest: no boot disk, no NIC, 64 MiB. Its disk lives in a pool that exists
at the same path on both hosts (tests/integration/test_migrate_lab.py's fixtures), so that the migration
copies it. Everything made here is named test-* and removed by the fixtures from both hosts.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from api.models import ApiToken
from tests.integration import test_migrate_lab
from tests.integration.test_migrate_lab import host2_path
from tests.unit.test_api_access import TokenClient
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]  # jobs run on their own threads

# Fixtures: both lab hosts as the panel's hosts lab1 and lab2, the names of VMs to remove from both, and a
# dir pool at the same path on either host.
conns, hosts, vms, pools = test_migrate_lab.conns, test_migrate_lab.hosts, test_migrate_lab.vms, test_migrate_lab.pools
TOKEN = "lab-token"
VIA = f"(through the API, token {TOKEN})"
API = "/api/v1"


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=30)


def state(uri: str, vm: str) -> str:
    """`virsh domstate`: running, shut off...; absent when the host has no such VM."""
    done = virsh(uri, "domstate", vm)
    return done.stdout.strip() if done.returncode == 0 else "absent"


def disk_sources(uri: str, vm: str) -> list[str]:
    """The files of the VM's disks, from `virsh domblklist`."""
    done = virsh(uri, "domblklist", vm)
    assert done.returncode == 0, done.stderr
    return [line.split(None, 1)[1].strip() for line in done.stdout.splitlines()[2:] if len(line.split(None, 1)) == 2]


def ok(response: Any, code: int = 200) -> dict[str, Any]:
    assert response.status_code == code, (response.status_code, response.content[:2000])
    body: dict[str, Any] = response.json()
    return body


def followed(client: TokenClient, response: Any, timeout: float = 40) -> dict[str, Any]:
    """The job a 202 names, followed through /api/v1/jobs/ID/ until it is no longer active: it must be done."""
    url = ok(response, 202)["url"].removeprefix("http://testserver")
    end = time.monotonic() + timeout
    while (job := ok(client.get(url)))["active"]:
        assert time.monotonic() < end, job
        time.sleep(0.2)
    assert job["state"] == "done", job
    return job


def test_a_vms_whole_life_through_the_api(lab: dict[str, Any], lab2: dict[str, Any], conns: Any, hosts: Any,
                                         vms: list[str], pools: Any) -> None:
    one, two = lab["unix_uri"], lab2["uri"]
    admin = get_user_model().objects.create_superuser("lab-admin", "", "x")
    client = TokenClient(ApiToken.make(admin, TOKEN)[1])
    name = f"test-api-{uuid.uuid4().hex[:8]}"
    vms.append(name)
    pool = pools(conns[0])
    pools(conns[1])  # the same path on host 2: where the migration copies the disk

    # Create: no boot disk, no NIC, not started (the page would start it: "start" is ticked there).
    created = client.post(f"{API}/vms/lab1/", {"name": name, "size": "custom", "vcpus": 1, "memory": "64M",
                                               "disk_source": "none", "nic1_source": "", "start": False})
    vm = ok(created, 201)["uuid"]
    assert state(one, vm) == "shut off"
    base = f"{API}/vms/lab1/{vm}/"

    assert ok(client.post(base + "actions/start/"))["state"] == "running"
    assert state(one, vm) == "running"

    ok(client.post(base + "disks/", {"pool": pool.name(), "volume_name": f"{name}-data.qcow2", "size": "16M",
                                     "format": "qcow2"}))
    disk = pools.path / f"{name}-data.qcow2"
    assert disk_sources(one, vm) == [str(disk)] and disk.is_file()

    followed(client, client.post(base + "snapshots/", {"name": "before-move"}))  # a running VM's: a job
    assert virsh(one, "snapshot-list", vm, "--name").stdout.split() == ["before-move"]
    ok(client.call("DELETE", base + "snapshots/before-move/"))
    assert virsh(one, "snapshot-list", vm, "--name").stdout.split() == []

    moved = followed(client, client.post(base + "migrate/", {"target": "lab2", "copy_storage": True}))
    assert moved["kind"] == "vm.migrate" and f"{name} now runs on lab2" in moved["result"]
    assert (state(one, vm), state(two, vm)) == ("absent", "running")
    assert disk_sources(two, vm) == [str(disk)] and host2_path(lab2, disk).is_file()

    there = f"{API}/vms/lab2/{vm}/"
    plan = ok(client.get(there + "delete-plan/"))
    keys = [v["key"] for v in plan["volumes"] if v["deletable"]]
    assert len(keys) == 1
    deleted = ok(client.call("DELETE", there + f"?force_off=1&volume={keys[0]}"))
    assert deleted["forced_off"] is True and deleted["deleted"] == [f"{pool.name()}/{name}-data.qcow2"]
    assert state(two, vm) == "absent" and not host2_path(lab2, disk).exists()

    records = list(AuditEvent.objects.filter(action__startswith="vm.").order_by("id")
                   .values_list("action", "result", "username", "detail"))
    assert [(action, result, who) for action, result, who, _ in records] == [
        (action, "ok", "lab-admin") for action in ("vm.create", "vm.start", "vm.disk.attach", "vm.snapshot.create",
                                                   "vm.snapshot.delete", "vm.migrate", "vm.delete")]
    assert all(detail.endswith(VIA) for *_, detail in records), records
