"""Concurrency: logged-in sessions and open live pages on one panel process, 500 VMs on 1 and 5 hosts.

The panel runs as `make run` serves it (gunicorn, one uvicorn worker) on a private data dir prepared by
`manage.py` subprocesses; each host is a 20 ms lab/forwarder.py Forwarder counting libvirt calls. Sessions
are http.client threads (one keep-alive connection each), live pages `websockets` clients. See bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import libvirt

from bench import domains
from lab.forwarder import Forwarder

REPO = Path(__file__).resolve().parent.parent
HOST_COUNTS = (1, 5)
SESSIONS = (1, 10, 50)
LIVE_PAGES = (1, 50)
PAGES = ("/instances/", "/instances/host/bench-1/")  # fleet page, one host's page: alternately
LOGIN_PATH = "/login/"  # settings.LOGIN_URL is the URL name "login"
LIVE_PATH = "/live/ws/?scope=fleet"
USER, PASSWORD = "bench-concurrency", "bench-concurrency-password-1"
WRONG, BUSY = b"unreachable:", b"busy:"  # the hosts are healthy: every "unreachable:" is wrong
CALLS_FACTOR, P95_FACTOR = 2.0, 3.0
PAUSE_S = 1.1  # between windows: reads the panel keeps for a second do not leak into the next one

# Run by `manage.py shell -c` in the panel's environment: the admin (once) and exactly bench-1..N.
SETUP = """
import json, os
from django.contrib.auth import get_user_model
from hosts.models import Host
spec = json.loads(os.environ["BENCH_CONCURRENCY"])
User = get_user_model()
if not User.objects.filter(username=spec["user"]).exists():
    User.objects.create_superuser(spec["user"], "", spec["password"])
names = [f"bench-{i}" for i in range(1, len(spec["ports"]) + 1)]
Host.objects.exclude(name__in=names).delete()
for name, port in zip(names, spec["ports"]):
    Host.objects.update_or_create(name=name, defaults={
        "transport": "tcp", "hostname": "127.0.0.1", "port": port, "path": "system", "insecure_tcp": True})
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def panel_env(data_dir: Path) -> dict[str, str]:
    """The bench's environment without its own panel settings, pointed at a private data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBKVM_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(WEBKVM_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="webkvm.settings")
    return env


def manage(env: dict[str, str], *args: str, extra: dict[str, str] | None = None) -> None:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env={**env, **(extra or {})},
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"manage.py {args[0]} failed: {(done.stderr or done.stdout)[-2000:]}")


class Server:
    """gunicorn + one uvicorn worker on 127.0.0.1:port, as `make run` serves the panel."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.log_path, self.log = log, log.open("ab")
        self.proc = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "gunicorn"), "webkvm.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
             "--bind", f"127.0.0.1:{port}", "--workers", "1", "--graceful-timeout", "5"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                probe.request("GET", LOGIN_PATH)
                answered = probe.getresponse().status == 200
                probe.close()
                if answered:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the panel did not answer: {self.tail()}")

    def meter(self) -> tuple[float, float]:
        """CPU seconds so far of the panel (gunicorn's master and worker) and of this process (clients, forwarders)."""
        ticks, pid = 0, self.proc.pid
        with contextlib.suppress(OSError):
            for each in [pid, *Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]:
                fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK"), time.process_time()

    def tail(self, chars: int = 1500) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


