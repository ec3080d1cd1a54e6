"""The panel's ASGI app (pages, static files, console WebSockets) under uvicorn on 127.0.0.1, in the test's
own process so that it shares the test database: Django's live_server speaks no WebSocket."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path


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
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    from webkvm.routing import websocket_urlpatterns

    app = ProtocolTypeRouter({"http": ASGIStaticFilesHandler(get_asgi_application()),
                              "websocket": URLRouter(websocket_urlpatterns)})
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
