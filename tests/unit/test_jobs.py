"""Durable jobs (jobs/): started by a view, run by an RQ worker (real Redis, the worker in this process) or by
a thread of the panel alone, shown on one page to the right people, cancelled, and ended truthfully when
their worker is gone. Volume clone and wipe on libvirt's test driver are the kinds used."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import libvirt
import pytest
import redis
import rq
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rq.timeouts import TimerDeathPenalty

from hosts.models import Host
from jobs import liveness, runner
from jobs.models import Job, JobState
from jobs.reconcile import reconcile
from storage import volume_jobs
from tests.unit.test_storage_views import GIB, make_volume, volume_names
from virt.errors import Unreachable, translate
from webkvm import redis_store
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)  # jobs run and audit outside the test's transaction


def clone_url(source: str) -> str:
    return reverse("storage:volume_clone", args=["testhost", "images", source])


def job_of(response: Any) -> Job:
    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get(pk=int(response["Location"].strip("/").split("/")[-1]))
    assert response["Location"] == job.get_absolute_url()
    return job


def wait_until_ended(job: Job, seconds: float = 10) -> Job:
    """Until the job has ended and its audit record is written (runner.finish writes it just after)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if not job.active and job.audit_id is not None:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.pk} did not end: {job.state} {job.phase}")


def a_job(host: Host | None, owner: Any, state: str = JobState.RUNNING, kind: str = "volume.clone",
          **fields: Any) -> Job:
    """A Job row as a worker that has since died would have left it."""
    values: dict[str, Any] = {
        "target_type": "volume", "target_name": "images/copy.img", "summary": "copy of images/src.img (raw)",
        "params": {"pool": "images", "source": "src.img", "name": "copy.img", "format": "", "total": GIB},
        "started": timezone.now() if state == JobState.RUNNING else None, "rq_id": "gone", **fields}
    return Job.objects.create(kind=kind, host=host, owner=owner, state=state, **values)


# --- the panel alone: jobs in threads of this process -------------------------------------------


def test_clone_is_a_job_with_a_page_a_result_and_one_audit_record(admin_client: Client, admin_user: Any,
                                                                   test_host: Host) -> None:
    make_volume(test_host, "src.qcow2", GIB, fmt="qcow2")
    job = job_of(admin_client.post(clone_url("src.qcow2"), {"name": "copy.qcow2", "format": "qcow2"}))
    job = wait_until_ended(job)
    assert job.state == JobState.DONE, job.result
    assert (job.kind, job.host, job.owner, job.target_name) == ("volume.clone", test_host, admin_user,
                                                               "images/copy.qcow2")
    assert job.result == "Volume copy.qcow2 made, a copy of src.qcow2."
    assert job.started and job.finished and job.started <= job.finished and "panel thread" in job.worker
    assert volume_names(test_host) == {"src.qcow2", "copy.qcow2"}
    [event] = AuditEvent.objects.filter(action="volume.clone")
    assert job.audit == event and event.result == "ok" and event.user == admin_user
    assert event.object_name == "images/copy.qcow2" and event.detail.endswith(" s)")
    assert event.detail.startswith("copy of images/src.qcow2 (qcow2): Volume copy.qcow2 made, a copy of src.qcow2. (")
    page = admin_client.get(job.get_absolute_url()).content.decode()
    assert 'data-state="done"' in page and 'data-active="false"' in page and "js/job-progress.js" in page
    assert reverse("storage:pool", args=["testhost", "images"]) in page  # the link to what it made
    state = admin_client.get(reverse("jobs:status", args=[job.pk])).json()
    assert state | {"seconds": None} == {
        "id": job.pk, "kind": "volume.clone", "label": "Clone volume", "summary": "copy of images/src.qcow2 (qcow2)",
        "target": {"type": "volume", "name": "images/copy.qcow2"}, "host": "testhost", "state": "done",
        "state_label": "done", "active": False, "phase": "copied", "done": job.total, "total": job.total,
        "unit": "bytes", "percent": 100.0, "result": job.result, "seconds": None, "can_cancel": False,
        "link": reverse("storage:pool", args=["testhost", "images"])}


def test_a_failed_job_says_why(admin_client: Client, test_host: Host) -> None:
    make_volume(test_host, "v.img")
    job = wait_until_ended(job_of(admin_client.post(reverse("storage:volume_wipe",
                                                            args=["testhost", "images", "v.img"]))))
    assert job.state == JobState.FAILED and "virStorageVolWipe" in job.result
    assert AuditEvent.objects.get(action="volume.wipe").result == "failed"


