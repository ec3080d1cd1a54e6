"""The panel's ASGI app (pages, static files, console WebSockets) under uvicorn on 127.0.0.1, in the test's
own process so that it shares the test database: Django's live_server speaks no WebSocket."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANAGE = [sys.executable, str(ROOT / "manage.py")]


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server process, killing it if it does not stop within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def in_session(sid: int) -> list[int]:
    """The processes of session `sid` (a process started with start_new_session=True and its children, even
    those that made a process group of their own, as RQ's work horses do)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == sid:  # after the name: state, ppid, pgrp, session
            found.append(int(stat.parent.name))
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serve_panel() -> Iterator[str]:
    """``with serve_panel() as url:`` the panel answers on url (http://127.0.0.1:port) until the block ends."""
    import uvicorn
    from channels.routing import ProtocolTypeRouter
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    from webkvm.routing import websocket_application

    app = ProtocolTypeRouter({"http": ASGIStaticFilesHandler(get_asgi_application()),
                              "websocket": websocket_application()})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets", lifespan="off",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- a panel of its own, as `make run` starts it (manage.py serve) ------------------------------------

def own_panel_env(data: Path, **settings: str) -> dict[str, str]:
    """The environment of a panel with its own data folder and SQLite database: no WEBKVM_ setting of the
    test run leaks in; `settings` adds the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBKVM_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update({"WEBKVM_DATA_DIR": str(data), "WEBKVM_DATABASE_URL": f"sqlite:///{data / 'webkvm.sqlite3'}",
                **settings})
    return env


def manage(env: dict[str, str], *arguments: str) -> str:
    """Run one manage.py command in that environment; its output (it must succeed)."""
    done = subprocess.run([*MANAGE, *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def start_serve(env: dict[str, str], log: Path, *arguments: str) -> tuple[int, subprocess.Popen[bytes]]:
    """`manage.py serve` on a free loopback port, in a session of its own (in_session finds its processes),
    writing everything to `log`; returns the port and the process."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([*MANAGE, "serve", "--bind", f"127.0.0.1:{port}", *arguments], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return port, process
