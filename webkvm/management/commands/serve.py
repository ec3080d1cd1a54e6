"""`manage.py serve`: what `make run` starts. Redis for what the panel's processes share (a private
redis-server on a unix socket in the data dir, unless WEBKVM_REDIS_URL names one), then gunicorn with
uvicorn workers; all stop together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from webkvm.redis_store import PrivateRedis


class Command(BaseCommand):
    help = "Serve the panel: Redis (private unless WEBKVM_REDIS_URL is set) and gunicorn, stopped together."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--workers", type=int, default=1)

    def handle(self, *args: Any, **options: Any) -> None:
        env = dict(os.environ)
        private: PrivateRedis | None = None
        if not settings.WEBKVM_REDIS_URL:
            private = PrivateRedis(Path(settings.DATA_DIR) / "redis")
            env["WEBKVM_REDIS_URL"] = private.start()
            self.stdout.write(f"webkvm: private Redis on {private.url}")
        gunicorn = Path(sys.executable).with_name("gunicorn")
        command = [str(gunicorn), "webkvm.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
                   "--bind", options["bind"], "--workers", str(options["workers"]), "--graceful-timeout", "5",
                   "--access-logfile", "-"]
        server = subprocess.Popen(command, env=env)

        def forward(signum: int, _frame: object) -> None:
            server.send_signal(signum)

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, forward)
        try:
            code = server.wait()
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait()
            if private is not None:
                private.stop()
        sys.exit(code)
