"""`manage.py serve` (what `make run` starts): private Redis, WEBKVM_JOB_WORKERS job workers and gunicorn,
started together after the jobs of the last run are ended truthfully, a dead job worker replaced, and stopped
together."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import time
from pathlib import Path

import redis
import rq

from tests.conftest import need
from tests.panel_server import in_session, manage, own_panel_env, start_serve, stop
from webkvm.management.commands.serve import default_workers

ROOT = Path(__file__).resolve().parents[2]
LEFT_RUNNING = """
from django.utils import timezone
from jobs.models import Job
Job.objects.create(kind="volume.wipe", target_type="volume", target_name="images/w.img", state="running",
                   params={"pool": "images", "name": "w.img"}, started=timezone.now(), summary="overwrite w.img")
"""


def command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return ""  # gone (a zombie has no command line either)


def gunicorns(session: int) -> list[int]:
    return [pid for pid in in_session(session) if "gunicorn" in command(pid)]


def job_workers(session: int) -> list[int]:
    return [pid for pid in in_session(session) if "rqworker" in command(pid)]


def test_serve_reconciles_then_runs_job_workers_and_stops_them_with_the_rest(tmp_path: Path) -> None:
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    env = own_panel_env(tmp_path, WEBKVM_JOB_WORKERS="3")
    database = tmp_path / "webkvm.sqlite3"
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "shell", "-c", LEFT_RUNNING)
    log = tmp_path / "serve.log"
    port, serve = start_serve(env, log, "--job-workers", "2")
    try:
        store = redis.Redis(unix_socket_path=str(tmp_path / "redis" / "redis.sock"))
        deadline, workers, listening = time.monotonic() + 60, 0, False
        while time.monotonic() < deadline and not (workers == 2 and listening) and serve.poll() is None:
            with contextlib.suppress(redis.RedisError):
                workers = len(rq.Worker.all(connection=store))
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                listening = True
            time.sleep(0.2)
        output = log.read_text(errors="replace")
        assert workers == 2 and listening, output[-3000:]  # --job-workers over WEBKVM_JOB_WORKERS
        assert "1 job(s) of the last run ended as interrupted" in output
        panel_workers = default_workers()
        assert panel_workers >= 2 and f"{panel_workers} panel worker(s), 2 job worker(s)" in output
        deadline = time.monotonic() + 30
        while len(gunicorns(serve.pid)) < panel_workers + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(gunicorns(serve.pid)) == panel_workers + 1  # the arbiter and its workers
        with sqlite3.connect(database) as db:
            assert db.execute("SELECT state, result FROM jobs_job").fetchall() == [
                ("interrupted", "Interrupted: the worker running it stopped. Volume w.img may be partly overwritten.")]
        # A job worker killed (-9) is replaced within seconds, and the log says so.
        victim = job_workers(serve.pid)[0]
        os.kill(victim, signal.SIGKILL)
        deadline, now = time.monotonic() + 15, job_workers(serve.pid)
        while not (len(now) == 2 and victim not in now) and time.monotonic() < deadline:
            time.sleep(0.1)
            now = job_workers(serve.pid)
        assert len(now) == 2 and victim not in now, now
        deadline = time.monotonic() + 5
        while f"job worker {victim} exited (-9)" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"job worker {victim} exited (-9); started job worker " in log.read_text()
    finally:
        stop(serve)
    deadline = time.monotonic() + 20
    while in_session(serve.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert in_session(serve.pid) == [], "a process outlived manage.py serve"
    assert not (tmp_path / "redis" / "redis.sock").exists()


def test_a_demo_of_test_driver_hosts_alone_is_served_by_one_worker(db: None) -> None:
    from hosts.models import Host
    from webkvm.management.commands.serve import demo_only

    assert not demo_only()  # no host yet: bootstrap adds one before serve starts
    Host.objects.create(name="demo", transport="test", path="default")
    assert demo_only()
    Host.objects.create(name="real", transport="local", path="system")
    assert not demo_only()
