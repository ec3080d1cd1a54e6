"""The panel as several machines behind a load balancer would run it, on the real lab: two `manage.py serve`
(each 2 panel workers and 1 job worker: 4 gunicorn workers and 2 RQ workers in all) sharing one database
(the embedded SQLite file, or PostgreSQL) and one Redis. On PostgreSQL both servers are reached over TCP on
127.0.0.1, as machines sharing them reach them (on SQLite, one machine: Redis on a unix socket, as `serve`
starts it). A VM's lock holds across processes; a change made with virsh reaches live pages served by either
through one watcher (one lease holder); a serial console viewer on one is refused, then taken over, from the
other; a job started on one is followed on the other, also when the job worker running it is killed with
SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from lab.forwarder import Forwarder
from tests.panel_server import free_port, in_session, stop
from tests.postgres import copy_database, private_postgres
from webkvm.redis_store import PrivateRedis

pytestmark = [pytest.mark.lab]

REPO = Path(__file__).resolve().parents[2]
SETUP = """
import json, os
from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from hosts.models import Host
spec = json.loads(os.environ["PROCESSES_TEST"])
user = get_user_model().objects.create_superuser("two-admin", "", "two-processes-password-1")
other = get_user_model().objects.create_superuser("two-bob", "", None)  # no password to hash: a session only
Host.objects.create(name="slow", transport="tcp", hostname="127.0.0.1", port=spec["slow_port"], insecure_tcp=True)
Host.objects.create(name="lab", transport="tcp", hostname="127.0.0.1", port=16509, insecure_tcp=True)
if spec["lab2"]:
    Host.objects.create(name="lab2", transport="tcp", hostname=spec["lab2"], port=16509, insecure_tcp=True)
keys = []
for who in (user, user, other):
    store = SessionStore()
    store[SESSION_KEY] = str(who.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = who.get_session_auth_hash()
    store.create()
    keys.append(store.session_key)
print("SESSIONS " + " ".join(keys))
"""


class Browser:
    """One logged-in browser against one process: cookies (session, CSRF, messages), one connection."""

    def __init__(self, port: int, session_key: str) -> None:
        self.port = port
        self.csrf = secrets.token_hex(16)  # 32 characters: Django accepts the unmasked secret
        self.cookies = {"sessionid": session_key, "csrftoken": self.csrf}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        body = "&".join(f"{k}={v}" for k, v in {**(form or {}), "csrfmiddlewaretoken": self.csrf}.items()) \
            if method == "POST" else None
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        text = response.read().decode()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";")[0]
        conn.close()
        return response.status, response.getheader("Location") or "", text

    def post_and_follow(self, path: str, form: dict[str, str]) -> list[str]:
        status, location, _ = self.request("POST", path, form)
        assert status == 302, status
        _, _, page = self.request("GET", location)
        return re.findall(r'class="msg [^"]*" role="status">([^<]*)<', page)


# Several machines behind a load balancer share PostgreSQL: every test runs on it. Several processes of one
# machine may share the embedded SQLite file: the lock and a job followed from the other process run on it too.
ON_BOTH = pytest.mark.parametrize("two_panels", ["sqlite", "postgresql"], indirect=True)
ON_POSTGRESQL = pytest.mark.parametrize("two_panels", ["postgresql"], indirect=True)


class MigratedDatabases:
    """Each kind of database migrated once per module; every test runs on a copy of it (a migration run
    costs seconds, a copy a fraction of one)."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        self.templates: dict[str, str] = {}
        self.copies = 0

    def _migrate(self, env: dict[str, str]) -> None:
        subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "--noinput", "-v0"], cwd=REPO,
                       env={**_clean_env(), **env}, check=True, timeout=120)

    def for_test(self, kind: str, data: Path) -> dict[str, str]:
        """The environment that puts a test's panels on a fresh copy of a migrated database of `kind`."""
        self.copies += 1
        if kind == "postgresql":
            if kind not in self.templates:  # over TCP, with a role and password, as another machine logs in
                self.templates[kind] = self.stack.enter_context(private_postgres(port=free_port()))
                self._migrate({"WEBKVM_DATABASE_URL": self.templates[kind],
                               "WEBKVM_DATA_DIR": self.stack.enter_context(tempfile.TemporaryDirectory())})
            return {"WEBKVM_DATABASE_URL": copy_database(self.templates[kind], f"webkvm_{self.copies}")}
        if kind not in self.templates:
            self.templates[kind] = self.stack.enter_context(tempfile.TemporaryDirectory(prefix="webkvm-template-"))
            self._migrate({"WEBKVM_DATA_DIR": self.templates[kind]})
        data.mkdir(mode=0o700, exist_ok=True)
        for name in ("webkvm.sqlite3", "webkvm.sqlite3-wal"):
            if (Path(self.templates[kind]) / name).exists():
                shutil.copyfile(Path(self.templates[kind]) / name, data / name)
                (data / name).chmod(0o600)
        return {}