class Session:
    """One browser: its own cookie jar (session + CSRF cookie) and one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.cookies: dict[str, str] = {}
        self.port, self.conn = port, http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.request("GET", LOGIN_PATH)
        body = urlencode({"username": USER, "password": PASSWORD,
                          "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")})
        status, _ = self.request("POST", LOGIN_PATH, body, {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login failed: HTTP {status}")

    def reconnect(self, port: int) -> None:
        self.conn.close()
        self.port, self.conn = port, http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    @property
    def cookie(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        self.conn.request(method, path, body, {**(headers or {}), "Cookie": self.cookie})
        response = self.conn.getresponse()
        data = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";")[0]
        return response.status, data


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def _per_host_s(calls: list[int], seconds: float) -> float:
    return round(sum(calls) / len(calls) / seconds, 2)


Meter = Callable[[], tuple[float, float]]


def _cpu(before: tuple[float, float], after: tuple[float, float], seconds: float) -> dict[str, float]:
    """Percent of one CPU used by the panel and by the bench process over the window."""
    return {name: round((b - a) / seconds * 100, 1) if seconds else 0.0
            for name, a, b in zip(("panel", "bench"), before, after, strict=True)}


def load(sessions: list[Session], seconds: float, links: list[Forwarder], meter: Meter) -> dict[str, Any]:
    """Every session loads the two pages in turn for `seconds`; requests in flight at the end finish."""
    for session in sessions:
        session.reconnect(session.port)
    samples: list[tuple[str, float, int, bool, bool]] = []  # path, ms, status, said unreachable, said busy
    errors: list[str] = []
    lock, go = threading.Lock(), threading.Event()
    deadline = [0.0]

    def browse(index: int, session: Session) -> None:
        turn = index  # half the sessions start on the fleet page, half on the host page
        go.wait()
        while time.monotonic() < deadline[0]:
            path = PAGES[turn % 2]
            turn += 1
            began = time.perf_counter()
            try:
                status, body = session.request("GET", path)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                session.reconnect(session.port)
                continue
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                samples.append((path, elapsed, status, WRONG in body, BUSY in body))

    threads = [threading.Thread(target=browse, args=(i, s), daemon=True) for i, s in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for fwd in links:
        fwd.reset_calls()
    cpu, began = meter(), time.monotonic()
    deadline[0] = began + seconds
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    calls = [fwd.take_calls() for fwd in links]
    cpu_percent = _cpu(cpu, meter(), elapsed)
    times = [ms for _, ms, *_ in samples]
    statuses = Counter(str(status) for _, _, status, *_ in samples)
    return {
        "kind": "sessions", "hosts": len(links), "clients": len(sessions), "seconds": round(elapsed, 2),
        "requests": len(samples), "requests_per_s": round(len(samples) / elapsed, 2),
        "median_ms": round(statistics.median(times), 1) if times else None,
        "p95_ms": round(_p95(times), 1) if times else None,
        "median_ms_by_page": {path: round(statistics.median([ms for p, ms, *_ in samples if p == path]), 1)
                              for path in PAGES if any(p == path for p, *_ in samples)},
        "unreachable_answers": sum(1 for *_, wrong, _ in samples if wrong),
        "busy_answers": sum(1 for *_, busy in samples if busy),
        "status_5xx": sum(n for status, n in statuses.items() if status.startswith("5")),
        "statuses": dict(statuses), "connection_errors": len(errors), "errors_sample": sorted(set(errors))[:3],
        "calls_by_host": calls, "calls_per_host_per_s": _per_host_s(calls, elapsed), "cpu_percent": cpu_percent,
    }


async def _live(cookies: list[str], port: int, seconds: float, links: list[Forwarder],
                meter: Meter) -> dict[str, Any]:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Origin

    url, origin = f"ws://127.0.0.1:{port}{LIVE_PATH}", Origin(f"http://127.0.0.1:{port}")
    failures: Counter[str] = Counter()
    closing, wrong = [False], [0]

    async def open_page(cookie: str) -> ClientConnection | None:
        try:
            return await connect(url, origin=origin, additional_headers={"Cookie": cookie}, proxy=None,
                                 open_timeout=60, max_size=None)
        except Exception as exc:  # 404/403/refused while the endpoint is missing: recorded, the section goes on
            failures[f"{type(exc).__name__}: {exc}"[:300]] += 1
            return None

    async def read(index: int, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                counts[index] += 1
                with contextlib.suppress(ValueError, AttributeError):
                    said = json.loads(raw).get("unreachable") or {}
                    wrong[0] += sum(1 for words in said.values() if str(words).startswith("unreachable:"))
        except ConnectionClosed as exc:
            if not closing[0]:
                failures[f"closed by the panel: {exc}"[:300]] += 1

    sockets = [ws for ws in await asyncio.gather(*map(open_page, cookies)) if ws is not None]
    counts = [0] * len(sockets)
    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    calls: list[int] = []
    elapsed, before, after, cpu_percent = 0.0, list(counts), list(counts), {}
    if sockets:
        for fwd in links:
            fwd.reset_calls()
        before, cpu, began = list(counts), meter(), time.monotonic()
        await asyncio.sleep(seconds)
        elapsed, after = time.monotonic() - began, list(counts)
        calls = [fwd.take_calls() for fwd in links]
        cpu_percent = _cpu(cpu, meter(), elapsed)
    closing[0] = True
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.gather(*readers, return_exceptions=True)
    window = [a - b for a, b in zip(after, before, strict=True)]
    return {
        "kind": "live", "hosts": len(links), "clients": len(cookies), "connected": len(sockets),
        "seconds": round(elapsed, 2), "failures": dict(failures),
        "messages_per_client": ({"min": min(window), "median": statistics.median(window), "max": max(window)}
                                if window else None),
        "messages_total": sum(counts), "unreachable_in_messages": wrong[0],
        "calls_by_host": calls, "calls_per_host_per_s": _per_host_s(calls, elapsed) if calls else None,
        "cpu_percent": cpu_percent,
    }


def live(sessions: list[Session], port: int, seconds: float, links: list[Forwarder], meter: Meter) -> dict[str, Any]:
    """One live page per session (its cookie, the panel's Origin), open for `seconds`, nothing else loading."""
    return asyncio.run(_live([s.cookie for s in sessions], port, seconds, links, meter))


def _target(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "pass": passed, "detail": detail}


def _ratio_target(name: str, rows: dict[tuple[int, int], dict[str, Any]], low: int, high: int,
                  factor: float) -> dict[str, Any]:
    verdicts, details = [], []
    for hosts in HOST_COUNTS:
        one, many = rows.get((hosts, low)), rows.get((hosts, high))
        if not one or not many or one["calls_per_host_per_s"] is None or many["calls_per_host_per_s"] is None:
            failed = "; ".join(sorted({text for r in (one, many) if r for text in r.get("failures", {})}))
            verdicts.append(False)
            details.append(f"x{hosts}: not measured{f' ({failed})' if failed else ''}")
            continue
        a, b = one["calls_per_host_per_s"], many["calls_per_host_per_s"]
        verdicts.append(b <= factor * a)
        details.append(f"x{hosts}: {b} vs {a} calls/host/s ({b / a:.2f}x)" if a else f"x{hosts}: {b} vs {a}")
    return _target(name, bool(verdicts) and all(verdicts), "; ".join(details))


def targets(loads: list[dict[str, Any]], lives: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["hosts"], r["clients"]): r for r in loads}
    found = [_target("no answer says a healthy host is unreachable",
                     bool(loads) and all(r["unreachable_answers"] == 0 for r in loads),
                     "; ".join(f"x{r['hosts']} {_row(r)[1]}: {r['unreachable_answers']}" for r in loads))]
    found.append(_ratio_target(f"libvirt calls/host/s at {SESSIONS[-1]} sessions at most {CALLS_FACTOR:g}x "
                               "those at 1 session", by, 1, SESSIONS[-1], CALLS_FACTOR))
    verdicts, details = [], []
    for hosts in HOST_COUNTS:
        one, ten = by.get((hosts, 1)), by.get((hosts, 10))
        limit = P95_FACTOR * one["median_ms"] if one and one["median_ms"] is not None else float("nan")
        verdicts.append(bool(ten and ten["p95_ms"] is not None and ten["p95_ms"] <= limit))
        details.append(f"x{hosts}: p95 {ten['p95_ms'] if ten else '-'} ms vs limit {limit:.1f} ms")
    found.append(_target(f"p95 at 10 sessions within {P95_FACTOR:g}x the 1-session median",
                         bool(verdicts) and all(verdicts), "; ".join(details)))
    bad = [f"x{r['hosts']} {_row(r)[1]}: {r['status_5xx']} 5xx, {r['connection_errors']} dropped"
           for r in loads if r["status_5xx"] or r["connection_errors"]]
    found.append(_target("no 5xx answers (nor dropped connections)", bool(loads) and not bad,
                         "; ".join(bad) or f"{sum(r['requests'] for r in loads)} answers"))
    found.append(_ratio_target(f"libvirt calls/host/s with {LIVE_PAGES[-1]} live pages at most {CALLS_FACTOR:g}x "
                               "those with 1", {(r["hosts"], r["clients"]): r for r in lives}, 1, LIVE_PAGES[-1],
                               CALLS_FACTOR))
    return found


