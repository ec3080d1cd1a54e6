"""Cancel between steps for the jobs that are not migrations, on libvirt's test driver: a VM clone stops before
its next disk, a creation (allocated disk, or from an image) before its next phase. What they made is removed as
on a failure, the source VM's lock or the user's quota reservation is let go of, and the job ends "cancelled"
saying what was done and what was left. Each test holds a step on an Event until the cancel is asked (and, for the
creations whose steps run in the host's thread, seen by the job)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from instances.models import OwnedVM
from jobs import runner
from jobs.models import Job, JobState
from storage.models import CloudImage
from tests.unit.test_create_image import _quota_user, good, image  # noqa: F401 (fixture)
from tests.unit.test_create_image import world as image_world
from tests.unit.test_snapshot_create_jobs import (
    CREATE_URL,
    GOOD_FORM,
    domain_names,
    events,
    job_of,
    volume_info,
    wait_until,
)
from virt import clone, create, image_create
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)  # the jobs run in threads of the panel


def held_until(go: threading.Event, real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, waiting for `go` the first time it is called."""
    calls: list[int] = []

    def held(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            assert go.wait(30), "the test never let the step go on"
        return real(*args, **kwargs)

    return held


def cancel_when(client: Client, job: Job, phase: str) -> None:
    """Once the job runs `phase`, ask for its cancel as its page does."""
    wait_until(job, lambda j: j.state == JobState.RUNNING and j.phase == phase)
    assert client.get(reverse("jobs:status", args=[job.pk])).json()["can_cancel"] is True  # a cancellable kind
    page = client.post(reverse("jobs:cancel", args=[job.pk]), follow=True).content.decode()
    assert "Asked to stop; it stops at its next step." in page


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a job has seen the cancel request (its Handle.stopping is set by then)."""
    noticed = threading.Event()
    real = runner.Handle.cancel_requested

    def cancel_requested(self: runner.Handle) -> bool:
        asked = real(self)
        if asked:
            noticed.set()
        return asked

    monkeypatch.setattr(runner.Handle, "cancel_requested", cancel_requested)
    return noticed


def two_disk_vm(host: Host, name: str) -> str:
    def make(conn: libvirt.virConnect) -> str:
        pool = conn.storagePoolLookupByName("images")
        paths = [pool.createXML(f"<volume><name>{name}-{dev}.qcow2</name><capacity unit='MiB'>16</capacity>"
                                "<target><format type='qcow2'/></target></volume>", 0).path() for dev in ("a", "b")]
        disks = "".join(f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{path}'/>"
                        f"<target dev='vd{dev}' bus='virtio'/></disk>" for path, dev in zip(paths, "ab", strict=True))
        return str(conn.defineXML(f"""<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>
            <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>{disks}</devices></domain>""").UUIDString())

    return services.call(host, make)


def images(host: Host) -> list[str]:
    return sorted(services.call(host, lambda conn: conn.storagePoolLookupByName("images").listVolumes()))


def test_a_clone_cancelled_stops_before_its_next_disk(admin_client: Client, test_host: Host,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    vm = two_disk_vm(test_host, "twin")
    before = images(test_host)
    go = threading.Event()
    monkeypatch.setattr(clone, "_copy", held_until(go, clone._copy))
    job = job_of(admin_client.post(reverse("instances:clone", args=["testhost", vm]), {"name": "twin-2"}))
    cancel_when(admin_client, job, "copying disk vda")
    go.set()
    job = wait_until(job)
    assert job.state == JobState.CANCELLED, job.result
    assert re.fullmatch(r"Cancelled on request \(.+ of .+ done, copying disk vda\)\. Stopped before copying disk "
                        r"vdb; the copies it had made were removed: images/twin-2\.qcow2\.", job.result), job.result
    assert images(test_host) == before and "twin-2" not in domain_names(test_host)  # as it was
    assert not services.vm_locks.held(str(test_host.pk), vm)
    assert events("vm.clone") == [("twin", "failed")]
    again = job_of(admin_client.post(reverse("instances:clone", args=["testhost", vm]), {"name": "twin-2"}))
    go.set()
    assert wait_until(again).state == JobState.DONE  # free again, and the name too


def test_a_creation_cancelled_while_it_allocates_removes_its_volume(admin_client: Client, test_host: Host,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     seen: threading.Event) -> None:
    before = domain_names(test_host)
    monkeypatch.setattr(create, "_create_volume", held_until(seen, create._create_volume))
    job = job_of(admin_client.post(CREATE_URL, {**GOOD_FORM, "disk_allocate": "on", "start": "on"}))
    cancel_when(admin_client, job, "allocating disk")
    job = wait_until(job)
    assert job.state == JobState.CANCELLED, job.result
    assert re.fullmatch(r"Cancelled on request \((.+ of .+ done, )?allocating disk\)\. Stopped before defining\. "
                        r"Nothing it made is left\.", job.result), job.result
    assert volume_info(test_host, "app-01.img") is None and domain_names(test_host) == before
    assert events("vm.create") == [("app-01", "failed")]
    assert admin_client.get(reverse("jobs:status", args=[job.pk])).json()["link"] is None


def test_an_own_creation_from_an_image_cancelled_gives_the_quota_back(test_host: Host, image: CloudImage,  # noqa: F811
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      seen: threading.Event) -> None:
    before = image_world(test_host)
    client = _quota_user(test_host, image)
    monkeypatch.setattr(image_create, "_copy", held_until(seen, image_create._copy))
    job = job_of(client.post(reverse("instances:create_own"), good(image)))
    assert OwnedVM.objects.count() == 1  # reserved
    cancel_when(client, job, "copying image")  # the user cancels their own job
    job = wait_until(job)
    assert job.state == JobState.CANCELLED, job.result
    assert re.fullmatch(r"Cancelled on request \((.+ of .+ done, )?copying image\)\. Stopped before uploading seed\. "
                        r"Removed what it had made: the disk images/app-01\.qcow2\.", job.result), job.result
    assert image_world(test_host) == before and not OwnedVM.objects.exists()  # nothing made, the quota free
    assert "seed" not in job.params
    assert AuditEvent.objects.get(action="vm.create-own").result == "failed"
