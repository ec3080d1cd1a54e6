"""`manage.py serve`: what `make run` starts. Redis for what the panel's processes share (a private
redis-server on a unix socket in the data dir, unless WEBKVM_REDIS_URL names one), the job workers
(RQ, WEBKVM_JOB_WORKERS of them) and gunicorn with uvicorn workers; all stop together. Jobs left
queued or running by a previous run are ended truthfully first (jobs/reconcile.py), and again every lease
period while it runs; a job worker that dies (kill -9, a crash) is replaced, unless the panel is stopping."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from webkvm import redis_store
from webkvm.redis_store import PrivateRedis

log = logging.getLogger(__name__)
WAIT_SECONDS = 0.5  # how often the wait loop looks at the job workers
RESTART_SECONDS = 5.0  # a job worker is replaced no sooner than this after it was started


def stop_job_worker(worker: subprocess.Popen[bytes], patience: float = 5.0) -> None:
    """RQ stops warm on the first signal (after its job) and cold on the second (its job is killed and is
    "interrupted" at the next start); a worker that still does not stop is killed."""
    for _ in range(2):
        if worker.poll() is not None:
            return
        worker.terminate()
        try:
            worker.wait(timeout=patience)
            return
        except subprocess.TimeoutExpired:
            continue
    worker.kill()
    worker.wait()


def default_workers() -> int:
    """One gunicorn worker per CPU (at least 2, so one busy process never stalls the panel; at most 16)."""
    return max(2, min(os.cpu_count() or 2, 16))


def demo_only() -> bool:
    """Every host is on libvirt's test driver, whose VMs live inside each process that opens it."""
    from hosts.models import Host

    hosts = Host.objects.all()
    return hosts.exists() and not hosts.exclude(transport="test").exists()


class Command(BaseCommand):
    help = "Serve the panel: Redis (private unless WEBKVM_REDIS_URL is set), job workers, gunicorn; stopped together."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--workers", type=int, default=settings.WEBKVM_WORKERS,
                            help="gunicorn workers (default: WEBKVM_WORKERS, else one per CPU, at least 2)")
        parser.add_argument("--job-workers", type=int, default=settings.WEBKVM_JOB_WORKERS)

    def handle(self, *args: Any, **options: Any) -> None:
        env = dict(os.environ)
        private: PrivateRedis | None = None
        if not settings.WEBKVM_REDIS_URL:
            private = PrivateRedis(Path(settings.DATA_DIR) / "redis")
            env["WEBKVM_REDIS_URL"] = private.start()
            self.stdout.write(f"webkvm: private Redis on {private.url}")
            settings.WEBKVM_REDIS_URL = env["WEBKVM_REDIS_URL"]  # this process too, for the reconciliation
            redis_store.client.cache_clear()
        self._reconcile()
        workers = options["workers"] or self._workers()
        manage = str(Path(settings.BASE_DIR) / "manage.py")

        def job_worker() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, manage, "rqworker", "default"], env=env)

        job_workers = [job_worker() for _ in range(options["job_workers"])]
        self.stdout.write(f"webkvm: {workers} panel worker(s), {len(job_workers)} job worker(s)")
        gunicorn = Path(sys.executable).with_name("gunicorn")
        command = [str(gunicorn), "webkvm.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
                   "--bind", options["bind"], "--workers", str(workers), "--graceful-timeout", "5",
                   "--access-logfile", "-"]
        server = subprocess.Popen(command, env=env)

        stopping = threading.Event()

        def forward(signum: int, _frame: object) -> None:
            if signum != signal.SIGHUP:  # gunicorn reloads its workers on SIGHUP and goes on
                stopping.set()
            server.send_signal(signum)

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, forward)
        code = 1
        try:
            code = self._wait(server, job_workers, job_worker, stopping)
        finally:
            stopping.set()
            if server.poll() is None:
                server.terminate()
                server.wait()
            for worker in job_workers:
                stop_job_worker(worker)
            if private is not None:
                private.stop()
        sys.exit(code)

    def _wait(self, server: subprocess.Popen[bytes], job_workers: list[subprocess.Popen[bytes]],
              job_worker: Callable[[], subprocess.Popen[bytes]], stopping: threading.Event) -> int:
        """Until gunicorn exits: replace each job worker that died, and end the jobs whose worker is gone every
        lease period (in a thread: tidying up after one may wait on a slow host). Returns gunicorn's exit code."""
        from jobs.liveness import LEASE_SECONDS

        tidying: threading.Thread | None = None
        next_reconcile = time.monotonic() + LEASE_SECONDS
        born = [time.monotonic()] * len(job_workers)
        while True:
            try:
                return server.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            for index, worker in enumerate(job_workers):
                code = worker.poll()
                if code is None or stopping.is_set() or server.poll() is not None:
                    continue
                if time.monotonic() - born[index] < RESTART_SECONDS:
                    continue  # one that dies at once (Redis away) is not restarted in a tight loop
                job_workers[index], born[index] = job_worker(), time.monotonic()
                self.stdout.write(f"webkvm: job worker {worker.pid} exited ({code}); started job worker "
                                  f"{job_workers[index].pid} in its place")
                self.stdout.flush()
            if time.monotonic() >= next_reconcile and (tidying is None or not tidying.is_alive()):
                next_reconcile = time.monotonic() + LEASE_SECONDS
                tidying = threading.Thread(target=self._reconcile_now_and_then, name="reconcile", daemon=True)
                tidying.start()

    def _reconcile_now_and_then(self) -> None:
        from django.db import connections

        from jobs.reconcile import now_and_then

        try:
            ended = now_and_then()
        finally:
            connections.close_all()  # this thread's: it holds none between rounds
        if ended:
            self.stdout.write(f"webkvm: {ended} job(s) whose worker is gone were ended")
            self.stdout.flush()

    def _workers(self) -> int:
        if demo_only():
            # Each worker would show its own copy of the demo's VMs; a real host has one truth for all.
            self.stdout.write("webkvm: only test-driver (demo) hosts: serving with 1 panel worker so every page "
                              "shows the same demo VMs; add a real host, or set WEBKVM_WORKERS, for more")
            return 1
        return default_workers()

    def _reconcile(self) -> None:
        from jobs.reconcile import reconcile

        try:
            ended = reconcile()
        except Exception as exc:  # start anyway: the job pages try again
            log.exception("reconciling jobs at start failed")
            self.stderr.write(f"webkvm: could not check the jobs of the last run: {exc}")
            return
        if ended:
            self.stdout.write(f"webkvm: {ended} job(s) of the last run ended as interrupted")
