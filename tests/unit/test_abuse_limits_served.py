"""Abuse and resource limits against the panel as `make run` serves it (`manage.py serve`: private Redis,
gunicorn with two uvicorn workers), over real sockets: request bodies are capped before Django spools them
(no temporary file appears in the workers), the polling limit is shared by the workers, and WebSockets on
unknown paths are answered 404 with one log line and no traceback."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import select
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import need
from tests.panel_server import in_session, manage, own_panel_env, start_serve, stop
from tests.unit.test_serve import gunicorns

ROOT = Path(__file__).resolve().parents[2]
KIB, MIB = 1 << 10, 1 << 20
LIMIT = 256 * KIB  # WEBKVM_MAX_BODY_BYTES of this panel
POLLS = 5  # WEBKVM_POLL_LIMIT of this panel
PASSWORD = "served-limits-pass-1"
ADMIN = f"""
from django.contrib.auth import get_user_model
get_user_model().objects.create_superuser("admin", "", "{PASSWORD}")
"""


@dataclass
class Panel:
    port: int
    log: Path
    temp: Path  # TMPDIR of the panel's processes: where Django would spool a body
    pid: int

    def temp_files(self) -> int:
        """Files under TMPDIR the panel's workers hold open (spooled bodies are unlinked but stay open)."""
        count = 0
        for pid in gunicorns(self.pid):
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        count += os.readlink(fd).startswith(str(self.temp))
        return count


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Panel]:
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    data = tmp_path_factory.mktemp("served-limits")
    temp = data / "tmp"
    temp.mkdir()
    env = own_panel_env(data, WEBKVM_MAX_BODY_BYTES=str(LIMIT), WEBKVM_POLL_LIMIT=str(POLLS),
                        WEBKVM_POLL_WINDOW_SECONDS="120", WEBKVM_JOB_WORKERS="1", TMPDIR=str(temp))
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "shell", "-c", ADMIN)
    log = data / "serve.log"
    port, serve = start_serve(env, log, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while len(gunicorns(serve.pid)) < 3 and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(0.2)
        listening = False
        while not listening and time.monotonic() < deadline and serve.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                listening = True
            time.sleep(0.2)
        assert listening and len(gunicorns(serve.pid)) == 3, log.read_text(errors="replace")[-3000:]
        yield Panel(port, log, temp, serve.pid)
    finally:
        stop(serve)
        deadline = time.monotonic() + 20
        while in_session(serve.pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def ask(panel: Panel, method: str, path: str, headers: dict[str, str], body: bytes = b"",
        length: int | None = None) -> http.client.HTTPResponse:
    """One request on a new connection; `length` declares a Content-Length without sending that body."""
    connection = http.client.HTTPConnection("127.0.0.1", panel.port, timeout=30)
    connection.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body) if length is None else length))
    connection.endheaders(body or None)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def streamed(panel: Panel, path: str, headers: dict[str, str], size: int) -> tuple[int, int]:
    """POST `size` bytes chunked (no Content-Length) in 64 KiB pieces, stopping when the panel answers;
    returns (status, temporary files the workers held open above those before, at the most)."""
    before = panel.temp_files()
    grown = 0
    with socket.create_connection(("127.0.0.1", panel.port), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{panel.port}\r\nTransfer-Encoding: chunked\r\n"
                     f"{head}\r\n".encode())
        piece, sent = b"x" * (64 * KIB), 0
        while sent < size and not select.select([sock], [], [], 0)[0]:
            with contextlib.suppress(OSError):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            if sent % MIB == 0:
                time.sleep(0.2)  # let the worker catch up, then look at its files
                grown = max(grown, panel.temp_files() - before)
        if not select.select([sock], [], [], 0)[0]:
            with contextlib.suppress(OSError):
                sock.sendall(b"0\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, grown


@pytest.fixture(scope="module")
def session(panel: Panel) -> dict[str, str]:
    """The admin logged in through the login form: the headers of their requests."""
    page = http.client.HTTPConnection("127.0.0.1", panel.port, timeout=30)
    page.request("GET", "/login/")
    answer = page.getresponse()
    answer.read()
    token = re.search(r"csrftoken=([^;]+)", answer.getheader("Set-Cookie", "")).group(1)  # type: ignore[union-attr]
    form = urlencode({"csrfmiddlewaretoken": token, "username": "admin", "password": PASSWORD}).encode()
    origin = f"http://127.0.0.1:{panel.port}"
    logged_in = ask(panel, "POST", "/login/", {"Cookie": f"csrftoken={token}", "Origin": origin,
                                               "Content-Type": "application/x-www-form-urlencoded"}, form)
    assert logged_in.status == 302 and logged_in.getheader("Location") == "/", "the login form works"
    sessionid = re.search(r"sessionid=([^;]+)", logged_in.getheader("Set-Cookie", "")).group(1)  # type: ignore[union-attr]
    return {"Cookie": f"csrftoken={token}; sessionid={sessionid}", "X-CSRFToken": token, "Origin": origin,
            "token": token}


def test_anonymous_bodies_of_several_mb_are_refused_and_never_spooled(panel: Panel) -> None:
    declared = ask(panel, "POST", "/login/", {}, length=8 * MIB)
    assert declared.status == 413
    status, grown = streamed(panel, "/login/", {}, 8 * MIB)
    assert status == 413 and grown == 0, f"{grown} temporary file(s) appeared"
    assert list(panel.temp.iterdir()) == []


def test_logged_in_bodies_are_capped_by_the_setting(panel: Panel, session: dict[str, str]) -> None:
    headers = {k: v for k, v in session.items() if k != "token"}
    assert ask(panel, "POST", "/hosts/new/", headers, length=LIMIT + 1).status == 413
    status, grown = streamed(panel, "/hosts/new/", headers, 4 * MIB)
    assert status == 413 and grown == 0
    # A form under the limit is served (an invalid host form: the page again, with its errors).
    form = urlencode({"csrfmiddlewaretoken": session["token"], "name": "", "padding": "p" * (LIMIT - 4 * KIB)})
    page = ask(panel, "POST", "/hosts/new/", {**headers, "Content-Type": "application/x-www-form-urlencoded"},
               form.encode())
    assert page.status == 200
    # The streamed upload takes bodies of any size: it is refused here only for the host it names.
    upload = ask(panel, "PUT", "/storage/nohost/pool/images/upload/?name=x.iso", headers, length=64 * MIB)
    assert upload.status == 404


def test_the_polling_limit_is_shared_by_the_workers(panel: Panel, session: dict[str, str]) -> None:
    headers = {"Cookie": session["Cookie"], "Accept": "application/json"}
    statuses = [ask(panel, "GET", "/instances/rows.json", headers).status for _ in range(POLLS)]
    refused = ask(panel, "GET", "/instances/rows.json", headers)
    assert statuses == [200] * POLLS and refused.status == 429
    assert 1 <= int(refused.getheader("Retry-After", "0")) <= 120


def test_websockets_on_unknown_paths_get_404_and_one_log_line(panel: Panel) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    paths = ["/nowhere/", "/console/ws/localhost/ABCDEF01-1111-4111-8111-111111111111/", "/jobs/ws/junk/"]
    for path in paths:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{panel.port}{path}", open_timeout=10)
        assert refused.value.response.status_code == 404
    time.sleep(0.5)
    log = panel.log.read_text(errors="replace")
    assert "Traceback" not in log and " 500 " not in log
    assert len(re.findall(r"WebSocket refused: no such path", log)) == len(paths)