def run(lab: dict[str, Any], admin: libvirt.virConnect, seconds: float = 30.0, vms: int = 500,
        rtt_ms: float = 20.0) -> dict[str, Any]:
    """Defines the VMs (the caller removes them: domains.remove_all), measures, stops what it started."""
    began = time.monotonic()
    prepare = domains.ensure_defined(admin, vms, lab["domain_type"])
    domains_per_host = len(admin.listAllDomains(0))
    print(f"  {vms} lab-bench VMs defined, {domains.RUNNING} running ({prepare:.1f} s)", flush=True)
    tcp = urlsplit(lab["tcp_uri"])
    work = Path(tempfile.mkdtemp(prefix="webkvm-bench-concurrency-"))
    env, port = panel_env(work), _free_port()
    forwarders: list[Forwarder] = []
    sessions: list[Session] = []
    loads: list[dict[str, Any]] = []
    lives: list[dict[str, Any]] = []
    login_s, unparsed, log_tail, tracebacks = 0.0, 0, "", 0
    try:
        forwarders = [Forwarder((tcp.hostname or "127.0.0.1", tcp.port or 16509), rtt_ms=rtt_ms).start()
                      for _ in range(max(HOST_COUNTS))]
        (work / "static").mkdir()  # STATIC_ROOT: whitenoise warns when it is missing
        manage(env, "migrate", "--no-input", "--verbosity", "0")
        for hosts in HOST_COUNTS:
            links = forwarders[:hosts]
            spec = {"user": USER, "password": PASSWORD, "ports": [fwd.port for fwd in links]}
            manage(env, "shell", "-c", SETUP, extra={"BENCH_CONCURRENCY": json.dumps(spec)})
            server = Server(env, port, work / "panel.log")  # a fresh process per host count
            try:
                if not sessions:
                    started = time.monotonic()
                    sessions = [Session(port) for _ in range(max(SESSIONS))]
                    login_s = time.monotonic() - started
                sessions[0].reconnect(port)  # idle keep-alive connections are closed by the server after 5 s
                for path in PAGES * 2:  # warm-up: the panel opens its connections
                    sessions[0].request("GET", path)
                for count in SESSIONS:
                    time.sleep(PAUSE_S)
                    loads.append(load(sessions[:count], seconds, links, server.meter))
                    _say(loads[-1])
                for count in LIVE_PAGES:
                    time.sleep(PAUSE_S)
                    lives.append(live(sessions[:count], port, seconds, links, server.meter))
                    _say(lives[-1])
            finally:
                server.stop()
                tracebacks = server.tail(1 << 30).count("Traceback")  # the log holds both servers' output
                if any(r["status_5xx"] for r in loads):
                    log_tail = server.tail()
    finally:
        for session in sessions:
            session.conn.close()
        for fwd in forwarders:
            unparsed += fwd.framing_lost
            fwd.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "bench": "concurrency",
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {"vms": vms, "running_vms": domains.RUNNING, "host_counts": list(HOST_COUNTS),
                   "sessions": list(SESSIONS), "live_pages": list(LIVE_PAGES), "window_seconds": seconds,
                   "rtt_ms": rtt_ms, "pages": list(PAGES), "live_url": LIVE_PATH,
                   "server": "gunicorn webkvm.asgi:application -k uvicorn_worker.UvicornWorker --workers 1"},
        "environment": {"domains_per_host": domains_per_host, "prepare_seconds": round(prepare, 1),
                        "login_seconds": round(login_s, 1), "unparsed_connections": unparsed,
                        "panel_log_tracebacks": tracebacks},
        "loads": loads,
        "live": lives,
        "targets": targets(loads, lives),
        **({"panel_log_tail": log_tail} if log_tail else {}),
        "run_seconds": round(time.monotonic() - began, 1),
    }


