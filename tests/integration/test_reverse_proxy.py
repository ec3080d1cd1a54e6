"""The panel behind nginx with HTTPS, as docs/reverse-proxy.md ships it: the console connects over wss.

nginx runs on 127.0.0.1 (free port, its own config, self-signed certificate, pid and logs in a
temporary folder) with the site configuration read from docs/reverse-proxy.md. Behind it, the
panel runs as `make run` runs it (migrate, bootstrap, gunicorn with a uvicorn worker) on a
private data dir with WEBKVM_BEHIND_HTTPS_PROXY=true. Chromium logs in over https, opens a lab
VM's console and must see its screen through wss:// on the panel's origin; a WebSocket with a
foreign Origin is refused through the same path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_console import banner_pixels
from tests.conftest import need
from tests.panel_server import free_port, stop

pytestmark = [pytest.mark.lab, pytest.mark.browser]
REPO = Path(__file__).resolve().parent.parent.parent
DOC = REPO / "docs" / "reverse-proxy.md"
ARTIFACTS = REPO / "var" / "test-artifacts"
ADMIN_PASSWORD = "proxy-test-pass-1"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    pytest.fail(f"{what} did not start: {log.read_text(errors='replace')[-2000:]}")


def site_config(panel_port: int, port: int, cert: Path, key: Path) -> str:
    """The documented nginx site, moved to loopback ports and the test's certificate."""
    blocks = re.findall(r"```nginx\n(.*?)```", DOC.read_text(), flags=re.S)
    site = blocks[0]
    edits = [
        (r"\n\s*listen \[::\]:443 ssl http2;", ""),  # loopback only
        (r"listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;"),
        (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{panel_port};"),
        (r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};"),
        (r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};"),
    ]
    for pattern, replacement in edits:
        site, count = re.subn(pattern, replacement, site)
        assert count == 1, f"docs/reverse-proxy.md changed: {pattern!r} not found once"
    assert "0.0.0.0" not in site and "listen 80" not in site
    return site


@pytest.fixture
def panel(lab: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A fresh panel as `make run` starts it (manage.py serve: private Redis, gunicorn with two workers),
    on a private data dir, trusting the proxy's headers."""
    data = Path(tempfile.mkdtemp(prefix="webkvm-rp-panel-"))
    env = {**os.environ, "WEBKVM_DATA_DIR": str(data), "WEBKVM_DATABASE_URL": f"sqlite:///{data / 'webkvm.sqlite3'}",
           "WEBKVM_CREDENTIAL_KEY_FILE": str(data / "credentials.key"), "WEBKVM_ALLOWED_HOSTS": "127.0.0.1",
           "WEBKVM_BEHIND_HTTPS_PROXY": "true", "WEBKVM_ADMIN_USER": "admin", "WEBKVM_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "WEBKVM_DEBUG": "false", "DJANGO_SETTINGS_MODULE": "webkvm.settings"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    manage = [sys.executable, str(REPO / "manage.py")]
    for step in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "--link", "-v0"], ["bootstrap"]):
        done = subprocess.run(manage + step, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"manage.py {step[0]}: {done.stdout}{done.stderr}"
    assert "Added host 'localhost'" in done.stdout, done.stdout  # bootstrap found the lab's libvirtd
    port, log = free_port(), data / "panel.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*manage, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, "the panel", log)
        assert (data / "redis" / "redis.sock").exists(), "manage.py serve did not start its private Redis"
        yield {"port": port, "db": data / "webkvm.sqlite3", "log": log}
    finally:
        stop(process)
        assert not (data / "redis" / "redis.sock").exists(), "Redis outlived the panel"
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def nginx(panel: dict[str, Any]) -> Iterator[dict[str, Any]]:
    need(os.path.exists(NGINX), "nginx is not installed (scripts/install-system-packages.sh installs it)")
    folder = Path(tempfile.mkdtemp(prefix="webkvm-rp-nginx-"))
    folder.chmod(0o755)  # nginx's workers (nobody) create their temp folders here
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    (folder / "webkvm.conf").write_text(site_config(panel["port"], port, cert, key))
    (folder / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 128; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/webkvm.conf;
}}
""")
    check = subprocess.run([NGINX, "-t", "-p", str(folder), "-c", str(folder / "nginx.conf")], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process, "nginx", folder / "error.log")
        yield {"origin": f"https://127.0.0.1:{port}", "port": port, "access_log": folder / "access.log"}
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def ws_through_nginx(url: str, origin: str, cookie: str, protocols: list[str]) -> tuple[bytes | None, Any]:
    """One WebSocket through nginx (certificate not verified: it is self-signed); first message or the close."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with connect(url, origin=origin, ssl=context, additional_headers={"Cookie": cookie}, open_timeout=10,
                 subprotocols=protocols) as ws:
        try:
            return ws.recv(timeout=15), None
        except ConnectionClosed as exc:
            return None, exc.rcvd


def in_chromium(drive: Callable[[Any], None]) -> None:
    """drive(browser) in a thread with its own Playwright: the browser tests' session-wide Playwright keeps an
    event loop in the main thread, where a second sync Playwright refuses to start."""
    need(shutil.which(CHROMIUM) is not None, f"{CHROMIUM} is not installed")
    failures: list[BaseException] = []

    def run() -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                try:
                    drive(chromium)
                finally:
                    chromium.close()
        except BaseException as exc:
            failures.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=240)
    assert not thread.is_alive(), "the browser did not finish"
    if failures:
        raise failures[0]