def test_busy_volume_and_per_host_limit_count_job_rows(admin_client: Client, admin_user: Any, test_host: Host,
                                                       request: pytest.FixtureRequest) -> None:
    """Rows every process shares: a job another process runs counts as much as one of this process."""
    make_volume(test_host, "src.img")
    live = a_job(test_host, admin_user, target_name="images/copy.img")
    elsewhere = liveness.Heartbeat(live.pk)  # its worker, in another process, renews its lease
    assert elsewhere.start()
    request.addfinalizer(elsewhere.stop)
    refused = admin_client.post(clone_url("src.img"), {"name": "copy.img", "format": "raw"})
    assert refused.status_code == 200
    assert "Volume images/copy.img is already being worked on." in str(refused.context["form"].errors)
    a_job(test_host, admin_user, state=JobState.QUEUED, target_name="images/other.img")
    refused = admin_client.post(clone_url("src.img"), {"name": "third.img", "format": "raw"})
    assert "testhost already runs 2 storage jobs; wait for one to end." in str(refused.context["form"].errors)
    assert [e.result for e in AuditEvent.objects.filter(action="volume.clone")] == ["failed", "failed"]
    Job.objects.filter(pk=live.pk).update(state=JobState.DONE)
    assert wait_until_ended(job_of(admin_client.post(clone_url("src.img"),
                                                     {"name": "third.img", "format": "raw"}))).state == "done"
    assert Job.objects.count() == 3 and volume_names(test_host) == {"src.img", "third.img"}


# --- permissions ------------------------------------------------------------------------------------


def test_job_pages_admin_owner_others_anonymous(personas: dict[str, Client], admin_user: Any, granted_user: Any,
                                                outsider: Any, test_host: Host) -> None:
    admins = a_job(test_host, admin_user, state=JobState.DONE, target_name="images/a.img")
    alices = a_job(test_host, granted_user, state=JobState.DONE, target_name="images/b.img")
    pages = [("get", "jobs:detail"), ("get", "jobs:status"), ("post", "jobs:cancel")]
    for method, name in pages:
        for job, allowed in ((admins, {"admin"}), (alices, {"admin", "user"})):
            for persona, client in personas.items():
                response = getattr(client, method)(reverse(name, args=[job.pk]))
                if persona == "anonymous":
                    assert response.status_code == 302 and response["Location"].startswith("/login/")
                elif persona in allowed:
                    assert response.status_code == (302 if method == "post" else 200), (persona, name, job)
                else:
                    assert response.status_code == 403, (persona, name, job)
    # 3 pages: the user refused on the admin's job, the outsider on both
    assert sum(AuditEvent.objects.filter(result="denied").values_list("repeats", flat=True)) == 9  # counted per job
    assert personas["admin"].get(reverse("jobs:detail", args=[999])).status_code == 404
    assert personas["user"].get(reverse("jobs:detail", args=[999])).status_code == 403  # never says "no such job"
    listed = {persona: personas[persona].get(reverse("jobs:list")) for persona in personas}
    assert listed["anonymous"].status_code == 302
    assert {j.pk for j in listed["admin"].context["page"]} == {admins.pk, alices.pk}
    assert {j.pk for j in listed["user"].context["page"]} == {alices.pk}
    assert list(listed["outsider"].context["page"]) == []
    assert "My jobs" in listed["user"].content.decode()


def test_list_filters_by_state_and_kind(admin_client: Client, admin_user: Any, test_host: Host) -> None:
    done = a_job(test_host, admin_user, state=JobState.DONE)
    wipe = a_job(test_host, admin_user, state=JobState.FAILED, kind="volume.wipe", target_name="images/x.img")
    listed = lambda query: {j.pk for j in admin_client.get(reverse("jobs:list") + query).context["page"]}  # noqa: E731
    assert listed("") == {done.pk, wipe.pk}
    assert listed("?state=done") == {done.pk} and listed("?kind=volume.wipe") == {wipe.pk}
    assert listed("?state=failed&kind=volume.clone") == set() and listed("?state=bogus") == {done.pk, wipe.pk}


