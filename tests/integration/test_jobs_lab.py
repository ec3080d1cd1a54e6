"""A volume copy run by a real `manage.py rqworker` on the lab's libvirtd, killed with SIGKILL in the middle of
the copy: once the job's lease lapses, the job page reads "interrupted" with what was done, and libvirt's
partial copy (libvirtd goes on writing it after its client died) is removed: no volume is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from jobs.liveness import LEASE_SECONDS
from jobs.models import Job, JobState
from tests.integration.test_storage_lab import lab_conn, pool_dir, pool_name, vol_names  # noqa: F401 (fixtures)
from tests.panel_server import in_session, stop
from tests.unit.test_jobs import rq_mode  # noqa: F401 (fixture)
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def database_url() -> str:
    """The test database, for a process of the panel's own started by the test."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def job_worker(tmp_path: Path, rq_mode: redis.Redis) -> Iterator[subprocess.Popen[bytes]]:  # noqa: F811
    """`manage.py rqworker default` on the test's database and Redis, in a session of its own (the worker
    and the work horse it forks for each job)."""
    env = {**os.environ, "WEBKVM_DATABASE_URL": database_url(), "WEBKVM_REDIS_URL": settings.WEBKVM_REDIS_URL}
    log = (tmp_path / "rqworker.log").open("wb")
    worker = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "rqworker", "default"], cwd=REPO, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield worker
    stop(worker)
    print((tmp_path / "rqworker.log").read_text()[-3000:])


def wait(what: str, check: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def test_worker_killed_mid_copy_leaves_an_interrupted_job_and_no_partial_volume(
        admin_client: Client, lab: dict[str, Any], pool_dir: Path, pool_name: str,  # noqa: F811
        lab_conn: libvirt.virConnect, job_worker: subprocess.Popen[bytes], settings) -> None:  # noqa: F811
    settings.WEBKVM_POLL_LIMIT = 100_000  # this test asks the job's status ten times a second, no page does
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    assert admin_client.post(reverse("storage:pool_new", args=[host.name, "dir"]), {
        "name": pool_name, "target_path": str(pool_dir), "build": "on", "start": "on"}).status_code == 302
    # 1 GiB that does not compress or skip: libvirt's own copy loop takes a few seconds for it.
    subprocess.run(["dd", "if=/dev/urandom", f"of={pool_dir / 'src.img'}", "bs=4M", "count=256", "status=none"],
                   check=True, timeout=120)
    lab_conn.storagePoolLookupByName(pool_name).refresh(0)

    response = admin_client.post(reverse("storage:volume_clone", args=[host.name, pool_name, "src.img"]),
                                 {"name": "copy.img", "format": "raw"})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get()
    assert response["Location"] == job.get_absolute_url()
    # Mid-copy: the worker runs it and libvirt has begun writing the new volume.
    wait("the copy to begin", lambda: Job.objects.filter(pk=job.pk, state=JobState.RUNNING, phase="copying").exists()
         and (pool_dir / "copy.img").exists(), 30)
    time.sleep(0.5)
    doomed = in_session(job_worker.pid)
    assert len(doomed) == 2, doomed  # the worker and the work horse it forked for the job
    for pid in doomed:
        os.kill(pid, signal.SIGKILL)
    job_worker.wait()
    job.refresh_from_db()
    assert job.worker and "panel thread" not in job.worker
    status = reverse("jobs:status", args=[job.pk])
    # Its lease, renewed every LEASE_SECONDS / 3, outlives the worker by at least two thirds of LEASE_SECONDS:
    # until it lapses, the job is taken for alive.
    assert admin_client.get(status).json()["state"] == "running"
    state = wait("the job to be reconciled", lambda: (s := admin_client.get(status).json())["state"] != "running" and s,
                 LEASE_SECONDS + 60)
    assert state["state"] == "interrupted" and not state["active"], state
    assert state["result"].startswith("Interrupted: the worker running it stopped (copying).")
    assert state["result"].endswith("The partial copy copy.img was removed."), state["result"]
    assert vol_names(pool_name) == {"src.img"} and sorted(p.name for p in pool_dir.iterdir()) == ["src.img"]
    page = admin_client.get(job.get_absolute_url()).content.decode()
    assert 'data-state="interrupted"' in page and "The partial copy copy.img was removed." in page
    event = AuditEvent.objects.get(action="volume.clone")
    assert event.result == "failed" and "Interrupted" in event.detail and Job.objects.get().audit == event
