"""Console tickets travel as a WebSocket subprotocol, never in the URL, so no access log holds one: a ticket
in the URL opens nothing, and a console session through the real server (`manage.py serve`: gunicorn and
uvicorn, as `make run` starts them) leaves its ticket in no log line."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from console.tickets import SELECTED_PROTOCOL, protocols
from tests.conftest import BASIC_WORLD, WEB_01_UUID, need
from tests.panel_server import manage, own_panel_env, start_serve, stop
from tests.unit.test_console_tickets import (  # noqa: F401  (fixtures: the VNC server stand-in, its world)
    BANNER,
    ORIGIN,
    FakeVnc,
    fake_vnc,
    mint,
    session_key,
    test_host,
)
from webkvm.asgi import application

ROOT = Path(__file__).resolve().parents[2]
PATH = f"/console/ws/testhost/{WEB_01_UUID}/"


def first_message(path: str, cookie: str, offered: list[str]) -> tuple[str | None, dict]:
    """Open the console WebSocket offering `offered`; the subprotocol selected and the first message back."""
    async def run() -> tuple[str | None, dict]:
        communicator = WebsocketCommunicator(application, path, headers=[
            (b"origin", ORIGIN.encode()), (b"host", b"127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())],
            subprotocols=offered)
        connected, selected = await communicator.connect(timeout=10)
        assert connected
        message = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        return selected, message
    return async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_a_ticket_in_the_url_opens_nothing_the_subprotocol_does(user_client: Client,
                                                               fake_vnc: FakeVnc) -> None:  # noqa: F811
    ticket = mint(user_client)
    _selected, message = first_message(f"{PATH}?ticket={ticket}", session_key(user_client), ["binary"])
    assert message["type"] == "websocket.close" and "no console ticket" in message["reason"]
    assert fake_vnc.connections == 0
    selected, message = first_message(PATH, session_key(user_client), protocols(ticket))
    assert selected == SELECTED_PROTOCOL and message["bytes"] == BANNER  # never the ticket back
    assert fake_vnc.connections == 1


SETUP = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from hosts.models import Host
user = get_user_model().objects.create_superuser("root-admin", "", "correct-horse-battery-9")
Host.objects.create(name="testhost", transport="test", path="{world}")
session = SessionStore()
session.update({{SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                HASH_SESSION_KEY: user.get_session_auth_hash()}})
session.create()
print(session.session_key)
"""


@dataclass
class Served:
    base: str  # http://127.0.0.1:PORT
    session_key: str  # root-admin's login session
    database: Path
    log: Path  # everything the server printed: gunicorn's access and error logs


@contextlib.contextmanager
def served(tmp_path: Path, workers: int = 1) -> Iterator[Served]:
    """`manage.py serve` as `make run` starts it (private Redis, gunicorn with uvicorn workers) on a fresh
    database with root-admin logged in and the test host; stopped when the block ends."""
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    env = own_panel_env(tmp_path, WEBKVM_TEST_DRIVER="true")
    database = tmp_path / "webkvm.sqlite3"
    manage(env, "migrate", "--noinput", "-v0")
    made = manage(env, "shell", "-c", SETUP.format(world=BASIC_WORLD))
    log = tmp_path / "serve.log"
    port, serve = start_serve(env, log, "--workers", str(workers), "--job-workers", "1")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and serve.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        yield Served(f"http://127.0.0.1:{port}", made.strip().splitlines()[-1], database, log)
    finally:
        stop(serve)


def test_no_log_of_the_real_server_holds_a_console_ticket(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    vnc = None
    with contextlib.suppress(OSError):  # web-01's display is 127.0.0.1:5899 in basic.xml (below qemu's ports)
        vnc = FakeVnc(5899)
    try:
        with served(tmp_path) as panel:
            csrf = secrets.token_hex(16)  # 32 characters: a valid CSRF secret for cookie and header alike
            request = urllib.request.Request(
                f"{panel.base}/console/testhost/{WEB_01_UUID}/ticket/", method="POST",
                headers={"Cookie": f"sessionid={panel.session_key}; csrftoken={csrf}", "X-CSRFToken": csrf,
                         "Origin": panel.base})
            with urllib.request.urlopen(request, timeout=20) as response:
                answer = json.loads(response.read())
            ticket = answer["ticket"]
            with connect(panel.base.replace("http", "ws", 1) + answer["ws_path"], origin=panel.base,
                         open_timeout=20, additional_headers={"Cookie": f"sessionid={panel.session_key}"},
                         subprotocols=answer["protocols"]) as ws:
                assert ws.subprotocol == SELECTED_PROTOCOL
                with contextlib.suppress(Exception):
                    ws.recv(timeout=10)
    finally:
        if vnc is not None:
            vnc.close()
    output = panel.log.read_text(errors="replace")
    assert f"/console/ws/testhost/{WEB_01_UUID}/" in output, output[-3000:]  # the server logs WebSockets
    assert f"/console/testhost/{WEB_01_UUID}/ticket/" in output  # and requests: the access log is on
    assert ticket not in output and ticket[:16] not in output
    with sqlite3.connect(panel.database) as db:  # the session got past the ticket: used, not refused unread
        assert db.execute("SELECT count(*) FROM webkvm_auditevent WHERE action = 'console.open'").fetchone() == (1,)