@pytest.mark.parametrize(("error", "users_read"), [
    (Unreachable("ssh: connect to host 10.9.8.7 port 22: No route to host"), "host unavailable"),
    (translate(libvirt.libvirtError("internal error: qemu 10.9.8.7 said no")), "the host reported an error"),
])
def test_a_users_failed_job_shows_the_hosts_words_to_admins_only(personas: dict[str, Client], granted_user: Any,
                                                                  test_host: Host, monkeypatch: pytest.MonkeyPatch,
                                                                  error: Exception, users_read: str) -> None:
    def work(handle: runner.Handle) -> str:
        raise error

    monkeypatch.setitem(runner.KINDS, "test.fails", runner.Kind("test.fails", "Fails", work))
    job = a_job(test_host, granted_user, state=JobState.QUEUED, kind="test.fails")
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    pages = {who: [personas[who].get(job.get_absolute_url()).content.decode(),
                   personas[who].get(reverse("jobs:status", args=[job.pk])).json()["result"]]
             for who in ("user", "admin")}
    pages["user"].append(personas["user"].get(reverse("jobs:list")).content.decode())
    assert all("10.9.8.7" not in text and users_read in text for text in pages["user"])
    assert all("10.9.8.7" in text for text in pages["admin"])
    assert "10.9.8.7" in AuditEvent.objects.get(action="test.fails").detail


# --- cancel -------------------------------------------------------------------------------------------


@pytest.fixture
def steps_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """A cancellable kind of ten steps that waits for the test between steps."""
    go = threading.Event()

    def work(handle: runner.Handle) -> str:
        for step in range(10):
            handle.progress(step, 10, f"step {step + 1}")
            go.wait(60)  # the test sets it once it has seen (and cancelled) step 1
            handle.check_cancel()
        return "all ten steps"

    monkeypatch.setitem(runner.KINDS, "test.steps", runner.Kind("test.steps", "Ten steps", work, cancellable=True))
    yield go
    go.set()


def test_cancel_a_running_job_of_a_cancellable_kind(admin_client: Client, rf: Any, admin_user: Any,
                                                    test_host: Host, steps_kind: threading.Event) -> None:
    request = rf.post("/")
    request.user = admin_user
    job = runner.start(request, "test.steps", test_host, runner.Target("host", "testhost"), {})
    deadline = time.monotonic() + 30
    while not Job.objects.filter(pk=job.pk, state=JobState.RUNNING, phase="step 1").exists():
        assert time.monotonic() < deadline, Job.objects.get(pk=job.pk)
        time.sleep(0.02)
    assert admin_client.get(reverse("jobs:status", args=[job.pk])).json()["can_cancel"] is True
    page = admin_client.post(reverse("jobs:cancel", args=[job.pk]), follow=True).content.decode()
    assert "Asked to stop" in page
    steps_kind.set()
    job = wait_until_ended(job)
    assert job.state == JobState.CANCELLED and job.result == "Cancelled on request (0 of 10 done, step 1)."
    assert AuditEvent.objects.get(action="test.steps").result == "failed"


def test_cancel_a_queued_job_but_not_a_running_copy(admin_client: Client, admin_user: Any, test_host: Host) -> None:
    queued = a_job(test_host, admin_user, state=JobState.QUEUED)
    runner.running_here.add(queued.pk)  # as if this process were about to run it
    try:
        admin_client.post(reverse("jobs:cancel", args=[queued.pk]))
    finally:
        runner.running_here.discard(queued.pk)
    queued.refresh_from_db()
    assert queued.state == JobState.CANCELLED and queued.result == "Cancelled by root-admin before it started."
    runner.execute(queued.pk)  # a worker taking it up later leaves it as it is
    assert Job.objects.get(pk=queued.pk).state == JobState.CANCELLED
    copying = a_job(test_host, admin_user, target_name="images/other.img")
    heartbeat = liveness.Heartbeat(copying.pk)
    assert heartbeat.start()
    try:
        page = admin_client.post(reverse("jobs:cancel", args=[copying.pk]), follow=True).content.decode()
        assert "This job cannot be stopped once it runs." in page
        assert Job.objects.get(pk=copying.pk).state == JobState.RUNNING
    finally:
        heartbeat.stop()
    assert AuditEvent.objects.filter(action="volume.clone").count() == 1  # the cancelled one


# --- restart safety -----------------------------------------------------------------------------------


