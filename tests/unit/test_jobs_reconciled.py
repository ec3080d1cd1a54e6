"""A job whose worker is gone reads as ended wherever it is read, not only on the job pages: through the job
socket, the API's job list and detail, and it stops counting against the limits of a new job
(jobs/reconcile.now_and_then: at most once per lease period, shared through Redis when there is one). And the
demo's jobs (hosts on libvirt's test driver) run in a panel thread even with Redis and its job workers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
import rq
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from hosts.models import Host
from jobs import liveness, reconcile, runner
from jobs.models import Job, JobState
from tests.unit.test_api_access import TokenClient
from tests.unit.test_jobs import a_job, clone_url, job_of, steps_kind, wait_until_ended, with_redis  # noqa: F401
from tests.unit.test_live import ORIGIN, cookie_of
from tests.unit.test_storage_views import make_volume, volume_names
from webkvm.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)  # the jobs' threads and the socket read committed rows
WIPE = {"kind": "volume.wipe", "target_name": "images/w.img", "params": {"pool": "images", "name": "w.img"}}
WIPE_INTERRUPTED = "Interrupted: the worker running it stopped. Volume w.img may be partly overwritten."


@pytest.fixture
def turn() -> Iterator[None]:
    """This test's first read reconciles, whatever reconciled before it within the lease period."""
    reconcile.forget_turn()
    yield
    reconcile.forget_turn()


def test_the_socket_sends_a_dead_workers_job_as_interrupted(admin_client: Client, admin_user: Any,
                                                            test_host: Host, turn: None) -> None:
    dead = a_job(test_host, admin_user, **WIPE)  # running, and nobody renews its lease

    async def first_frame() -> tuple[dict[str, Any], Any]:
        socket = WebsocketCommunicator(application, f"/jobs/ws/{dead.pk}/", headers=[
            (b"origin", ORIGIN.encode()), (b"host", b"127.0.0.1:8000"),
            (b"cookie", f"sessionid={cookie_of(admin_client)}".encode())])
        connected, _ = await socket.connect(timeout=10)
        assert connected
        frame = json.loads(await socket.receive_from(timeout=10))
        closed = await socket.receive_output(timeout=10)
        await socket.disconnect()
        return frame, closed

    frame, closed = async_to_sync(first_frame)()
    assert (frame["state"], frame["active"], frame["result"]) == ("interrupted", False, WIPE_INTERRUPTED)
    assert closed == {"type": "websocket.close", "code": 4000}  # ended: nothing more will come


def test_the_api_reads_a_dead_workers_job_as_interrupted_at_most_once_per_lease_period(
        admin_user: Any, test_host: Host, turn: None) -> None:
    api = TokenClient(ApiToken.make(get_user_model().objects.create_superuser("api-admin", "", "x"), "t")[1])
    first = a_job(test_host, admin_user, **WIPE)
    detail = api.get(f"/api/v1/jobs/{first.pk}/")
    assert detail.status_code == 200 and (detail.json()["state"], detail.json()["result"]) == (
        "interrupted", WIPE_INTERRUPTED)
    second = a_job(test_host, admin_user, **{**WIPE, "target_name": "images/x.img"})
    listed = {job["id"]: job["state"] for job in api.get("/api/v1/jobs/").json()["results"]}
    assert listed == {first.pk: "interrupted", second.pk: "running"}  # within the lease period: not again
    reconcile.forget_turn()  # as if a lease period had passed
    listed = {job["id"]: job["state"] for job in api.get("/api/v1/jobs/").json()["results"]}
    assert listed == {first.pk: "interrupted", second.pk: "interrupted"}


def test_a_new_job_on_the_target_of_a_dead_one_is_admitted(admin_client: Client, admin_user: Any,
                                                           test_host: Host, turn: None) -> None:
    make_volume(test_host, "src.img")
    dead = a_job(test_host, admin_user, target_name="images/copy.img", phase="copying")  # died before libvirt began
    job = wait_until_ended(job_of(admin_client.post(clone_url("src.img"), {"name": "copy.img", "format": "raw"})))
    dead.refresh_from_db()
    assert (dead.state, dead.result) == (JobState.INTERRUPTED, "Interrupted: the worker running it stopped (copying). "
                                                               "No partial copy was left.")
    assert job.state == JobState.DONE and volume_names(test_host) == {"src.img", "copy.img"}


def test_the_turn_is_shared_through_redis(with_redis: redis.Redis) -> None:  # noqa: F811
    reconcile.forget_turn()
    assert reconcile.due() and not reconcile.due()  # one turn per lease period, whichever process asks
    assert 0 < with_redis.pttl(reconcile.LAST_KEY) <= liveness.LEASE_SECONDS * 1000
    reconcile.forget_turn()
    assert reconcile.due()
    reconcile.forget_turn()


def test_with_redis_a_test_driver_hosts_job_runs_in_a_panel_thread(
        admin_user: Any, rf: Any, test_host: Host, with_redis: redis.Redis,  # noqa: F811
        steps_kind: threading.Event) -> None:  # noqa: F811
    """The demo's world lives in this process: no job worker could see it. Reconciling leaves the thread's job be."""
    request = rf.post("/")
    request.user = admin_user
    job = runner.start(request, "test.steps", test_host, runner.Target("host", "testhost"), {})
    assert job.rq_id == "" and rq.Queue(runner.QUEUE, connection=with_redis).count == 0
    deadline = time.monotonic() + 30
    while not Job.objects.filter(pk=job.pk, state=JobState.RUNNING, phase="step 1").exists():
        assert time.monotonic() < deadline, Job.objects.get(pk=job.pk)
        time.sleep(0.02)
    # One queued long ago that a thread of this process is about to run; and one whose process is gone.
    old = timezone.now() - timedelta(minutes=5)
    waiting = a_job(test_host, admin_user, state=JobState.QUEUED, rq_id="", **{**WIPE, "target_name": "images/a"})
    orphan = a_job(test_host, admin_user, state=JobState.QUEUED, rq_id="", **{**WIPE, "target_name": "images/b"})
    Job.objects.filter(pk__in=[waiting.pk, orphan.pk]).update(created=old)
    runner.running_here.add(waiting.pk)
    try:
        assert reconcile.reconcile() == 1
    finally:
        runner.running_here.discard(waiting.pk)
    states = {j.pk: (j.state, j.result) for j in Job.objects.all()}
    assert states[job.pk] == (JobState.RUNNING, "") and states[waiting.pk] == (JobState.QUEUED, "")
    assert states[orphan.pk] == (JobState.INTERRUPTED, "Interrupted: the panel stopped before it began.")
    steps_kind.set()
    job = wait_until_ended(job)
    assert job.state == JobState.DONE and "panel thread" in job.worker
