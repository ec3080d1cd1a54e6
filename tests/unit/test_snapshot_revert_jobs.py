"""Going back to a snapshot that holds memory, as a durable job, on libvirt's test driver: the page and the API
start it (a job page, 202) holding the VM's lock, it ends done with libvirt's current snapshot changed and one
audit record, a disk-only snapshot stays in the request, a busy VM is refused and audited once, and when its
worker died libvirt is asked what became of it."""

from __future__ import annotations

import threading
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hosts import services
from hosts.models import Host
from jobs.models import Job, JobState
from jobs.reconcile import reconcile
from tests.unit.test_api_access import TokenClient, callers  # noqa: F401  # callers: the personas' tokens
from tests.unit.test_api_vm_life import follow
from tests.unit.test_snapshot_create_jobs import events, held, job_of, running_vm, snapshot_url, wait_until
from virt import snapshots
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)  # jobs run and audit outside the test's transaction


def take(host: Host, vm: str, name: str) -> None:
    """A snapshot libvirt takes directly (of a running VM: with its memory)."""
    services.call(host, lambda conn: conn.lookupByUUIDString(vm).snapshotCreateXML(
        f"<domainsnapshot><name>{name}</name></domainsnapshot>", 0).getName())


def current(host: Host, vm: str) -> str:
    return str(services.call(host, lambda conn: conn.lookupByUUIDString(vm).snapshotCurrent(0).getName()))


def revert(client: Client, vm: str, name: str) -> Any:
    return client.post(snapshot_url("snapshot_revert", vm), {"snapshot": name, "confirm": "yes"})


def test_going_back_to_a_memory_snapshot_is_a_job(admin_client: Client, admin_user: Any, test_host: Host) -> None:
    vm = running_vm(test_host, "live")
    take(test_host, vm, "s1")
    take(test_host, vm, "s2")
    assert current(test_host, vm) == "s2"
    job = wait_until(job_of(revert(admin_client, vm, "s1")))  # the page sends the user to the job's page
    assert job.state == JobState.DONE, job.result
    assert (job.kind, job.target_type, job.target_name, job.owner) == ("vm.snapshot.revert", "vm", "live", admin_user)
    assert job.summary == "live back to snapshot s1, with its memory"
    assert job.result == f"live went back to snapshot s1, its memory loaded (running) (uuid {vm})."
    assert current(test_host, vm) == "s1"  # libvirt went back
    assert services.call(test_host, lambda conn: conn.lookupByUUIDString(vm).isActive()) == 1
    assert not held(test_host, vm)
    [event] = AuditEvent.objects.filter(action="vm.snapshot.revert")
    assert (event.result, event.object_name, job.audit) == ("ok", "live", event)
    status = admin_client.get(reverse("jobs:status", args=[job.pk])).json()
    assert status["link"] == snapshot_url("snapshots", vm) and status["label"] == "Revert to snapshot with memory"


def test_a_disk_only_snapshot_is_reverted_in_the_request(admin_client: Client, test_host: Host) -> None:
    vm = running_vm(test_host, "quiet")
    services.call(test_host, lambda conn: conn.lookupByUUIDString(vm).destroy())
    take(test_host, vm, "s1")
    take(test_host, vm, "s2")
    response = revert(admin_client, vm, "s1")
    assert response.status_code == 302 and response["Location"] == snapshot_url("snapshots", vm)
    assert "quiet: back to snapshot s1." in admin_client.get(response["Location"]).content.decode()
    assert current(test_host, vm) == "s1" and not Job.objects.exists()
    assert events("vm.snapshot.revert") == [("quiet", "ok")]


@pytest.fixture
def slow_revert(monkeypatch: pytest.MonkeyPatch) -> Any:
    """libvirt "loads the memory" until the test lets it go on."""
    loading, go_on = threading.Event(), threading.Event()
    real = snapshots.revert

    def slow(dom: libvirt.virDomain, name: str) -> snapshots.SnapshotInfo:
        loading.set()
        assert go_on.wait(20)
        return real(dom, name)

    monkeypatch.setattr(snapshots, "revert", slow)
    yield loading, go_on
    go_on.set()


def test_the_vm_stays_locked_while_it_goes_back(admin_client: Client, test_host: Host, slow_revert: Any) -> None:
    loading, go_on = slow_revert
    vm = running_vm(test_host, "busy")
    take(test_host, vm, "s1")
    job = job_of(revert(admin_client, vm, "s1"))
    assert loading.wait(10)
    job = wait_until(job, lambda job: job.phase == "loading memory and disks")
    assert job.state == JobState.RUNNING and held(test_host, vm)
    listing = admin_client.get(snapshot_url("snapshots", vm)).content.decode()  # the snapshot list follows it
    assert f'data-kind="{job.kind}"' in listing and "Going back:" in listing and "Being taken:" not in listing
    # Any other change of the VM meanwhile is "busy", audited once as failed, and starts nothing.
    again = admin_client.post(snapshot_url("snapshot_revert", vm), {"snapshot": "s1", "confirm": "yes"}, follow=True)
    assert "Revert to snapshot: not started: Another action on this VM is still running" in again.content.decode()
    assert Job.objects.count() == 1 and events("vm.snapshot.revert") == [("busy", "failed")]
    go_on.set()
    assert wait_until(job).state == JobState.DONE and not held(test_host, vm)
    assert events("vm.snapshot.revert") == [("busy", "failed"), ("busy", "ok")]