def test_a_dead_copy_is_interrupted_and_its_partial_volume_removed(admin_client: Client, admin_user: Any,
                                                                   test_host: Host) -> None:
    make_volume(test_host, "src.img")
    make_volume(test_host, "copy.img")  # what libvirt had written when the worker died
    dead = a_job(test_host, admin_user, phase="copying", done=400 << 20, total=GIB)
    page = admin_client.get(reverse("jobs:list")).content.decode()
    assert "interrupted" in page
    dead.refresh_from_db()
    assert dead.state == JobState.INTERRUPTED and dead.finished is not None
    assert dead.result == ("Interrupted: the worker running it stopped (400 MiB of 1.0 GiB done, copying). "
                           "The partial copy copy.img was removed.")
    assert volume_names(test_host) == {"src.img"}
    assert AuditEvent.objects.get(action="volume.clone").detail == f"copy of images/src.img (raw): {dead.result}"
    assert reconcile() == 0 and AuditEvent.objects.filter(action="volume.clone").count() == 1  # once only


def test_a_copy_libvirt_still_writes_waits_until_it_can_be_removed(admin_user: Any, test_host: Host,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    dead = a_job(test_host, admin_user, phase="copying")
    monkeypatch.setattr(volume_jobs, "remove_partial", lambda conn, pool, name: "building")
    assert reconcile() == 0
    dead.refresh_from_db()
    assert dead.state == JobState.RUNNING and "libvirt is still writing copy.img" in dead.result
    monkeypatch.setattr(volume_jobs, "remove_partial", lambda conn, pool, name: "removed")
    assert reconcile() == 1
    dead.refresh_from_db()
    assert dead.state == JobState.INTERRUPTED and dead.result.endswith("The partial copy copy.img was removed.")


def test_live_jobs_are_left_alone_dead_and_orphaned_ones_end(admin_user: Any, test_host: Host) -> None:
    make_volume(test_host, "copy.img")
    live = a_job(test_host, admin_user, phase="copying")
    heartbeat = liveness.Heartbeat(live.pk)
    assert heartbeat.start()
    never_began = a_job(test_host, admin_user, state=JobState.QUEUED, target_name="images/q.img")
    Job.objects.filter(pk=never_began.pk).update(created=timezone.now() - timedelta(minutes=5))  # a restart ago
    just_made = a_job(test_host, admin_user, state=JobState.QUEUED, target_name="images/n.img")  # about to run
    wipe = a_job(test_host, admin_user, kind="volume.wipe", target_name="images/w.img",
                 params={"pool": "images", "name": "w.img"})
    try:
        assert reconcile() == 2
    finally:
        heartbeat.stop()
    states = {j.pk: (j.state, j.result) for j in Job.objects.all()}
    assert states[live.pk] == (JobState.RUNNING, "") and states[just_made.pk] == (JobState.QUEUED, "")
    assert states[never_began.pk] == (JobState.INTERRUPTED, "Interrupted: the panel stopped before it began.")
    assert states[wipe.pk] == (JobState.INTERRUPTED, "Interrupted: the worker running it stopped. "
                                                      "Volume w.img may be partly overwritten.")
    assert volume_names(test_host) == {"copy.img"}  # the live copy's volume is its own


# --- RQ: real Redis, the worker in this process ---------------------------------------------------------


class InProcessWorker(rq.SimpleWorker):
    """RQ's worker as `manage.py rqworker` runs it, minus what a test process must keep: its signal handlers
    and SIGALRM (pytest-timeout's)."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


@contextlib.contextmanager
def redis_configured(settings: Any, redis_url: str) -> Iterator[redis.Redis]:
    """The panel's processes share a Redis (and its job queue), empty."""
    settings.WEBKVM_REDIS_URL = redis_url
    settings.RQ_QUEUES = {"default": {"URL": redis_url}}
    redis_store.client.cache_clear()
    connection = redis.Redis.from_url(redis_url)
    rq.Queue(runner.QUEUE, connection=connection).empty()
    try:
        yield connection
    finally:
        rq.Queue(runner.QUEUE, connection=connection).empty()
        redis_store.client.cache_clear()


@pytest.fixture
def with_redis(settings: Any, redis_url: str) -> Iterator[redis.Redis]:
    with redis_configured(settings, redis_url) as connection:
        yield connection


@pytest.fixture
def rq_mode(settings: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """Redis, and jobs go to its job queue, test-driver host or not: the worker of these tests runs in this
    process and so sees the test driver's world (a worker process would not: runner.in_thread)."""
    monkeypatch.setattr(runner, "in_thread", lambda host: False)
    with redis_configured(settings, redis_url) as connection:
        yield connection


def work(connection: redis.Redis) -> str:
    worker = InProcessWorker([rq.Queue(runner.QUEUE, connection=connection)], connection=connection)
    worker.work(burst=True)
    return worker.name


def test_rq_worker_runs_the_clone(admin_client: Client, test_host: Host, rq_mode: redis.Redis) -> None:
    make_volume(test_host, "src.qcow2", GIB, fmt="qcow2")
    job = job_of(admin_client.post(clone_url("src.qcow2"), {"name": "copy.qcow2", "format": "qcow2"}))
    assert job.state == JobState.QUEUED and rq.job.Job.fetch(job.rq_id, connection=rq_mode).get_status() == "queued"
    assert reconcile() == 0  # waiting in the queue is alive
    assert admin_client.get(reverse("jobs:status", args=[job.pk])).json()["can_cancel"] is True
    name = work(rq_mode)
    job.refresh_from_db()
    assert job.state == JobState.DONE and job.worker == name, (job.state, job.result)
    assert volume_names(test_host) == {"src.qcow2", "copy.qcow2"}
    assert AuditEvent.objects.get(action="volume.clone").result == "ok"
    assert not rq_mode.exists(f"webkvm:lease:{liveness.name(job.pk)}")  # the lease went with it


def test_rq_cancelled_while_queued_is_never_run(admin_client: Client, test_host: Host, rq_mode: redis.Redis) -> None:
    make_volume(test_host, "src.img")
    job = job_of(admin_client.post(clone_url("src.img"), {"name": "copy.img", "format": "raw"}))
    admin_client.post(reverse("jobs:cancel", args=[job.pk]))
    work(rq_mode)
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and volume_names(test_host) == {"src.img"}
    assert AuditEvent.objects.filter(action="volume.clone").count() == 1


def test_rq_lost_and_orphaned_jobs_are_interrupted(admin_user: Any, test_host: Host, rq_mode: redis.Redis) -> None:
    old = timezone.now() - timedelta(minutes=5)
    lost = a_job(test_host, admin_user, state=JobState.QUEUED, target_name="images/a.img")
    Job.objects.filter(pk=lost.pk).update(created=old)  # Redis restarted empty since
    fresh = a_job(test_host, admin_user, state=JobState.QUEUED, target_name="images/b.img")  # about to be enqueued
    taken = a_job(test_host, admin_user, state=JobState.QUEUED, target_name="images/c.img", rq_id="taken")
    queued = rq.Queue(runner.QUEUE, connection=rq_mode).enqueue(runner.execute, taken.pk, job_id="taken")
    queued.set_status(rq.job.JobStatus.STARTED)
    queued.worker_name = "a-worker-that-died"
    queued.save()
    dead = a_job(test_host, admin_user, target_name="images/d.img")  # running, its lease gone
    assert reconcile() == 3
    results = {j.pk: (j.state, j.result) for j in Job.objects.all()}
    assert results[lost.pk] == (JobState.INTERRUPTED, "Interrupted: the job queue lost it before a worker took it.")
    assert results[fresh.pk] == (JobState.QUEUED, "")
    assert results[taken.pk] == (JobState.INTERRUPTED, "Interrupted: the worker that took it stopped.")
    assert results[dead.pk][0] == JobState.INTERRUPTED
    assert results[dead.pk][1].startswith("Interrupted: the worker running it stopped")


def test_rq_job_of_another_process_lives_while_its_lease_is_renewed(admin_user: Any, test_host: Host,
                                                                    rq_mode: redis.Redis) -> None:
    job = a_job(test_host, admin_user, phase="copying")
    other = liveness.Heartbeat(job.pk)  # another process's worker: a lease of its own in Redis
    assert other.start() and rq_mode.pttl(f"webkvm:lease:{liveness.name(job.pk)}") > 0
    try:
        assert reconcile() == 0
    finally:
        other.stop()
    assert reconcile() == 1


def test_no_job_queue_is_words_and_leaves_no_job(admin_client: Client, test_host: Host, settings: Any,
                                                 tmp_path: Any) -> None:
    settings.WEBKVM_REDIS_URL = f"unix://{tmp_path}/nobody-listens.sock"
    redis_store.client.cache_clear()
    try:
        make_volume(test_host, "src.img")
        refused = admin_client.post(clone_url("src.img"), {"name": "copy.img", "format": "raw"})
    finally:
        redis_store.client.cache_clear()
    assert refused.status_code == 200 and "The job queue did not answer" in str(refused.context["form"].errors)
    assert not Job.objects.exists() and volume_names(test_host) == {"src.img"}
    assert AuditEvent.objects.get(action="volume.clone").result == "failed"