COLUMNS = ("hosts", "load", "req/s", "median ms", "p95 ms", "unreach", "busy", "5xx", "msgs/client", "calls/host/s",
           "panel CPU%", "bench CPU%")


def _row(r: dict[str, Any]) -> tuple[Any, ...]:
    n, cpu = r["clients"], r["cpu_percent"]
    if r["kind"] == "sessions":
        return (r["hosts"], f"{n} session{'s' * (n != 1)}", r["requests_per_s"], r["median_ms"], r["p95_ms"],
                r["unreachable_answers"], r["busy_answers"], r["status_5xx"], None, r["calls_per_host_per_s"],
                cpu["panel"], cpu["bench"])
    got = r["messages_per_client"]
    return (r["hosts"], f"{n} live page{'s' * (n != 1)} ({r['connected']} up)", None, None, None,
            r["unreachable_in_messages"], None, None, got["median"] if got else None, r["calls_per_host_per_s"],
            cpu.get("panel"), cpu.get("bench"))


def _say(r: dict[str, Any]) -> None:
    cells = [f"{name} {value}" for name, value in zip(COLUMNS[2:], _row(r)[2:], strict=True) if value is not None]
    failed = f"; failed: {'; '.join(r['failures'])}" if r.get("failures") else ""
    print(f"  x{r['hosts']} {_row(r)[1]}: {', '.join(cells)}{failed}", flush=True)


def table(result: dict[str, Any]) -> str:
    ordered = sorted(result["loads"] + result["live"], key=lambda r: (r["hosts"], r["kind"] != "sessions"))
    cells = [list(COLUMNS)] + [["-" if v is None else str(v) for v in _row(r)] for r in ordered]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    failures = sorted({text for r in result["live"] for text in r["failures"]})
    return "\n".join(lines + [f"live pages failed: {text}" for text in failures])


def write(path: Path, result: dict[str, Any]) -> None:
    """Add the figures under "concurrency", keeping every other key of results.json."""
    record: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    record["concurrency"] = result
    path.write_text(json.dumps(record, indent=2) + "\n")
