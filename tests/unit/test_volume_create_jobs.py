"""Creating a volume with "Allocate all the space now", as a durable job, on libvirt's test driver: the page and
the API start it (a job page, 202), it ends done with libvirt holding the allocated volume and one audit record,
a sparse volume stays in the request, a refusal is audited once, and when its worker died the volume it had begun
is removed."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hosts.models import Host
from jobs.models import Job, JobState
from jobs.reconcile import reconcile
from storage import volume_jobs
from tests.unit.test_api_access import TokenClient, callers  # noqa: F401  # callers: the personas' tokens
from tests.unit.test_api_storage import VOLUMES, followed
from tests.unit.test_jobs import job_of, wait_until_ended
from tests.unit.test_snapshot_create_jobs import _alive
from tests.unit.test_storage_views import GIB, audited, lv, make_volume, volume_names
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)  # jobs run and audit outside the test's transaction
NEW = reverse("storage:volume_new", args=["testhost", "images"])
FAT = {"name": "fat.img", "size": "2G", "format": "raw", "preallocate": "on"}


def capacity_and_allocation(host: Host, name: str) -> tuple[int, int] | None:
    def look(conn: Any) -> tuple[int, int] | None:
        pool = conn.storagePoolLookupByName("images")
        if name not in pool.listVolumes():
            return None
        info = pool.storageVolLookupByName(name).info()
        return int(info[1]), int(info[2])

    return lv(host, look)


def test_an_allocated_volume_is_a_job_that_ends_done(admin_client: Client, admin_user: Any, test_host: Host) -> None:
    job = wait_until_ended(job_of(admin_client.post(NEW, FAT)))  # the page sends the user to the job's page
    assert job.state == JobState.DONE, job.result
    assert (job.kind, job.target_type, job.target_name, job.owner) == ("volume.create", "volume", "images/fat.img",
                                                                       admin_user)
    assert job.summary == "raw volume of 2.0 GiB, allocated now"
    assert job.result == "Volume fat.img created, its space allocated."
    assert (job.done, job.total) == (2 * GIB, 2 * GIB)
    assert capacity_and_allocation(test_host, "fat.img") == (2 * GIB, 2 * GIB)  # libvirt made it, all of it
    [event] = AuditEvent.objects.filter(action="volume.create")
    assert (event.result, event.object_name, job.audit) == ("ok", "images/fat.img", event)
    assert event.detail.startswith("raw volume of 2.0 GiB, allocated now: Volume fat.img created")
    status = admin_client.get(reverse("jobs:status", args=[job.pk])).json()
    assert status["link"] == reverse("storage:pool", args=["testhost", "images"]) and status["label"] == "Create volume"


def test_a_sparse_volume_stays_in_the_request(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post(NEW, {"name": "thin.img", "size": "2G", "format": "raw"})
    assert response.status_code == 302 and response["Location"] == reverse("storage:pool", args=["testhost", "images"])
    assert not Job.objects.exists() and capacity_and_allocation(test_host, "thin.img") == (2 * GIB, 0)
    assert [(e.object_name, e.result) for e in AuditEvent.objects.filter(action="volume.create")] == [
        ("images/thin.img", "ok")]


def test_a_refused_allocation_is_audited_once_and_makes_nothing(admin_client: Client, admin_user: Any,
                                                                test_host: Host,
                                                                request: pytest.FixtureRequest) -> None:
    # Another job works on the volume in another panel process, whose worker renews its lease: the start is
    # refused, not let in by reconciling that job (jobs/runner.start reconciles now and then).
    elsewhere = Job.objects.create(kind="volume.clone", host=test_host, owner=admin_user, target_type="volume",
                                   target_name="images/fat.img", state=JobState.RUNNING, started=timezone.now(),
                                   rq_id="elsewhere")
    _alive(elsewhere, request)
    response = admin_client.post(NEW, FAT)
    assert response.status_code == 200
    assert ("Create volume: not started: Volume images/fat.img is already being worked on."
            in str(response.context["form"].errors))
    assert volume_names(test_host) == set() and Job.objects.count() == 1
    assert [e.result for e in audited("volume.create", "failed")] == ["failed"]


def test_the_api_answers_202_with_the_job(callers: dict[str, TokenClient], test_host: Host) -> None:  # noqa: F811
    admin = callers["admin"]
    made = admin.post(VOLUMES, FAT)
    assert made.status_code == 202 and made["Location"] == made.json()["url"], made.content
    state = followed(admin, made.json()["url"])
    assert state["state"] == "done" and state["kind"] == "volume.create"
    assert capacity_and_allocation(test_host, "fat.img") == (2 * GIB, 2 * GIB)
    assert "through the API, token admin-token" in AuditEvent.objects.get(action="volume.create").detail
    thin = admin.post(VOLUMES, {"name": "thin.qcow2", "size": "1G"})
    assert thin.status_code == 201 and Job.objects.filter(kind="volume.create").count() == 1, thin.content


def dead_create_job(host: Host, owner: Any, phase: str) -> Job:
    """The Job row of an allocation whose worker died."""
    return Job.objects.create(
        kind="volume.create", host=host, owner=owner, state=JobState.RUNNING, started=timezone.now(), phase=phase,
        target_type="volume", target_name="images/fat.img", summary="raw volume of 1.0 GiB, allocated now",
        rq_id="gone", done=GIB // 4, total=GIB,
        params={"pool": "images", "name": "fat.img", "capacity": GIB, "format": "raw", "backing": "", "total": GIB})


def test_an_allocation_whose_worker_died_removes_its_volume(admin_user: Any, test_host: Host) -> None:
    make_volume(test_host, "fat.img", GIB, allocation=GIB // 4)  # what libvirt had written when the worker died
    job = dead_create_job(test_host, admin_user, volume_jobs.ALLOCATING)
    assert reconcile() == 1
    job.refresh_from_db()
    assert job.state == JobState.INTERRUPTED and job.result == (
        "Interrupted: the worker running it stopped (256 MiB of 1.0 GiB done, allocating). "
        "The unfinished volume fat.img was removed.")
    assert volume_names(test_host) == set()
    assert [(e.object_name, e.result) for e in AuditEvent.objects.filter(action="volume.create")] == [
        ("images/fat.img", "failed")]


def test_an_allocation_libvirt_still_writes_waits(admin_user: Any, test_host: Host,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    job = dead_create_job(test_host, admin_user, volume_jobs.ALLOCATING)
    monkeypatch.setattr(volume_jobs, "remove_partial", lambda conn, pool, name: "building")
    assert reconcile() == 0
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and "libvirt is still allocating fat.img" in job.result


def test_an_allocation_that_never_began_leaves_a_volume_of_that_name_alone(admin_user: Any, test_host: Host) -> None:
    make_volume(test_host, "fat.img")  # not this job's: made before its libvirt call began
    job = dead_create_job(test_host, admin_user, "")
    assert reconcile() == 1
    job.refresh_from_db()
    assert job.state == JobState.INTERRUPTED and job.result.endswith("It made nothing.")
    assert volume_names(test_host) == {"fat.img"}