@pytest.fixture(scope="module")
def migrated_databases() -> Iterator[MigratedDatabases]:
    with contextlib.ExitStack() as stack:
        yield MigratedDatabases(stack)


@pytest.fixture
def two_panels(request: pytest.FixtureRequest, lab: dict[str, Any],
               migrated_databases: MigratedDatabases) -> Iterator[dict[str, Any]]:
    """Two `manage.py serve` (2 panel workers, 1 job worker each) on one database (the embedded SQLite file,
    or a private PostgreSQL) and one private Redis, as two machines behind a load balancer. Two sessions of
    the admin "two-admin" (`sessions`) and one of another admin, "two-bob" (`other_session`)."""
    yield from _two_panels(lab, migrated_databases, request.param)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WEBKVM_") and k != "DJANGO_SETTINGS_MODULE"}


def _two_panels(lab: dict[str, Any], databases: MigratedDatabases, kind: str) -> Iterator[dict[str, Any]]:
    data = Path(tempfile.mkdtemp(prefix="webkvm-two-"))
    # Machines sharing a Redis reach it over TCP; processes of one machine (SQLite) share serve's unix socket.
    store = PrivateRedis(data / "redis", port=free_port() if kind == "postgresql" else None)
    link = Forwarder(("127.0.0.1", 16509), rtt_ms=300).start()  # keeps an action running while the other arrives
    env = _clean_env()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        env.update({"WEBKVM_DATA_DIR": str(data), "WEBKVM_REDIS_URL": store.start(),
                    "WEBKVM_LIVE_INTERVAL_MS": "30000"})  # what arrives in time was pushed by an event
        env.update(databases.for_test(kind, data))
        manage = [sys.executable, str(REPO / "manage.py")]
        ports = [free_port(), free_port()]
        for port in ports:  # both start while the shell below adds the users and hosts (each takes seconds)
            log = (data / f"panel-{port}.log").open("wb")
            processes.append(subprocess.Popen(
                [*manage, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--job-workers", "1"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        done = subprocess.run([*manage, "shell", "-c", SETUP], cwd=REPO, capture_output=True, text=True, timeout=60,
                              env={**env, "PROCESSES_TEST": json.dumps({
                                  "slow_port": link.port, "lab2": (lab.get("host2") or {}).get("address", "")})})
        assert done.returncode == 0, done.stderr
        *sessions, other_session = done.stdout.split("SESSIONS ")[1].split()
        for port, process in zip(ports, processes, strict=True):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert process.poll() is None, (data / f"panel-{port}.log").read_text()[-2000:]
                try:
                    Browser(port, sessions[0]).request("GET", "/login/")
                    break
                except OSError:
                    time.sleep(0.2)
            else:
                pytest.fail(f"the panel on port {port} did not answer")
        yield {"ports": ports, "sessions": sessions, "other_session": other_session, "redis": store.url,
               "database": env.get("WEBKVM_DATABASE_URL", ""), "link": link, "processes": processes, "data": data}
    finally:
        for log_file in sorted(data.glob("panel-*.log")):  # shown by pytest for a failed test only
            print(f"--- {log_file.name}\n{log_file.read_text(errors='replace')[-6000:]}")
        for process in processes:  # both stop at once: each waits for its workers' graceful stop
            if process.poll() is None:
                process.terminate()
        for process in processes:
            stop(process)
            for pid in in_session(process.pid):  # a job worker's work horse killed mid-test leaves nothing
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        link.stop()
        store.stop()
        subprocess.run(["rm", "-rf", str(data)], check=False)


@ON_BOTH
def test_two_processes_one_vm_one_action_at_a_time(two_panels: dict[str, Any], lab_domain) -> None:
    dom = lab_domain()
    a, b = (Browser(port, key) for port, key in zip(two_panels["ports"], two_panels["sessions"], strict=True))
    path = f"/instances/slow/{dom.UUIDString()}/action/suspend/"
    for browser in (a, b):  # each process opens its connection to the slow host first (a dozen round trips)
        browser.request("GET", f"/instances/slow/{dom.UUIDString()}/")
    words: dict[str, list[str]] = {}
    start = threading.Barrier(2)

    def act(name: str, browser: Browser) -> None:
        start.wait()
        words[name] = browser.post_and_follow(path, {"confirm": "yes"})

    threads = [threading.Thread(target=act, args=item) for item in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    said = [" ".join(found) for found in words.values()]
    assert dom.state()[0] == 3, said  # paused, by exactly one of them
    assert sorted("pause: done" in w.lower() for w in said) == [False, True], said
    assert any("still running" in w for w in said), said


@ON_POSTGRESQL
def test_a_virsh_change_reaches_pages_on_both_processes_through_one_watcher(two_panels: dict[str, Any],
                                                                           lab_domain) -> None:
    from websockets.asyncio.client import connect

    dom = lab_domain()
    key = f"lab/{dom.UUIDString()}"

    async def follow(port: int, session: str, frames: list[dict[str, Any]], ready: asyncio.Event) -> None:
        async with connect(f"ws://127.0.0.1:{port}/live/ws/?host=lab", origin=f"http://127.0.0.1:{port}",
                           additional_headers={"Cookie": f"sessionid={session}"}, open_timeout=20) as ws:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
            ready.set()
            while True:
                frames.append(json.loads(await ws.recv()))

    async def run() -> tuple[list[list[dict[str, Any]]], float]:
        pages: list[list[dict[str, Any]]] = [[], []]
        ready = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(follow(port, session, pages[i], ready[i]))
                 for i, (port, session) in enumerate(zip(two_panels["ports"], two_panels["sessions"], strict=True))]
        both_ready = asyncio.ensure_future(asyncio.gather(*(r.wait() for r in ready)))
        # A follower that fails (refused, dropped, no first frame in time) says why, not a bare timeout.
        finished, _ = await asyncio.wait([both_ready, *tasks], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task in finished:
                task.result()
        assert both_ready in finished, f"no first frame within 30 s: {pages}"
        await asyncio.to_thread(dom.suspend)
        changed = time.monotonic()
        while time.monotonic() - changed < 1.5 and not all(
                any(f.get("vms", {}).get(key, {}).get("state") == "paused" for f in frames) for frames in pages):
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        return pages, time.monotonic() - changed

    pages, waited = asyncio.run(run())
    for frames in pages:
        assert frames[0]["full"] and frames[0]["vms"][key]["state"] == "running", frames[0]
        assert any(f.get("vms", {}).get(key, {}).get("state") == "paused" for f in frames), (waited, frames)
    store = redis.Redis.from_url(two_panels["redis"])
    holders = [k for k in store.keys("webkvm:lease:live-watcher:*")]
    assert len(holders) == 1, holders  # one watcher for the host, whichever process runs it


@ON_POSTGRESQL  # several machines, Redis over TCP; one machine's case: tests/unit/test_serial_across_processes.py
def test_a_serial_console_held_on_one_process_is_refused_then_taken_over_on_the_other(two_panels: dict[str, Any],
                                                                                      lab_domain) -> None:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed

    vm = lab_domain().UUIDString()  # its serial port is a pty: the console libvirt opens
    admin, bob = Browser(two_panels["ports"][0], two_panels["sessions"][0]), \
        Browser(two_panels["ports"][1], two_panels["other_session"])

    async def viewer(browser: Browser, take_over: bool = False) -> ClientConnection:
        """The serial page's WebSocket: a ticket minted for its session, offered as a subprotocol."""
        status, _, text = await asyncio.to_thread(browser.request, "POST", f"/console/lab/{vm}/serial/ticket/")
        assert status == 200, text[:500]
        answer = json.loads(text)
        return await connect(f"ws://127.0.0.1:{browser.port}{answer['ws_path']}" + ("?takeover=1" if take_over else ""),
                             subprotocols=answer["protocols"], origin=f"http://127.0.0.1:{browser.port}",
                             additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid']}"},
                             open_timeout=20)

    async def closing(ws: ClientConnection) -> tuple[int | None, str | None]:
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(20):
                async for _output in ws:  # whatever the console printed before the close
                    pass
        return ws.close_code, ws.close_reason

    async def run() -> tuple[tuple[int | None, str | None], ...]:
        held = await viewer(admin)  # on process a
        refused = await closing(await viewer(bob))  # on process b: a's holder is in Redis
        taker = await viewer(bob, take_over=True)
        taken = await closing(held)  # told by b through the channel layer
        still = taker.close_code, taker.close_reason
        await taker.close()
        return refused, taken, still

    refused, taken, still = asyncio.run(run())
    assert refused[0] == 4409 and (refused[1] or "").startswith("in use by two-admin since "), refused
    assert taken == (4001, "taken over by two-bob"), taken
    assert still == (None, None), still  # b's viewer holds the console now

    def events(action: str, user: str) -> list[dict[str, Any]]:
        status, _, text = admin.request("GET", f"/api/v1/audit/?action={action}&user={user}")
        assert status == 200, text[:500]
        return [e for e in json.loads(text)["results"] if e["action"] == action and e["object_name"] == vm]

    took = events("console.takeover", "two-bob")
    assert len(took) == 1 and took[0]["detail"].startswith("serial console taken over from two-admin since "), took
    assert _until("a's session to record why it closed", lambda: [
        e for e in events("console.close", "two-admin") if "taken over by two-bob" in e["detail"]], 10)


def _job_horses(two_panels: dict[str, Any]) -> list[int]:
    """The processes of the job worker that runs a job now: RQ's worker and the work horse it forked."""
    def rq(pid: int) -> bool:
        with contextlib.suppress(OSError):
            return b"rqworker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        return False

    for process in two_panels["processes"]:
        workers = [pid for pid in in_session(process.pid) if rq(pid)]
        if len(workers) == 2:
            return workers
    return []


def _until(what: str, check: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what}")


def _clone_on(a: Browser, pool: str, source: str, name: str) -> str:
    status, location, page = a.request("POST", f"/storage/lab/pool/{pool}/volume/{source}/clone/",
                                       {"name": name, "format": "raw"})
    assert status == 302 and re.fullmatch(r"/jobs/\d+/", location), (status, location, page[:2000])
    return location


@ON_BOTH
def test_a_job_started_on_one_machine_is_followed_on_the_other(two_panels: dict[str, Any], test_pool) -> None:
    a, b = (Browser(port, key) for port, key in zip(two_panels["ports"], two_panels["sessions"], strict=True))
    test_pool.createXML("<volume><name>src.img</name><capacity unit='MiB'>64</capacity>"
                        "<target><format type='raw'/></target></volume>", 0)
    job = _clone_on(a, test_pool.name(), "src.img", "copy.img")
    status, _, page = b.request("GET", job)
    assert status == 200 and 'id="job"' in page  # the job page, from the other machine's process

    def ended() -> dict[str, Any] | None:
        code, _, text = b.request("GET", job.rstrip("/") + ".json")
        state = json.loads(text) if code == 200 else {}
        return state if state and not state["active"] else None

    state = _until("the copy to end", ended, 120)
    assert state["state"] == "done", state
    test_pool.refresh(0)
    assert sorted(test_pool.listVolumes()) == ["copy.img", "src.img"]
    assert json.loads(a.request("GET", job.rstrip("/") + ".json")[2]) == state  # one truth on both


@ON_POSTGRESQL
def test_a_job_worker_killed_mid_copy_ends_the_job_truthfully_on_every_machine(two_panels: dict[str, Any],
                                                                               test_pool) -> None:
    a, b = (Browser(port, key) for port, key in zip(two_panels["ports"], two_panels["sessions"], strict=True))
    path = Path(test_pool.XMLDesc(0).split("<path>")[1].split("</path>")[0])
    # 1 GiB that does not compress or skip: libvirt's own copy loop takes a few seconds for it.
    subprocess.run(["dd", "if=/dev/urandom", f"of={path / 'src.img'}", "bs=4M", "count=256", "status=none"],
                   check=True, timeout=120)
    test_pool.refresh(0)
    job = _clone_on(a, test_pool.name(), "src.img", "copy.img")
    status_path = job.rstrip("/") + ".json"
    _until("the copy to begin", lambda: json.loads(b.request("GET", status_path)[2])["phase"] == "copying"
           and (path / "copy.img").exists(), 60)
    doomed = _until("the job worker running it", lambda: _job_horses(two_panels), 10)
    for pid in doomed:
        os.kill(pid, signal.SIGKILL)

    def ended() -> dict[str, Any] | None:
        state = json.loads(b.request("GET", status_path)[2])
        return state if not state["active"] else None

    state = _until("the job to be reconciled", ended, 90)
    assert state["state"] == "interrupted", state
    assert state["result"].endswith("The partial copy copy.img was removed."), state["result"]
    assert json.loads(a.request("GET", status_path)[2]) == state
    test_pool.refresh(0)
    assert test_pool.listVolumes() == ["src.img"] and sorted(p.name for p in path.iterdir()) == ["src.img"]


@ON_POSTGRESQL
def test_a_job_worker_killed_mid_migration_leaves_the_vm_on_exactly_one_host(two_panels: dict[str, Any],
                                                                             lab: dict[str, Any], lab2: dict[str, Any],
                                                                             lab_domain) -> None:
    import libvirt

    from tests.conftest import need

    a, b = (Browser(port, key) for port, key in zip(two_panels["ports"], two_panels["sessions"], strict=True))
    one, two = libvirt.open(lab["unix_uri"]), libvirt.open(lab2["uri"])
    need(two.getFreeMemory() > 2200 * 1024 * 1024, "host 2 has less than 2.2 GiB free")
    # 2 GiB of guest memory at 1 MiB/s: the migration runs far longer than the test needs to kill its worker.
    dom = lab_domain(memory_mib=2048)
    vm = dom.UUIDString()
    try:
        status, job, page = a.request("POST", f"/instances/lab/{vm}/migrate/", {"target": "lab2", "bandwidth_mib": "1"})
        assert status == 302 and re.fullmatch(r"/jobs/\d+/", job), (status, job, page[:3000])
        status_path = job.rstrip("/") + ".json"
        _until("the memory copy to begin", lambda: json.loads(b.request("GET", status_path)[2])["done"] > 0, 60)
        # The progress page, served by the machine that did not start the migration.
        status, _, page = b.request("GET", job)
        assert status == 200 and 'data-state="running" data-active="true"' in page, page[:3000]
        assert re.search(r'<span data-job="phase" class="hint">copying memory( at [^<]+/s)?</span>', page), page[:3000]
        assert re.search(r'<progress data-job="bar" max="100" value="[0-9.]+">', page), page[:3000]
        assert re.search(r'<span data-job="amount">[0-9.]+ (bytes|[KMG]iB) of [0-9.]+ GiB</span>', page), page[:3000]
        doomed = _until("the job worker running it", lambda: _job_horses(two_panels), 10)
        for pid in doomed:
            os.kill(pid, signal.SIGKILL)

        def ended() -> dict[str, Any] | None:
            state = json.loads(b.request("GET", status_path)[2])
            return state if not state["active"] else None

        state = _until("the job to be settled from libvirt", ended, 120)
        assert json.loads(a.request("GET", status_path)[2]) == state  # the same truth on every machine
        for browser in (a, b):  # and on the job page of each
            assert f'data-state="{state["state"]}" data-active="false"' in browser.request("GET", job)[2]

        def where(conn: libvirt.virConnect) -> str:
            try:
                return "running" if conn.lookupByUUIDString(vm).isActive() else "shut off"
            except libvirt.libvirtError:
                return "absent"

        places = _until("libvirt to settle the VM", lambda: (p := (where(one), where(two))) in (
            ("running", "absent"), ("running", "shut off"), ("absent", "running"), ("shut off", "running")) and p, 30)
        assert places.count("running") == 1, places  # on exactly one host
        name = dom.name()
        if places[0] == "running":
            assert state["state"] == "interrupted", state
            assert f"{name} is running on lab; nothing was moved." in state["result"], state
        else:
            assert state["state"] == "done" and f"{name} is running on lab2." in state["result"], state
        # The VM's lock was let go: another change of it is not "busy".
        said = a.post_and_follow(f"/instances/{'lab' if places[0] == 'running' else 'lab2'}/{vm}/action/suspend/",
                                 {})
        assert not any("still running" in words for words in said), said
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            two.lookupByUUIDString(vm).destroy()
        with contextlib.suppress(libvirt.libvirtError):
            two.lookupByUUIDString(vm).undefine()
        one.close()
        two.close()