def test_console_over_wss_through_nginx(lab: dict[str, Any], lab_domain, panel, nginx) -> None:
    dom = lab_domain()
    in_chromium(lambda browser: console_through_nginx(browser, dom.UUIDString(), nginx))
    upgrades = [line for line in nginx["access_log"].read_text().splitlines() if "/console/ws/localhost/" in line]
    assert len(upgrades) == 3 and all('" 101 ' in line for line in upgrades), upgrades
    with contextlib.closing(sqlite3.connect(panel["db"])) as db:
        refused = db.execute("SELECT detail FROM webkvm_auditevent WHERE action = 'console.refused'").fetchall()
        opened = db.execute("SELECT COUNT(*) FROM webkvm_auditevent WHERE action = 'console.open'").fetchone()[0]
    assert opened == 2 and len(refused) == 1 and "foreign origin" in refused[0][0], (opened, refused)


def console_through_nginx(browser: Any, vm_uuid: str, nginx: dict[str, Any]) -> None:
    base = nginx["origin"]
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(20000)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        page.goto(base + "/login/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/hosts/$"))
        session = next(c for c in context.cookies() if c["name"] == "sessionid")
        assert session["secure"], "WEBKVM_BEHIND_HTTPS_PROXY should make the session cookie Secure"

        page.goto(f"{base}/console/localhost/{vm_uuid}/")
        expect(page.locator("#console-status")).to_have_text("connected", timeout=30000)
        deadline = time.monotonic() + 20
        while banner_pixels(page) < 200 and time.monotonic() < deadline:
            time.sleep(0.25)
        lit = banner_pixels(page)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console-through-nginx.png"))
        assert lit >= 200, f"no SeaBIOS banner through nginx ({lit} lit pixels)"
        assert sockets and sockets[0].startswith(f"wss://127.0.0.1:{nginx['port']}/console/ws/localhost/"), sockets

        # The same path refuses another origin, and answers the panel's own with the RFB banner.
        cookie = f"sessionid={session['value']}"
        mint = """async () => {
            const root = document.getElementById('console');
            const answer = await fetch(root.dataset.ticketUrl, {method: 'POST', credentials: 'same-origin',
                                       headers: {'X-CSRFToken': root.dataset.csrf}});
            return JSON.stringify(await answer.json());
        }"""
        for origin, expected in (("https://evil.example", "foreign origin"), (base, b"RFB 003.008\n")):
            answer = json.loads(page.evaluate(mint))
            url = f"wss://127.0.0.1:{nginx['port']}{answer['ws_path']}"
            data, closed = ws_through_nginx(url, origin, cookie, answer["protocols"])
            if isinstance(expected, bytes):
                assert data == expected, (data, closed)
            else:
                assert data is None and closed.code == 4403 and expected in closed.reason, (data, closed)

        # The VM list's live updates come over the same kind of location.
        page.goto(f"{base}/instances/")
        expect(page.locator("html")).to_have_attribute("data-live", "socket", timeout=15000)
        assert any(url.startswith(f"wss://127.0.0.1:{nginx['port']}/live/ws/") for url in sockets), sockets
    finally:
        context.close()


# (case, method, path, Content-Length, send the body?, expected status): bodies are limited per location.
BODIES = [
    ("a form over nginx's limit: 413 from nginx, nothing sent", "POST", "/login/", 8 << 20, False, 413),
    ("an anonymous form under nginx's limit: 413 from the panel", "POST", "/login/", 1 << 20, True, 413),
    # 8 GiB uploads pass nginx unbuffered; the panel refuses the anonymous client before reading them.
    ("the pages' upload, 8 GiB", "PUT", "/storage/localhost/pool/default/upload/?name=x.iso", 8 << 30, False, 302),
    ("the API's upload, 8 GiB", "PUT", "/api/v1/pools/localhost/default/volumes/x.iso/content", 8 << 30, False, 401),
    ("another API URL of the volume, 8 MiB", "PUT", "/api/v1/pools/localhost/default/volumes/x.iso", 8 << 20, False,
     413),
    ("a look-alike of the API's upload URL, 8 MiB", "PUT", "/api/v1/pools/localhost/default/volumes/x.iso/content/x",
     8 << 20, False, 413),
]


def test_nginx_takes_large_bodies_only_for_uploads(panel, nginx) -> None:
    """The documented site limits bodies per location: small everywhere (nginx answers 413 before it stores
    a byte), large for the streamed volume uploads (the pages' and the API's) only; behind it the panel caps
    anonymous bodies itself."""
    import http.client

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def status(method: str, path: str, length: int, body: bytes = b"") -> int:
        connection = http.client.HTTPSConnection("127.0.0.1", nginx["port"], context=context, timeout=30)
        try:
            connection.putrequest(method, path)
            connection.putheader("Content-Length", str(length))
            connection.endheaders(body or None)
            return connection.getresponse().status
        finally:
            connection.close()

    answers = {case: status(method, path, length, b"x" * length if send else b"")
               for case, method, path, length, send, _expected in BODIES}
    assert answers == {case: expected for case, *_, expected in BODIES}