def test_the_api_answers_202_with_the_job(callers: dict[str, TokenClient], test_host: Host) -> None:  # noqa: F811
    vm = running_vm(test_host, "api")
    take(test_host, vm, "s1")
    take(test_host, vm, "s2")
    state = follow(callers["admin"], callers["admin"].post(f"/api/v1/vms/testhost/{vm}/snapshots/s1/revert/"))
    assert (state["state"], state["kind"]) == ("done", "vm.snapshot.revert"), state
    assert current(test_host, vm) == "s1" and not held(test_host, vm)
    assert "through the API, token admin-token" in AuditEvent.objects.get(action="vm.snapshot.revert").detail


def dead_revert_job(host: Host, owner: Any, vm: str, vm_name: str, was_current: bool) -> Job:
    """The Job row of a revert whose worker died, holding the VM's lock."""
    lock = services.vm_locks.acquire(str(host.pk), vm)
    return Job.objects.create(
        kind="vm.snapshot.revert", host=host, owner=owner, state=JobState.RUNNING, target_type="vm",
        target_name=vm_name, started=timezone.now(), phase="loading memory and disks",
        summary=f"{vm_name} back to snapshot s1, with its memory", rq_id="gone",
        params={"host_key": str(host.pk), "vm": vm, "vm_name": vm_name, "lock": lock, "name": "s1",
                "was_current": was_current})


def test_a_revert_whose_worker_died_is_done_when_libvirt_went_back(admin_user: Any, test_host: Host) -> None:
    vm = running_vm(test_host, "found")
    take(test_host, vm, "s1")  # s1 is current: libvirt went back after the worker died (it was s2 before)
    job = dead_revert_job(test_host, admin_user, vm, "found", was_current=False)
    assert reconcile() == 1
    job.refresh_from_db()
    assert job.state == JobState.DONE and job.result.endswith(f"found went back to snapshot s1 (uuid {vm}).")
    assert not held(test_host, vm) and events("vm.snapshot.revert") == [("found", "ok")]


def test_a_revert_whose_worker_died_waits_while_libvirt_works_then_says_what_it_knows(
        admin_user: Any, test_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    vm = running_vm(test_host, "still")
    take(test_host, vm, "s1")
    take(test_host, vm, "s2")  # s2 is current: libvirt did not go back to s1
    job = dead_revert_job(test_host, admin_user, vm, "still", was_current=False)
    monkeypatch.setattr(snapshots, "has_active_job", lambda dom: True)
    assert reconcile() == 0
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and "libvirt is still working on still" in job.result and held(test_host, vm)
    monkeypatch.setattr(snapshots, "has_active_job", lambda dom: False)
    assert reconcile() == 1
    job.refresh_from_db()
    assert job.state == JobState.INTERRUPTED and job.result == (
        "Interrupted: the worker running it stopped (loading memory and disks). still did not go back to snapshot s1.")
    assert not held(test_host, vm) and events("vm.snapshot.revert") == [("still", "failed")]


def test_a_revert_to_the_current_snapshot_whose_worker_died_says_it_is_not_known(admin_user: Any,
                                                                                 test_host: Host) -> None:
    vm = running_vm(test_host, "unsure")
    take(test_host, vm, "s1")
    job = dead_revert_job(test_host, admin_user, vm, "unsure", was_current=True)
    assert reconcile() == 1
    job.refresh_from_db()
    assert job.state == JobState.INTERRUPTED and "is not known" in job.result and not held(test_host, vm)


def test_a_revert_cancelled_before_it_ran_unlocks_the_vm(admin_client: Client, admin_user: Any,
                                                         test_host: Host) -> None:
    vm = running_vm(test_host, "queued")
    job = dead_revert_job(test_host, admin_user, vm, "queued", was_current=False)
    Job.objects.filter(pk=job.pk).update(state=JobState.QUEUED, started=None)
    admin_client.post(reverse("jobs:cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and not held(test_host, vm)


def test_a_failed_revert_job_says_why_and_unlocks(admin_client: Client, test_host: Host,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: libvirt.virDomain, snap: libvirt.virDomainSnapshot, flags: int = 0) -> None:
        raise libvirt.libvirtError("internal error: cannot load the memory (this test)")

    vm = running_vm(test_host, "stuck")
    take(test_host, vm, "s1")
    monkeypatch.setattr(libvirt.virDomain, "revertToSnapshot", refuse)
    job = wait_until(job_of(revert(admin_client, vm, "s1")))
    assert job.state == JobState.FAILED and "cannot load the memory (this test)" in job.result
    assert not held(test_host, vm) and events("vm.snapshot.revert") == [("stuck", "failed")]
