"""Volume transfer: 1 GiB up and down through the panel beside `virsh vol-upload`/`vol-download`.

The panel runs as its own uvicorn process (as under gunicorn), so its memory can be read from
/proc: the peak resident size (VmHWM, reset through /proc/PID/clear_refs just before each
transfer) minus the resident size before it is what one transfer costs. Each link (qemu+tcp,
qemu+ssh to the lab) is measured with virsh first and the panel right after, on the same file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import libvirt

REPO = Path(__file__).resolve().parent.parent
POOL = "lab-bench-transfer"
CHUNK = 1 << 20
RSS_TARGET_MIB = 64
RATIO_TARGET = 0.70
PASSWORD = "bench-transfer-password-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PanelServer:
    """uvicorn serving webkvm.asgi on loopback, with the bench's private data dir (from os.environ)."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "webkvm.asgi:application", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-access-log", "--log-level", "warning", "--lifespan", "off"],
            cwd=REPO, env=os.environ.copy(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the panel did not start: see {log}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/login/")
                if conn.getresponse().status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("the panel did not answer within 30 s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        return _status_kib(self.pid, "VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the panel process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def hwm_kib(self) -> int:
        return _status_kib(self.pid, "VmHWM")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class Session:
    """A logged-in browser, as far as the panel can tell: session and CSRF cookies."""

    def __init__(self, port: int, username: str) -> None:
        self.port = port
        conn = self._conn()
        conn.request("GET", "/login/")
        response = conn.getresponse()
        response.read()
        self.cookies = self._cookies(response)
        token = self.cookies["csrftoken"]
        body = f"username={quote(username)}&password={quote(PASSWORD)}&csrfmiddlewaretoken={token}"
        conn.request("POST", "/login/", body, {**self.headers(), "Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        if response.status != 302:
            raise RuntimeError(f"login failed: HTTP {response.status}")
        self.cookies.update(self._cookies(response))

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600, blocksize=CHUNK)

    @staticmethod
    def _cookies(response: http.client.HTTPResponse) -> dict[str, str]:
        found = {}
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            found[name.strip()] = rest.split(";")[0]
        return found

    def headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
                "X-CSRFToken": self.cookies["csrftoken"], "Host": "127.0.0.1"}

    def upload(self, host: str, name: str, path: Path) -> tuple[float, dict[str, Any]]:
        size = path.stat().st_size
        conn = self._conn()
        conn.putrequest("PUT", f"/storage/{host}/pool/{POOL}/upload/?name={quote(name)}", skip_host=True)
        for key, value in {**self.headers(), "Content-Length": str(size),
                           "Content-Type": "application/octet-stream"}.items():
            conn.putheader(key, value)
        conn.endheaders()
        began = time.perf_counter()
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                conn.send(chunk)
        response = conn.getresponse()
        answer = json.loads(response.read() or b"{}")
        seconds = time.perf_counter() - began
        conn.close()
        if response.status != 201:
            raise RuntimeError(f"panel upload: HTTP {response.status}: {answer}")
        return seconds, answer

    def download(self, host: str, name: str, verify: bool = False) -> tuple[float, int, str]:
        """Seconds, bytes and (with verify, in a second thread as the bytes arrive) their sha256.

        Timed runs only count the bytes, as `virsh vol-download ... /dev/null` does: hashing would
        take a CPU the panel and libvirtd need on this two-core machine."""
        conn = self._conn()
        conn.request("GET", f"/storage/{host}/pool/{POOL}/volume/{quote(name)}/download/", headers=self.headers())
        began = time.perf_counter()
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"panel download: HTTP {response.status}: {response.read()[:300]!r}")
        chunks: queue.Queue[bytes | None] = queue.Queue(8)
        digest = hashlib.sha256()
        hasher = threading.Thread(target=lambda: [digest.update(c) for c in iter(chunks.get, None)])
        if verify:
            hasher.start()
        total = 0
        buffer = bytearray(CHUNK)
        while True:
            if verify:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                chunks.put(chunk)
            else:
                got = response.readinto(buffer)
                if not got:
                    break
                total += got
        seconds = time.perf_counter() - began
        if verify:
            chunks.put(None)
            hasher.join()
        conn.close()
        return seconds, total, digest.hexdigest() if verify else ""


def _virsh(uri: str, *args: str) -> float:
    began = time.perf_counter()
    subprocess.run(["virsh", "-q", "-c", uri, *args], check=True, capture_output=True, timeout=900)
    return time.perf_counter() - began


def _delete_volume(conn: libvirt.virConnect, name: str) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        conn.storagePoolLookupByName(POOL).storageVolLookupByName(name).delete(0)


def _remove_pool(conn: libvirt.virConnect) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        pool = conn.storagePoolLookupByName(POOL)
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
        with contextlib.suppress(libvirt.libvirtError):
            pool.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            pool.undefine()


def _make_source(path: Path, size: int) -> str:
    """Random bytes (a 64 MiB random block repeated: nothing on the way compresses it)."""
    block = os.urandom(min(size, 64 << 20))
    digest = hashlib.sha256()
    with path.open("wb") as out:
        written = 0
        while written < size:
            piece = block[: size - written]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def _setup_panel(lab: dict[str, Any]) -> list[tuple[str, str]]:
    """Admin, hosts over qemu+tcp and qemu+ssh (the panel's key authorised by the lab's sshd)."""
    from django.contrib.auth import get_user_model

    from hosts import services
    from hosts.models import Host
    from lab import labctl

    get_user_model().objects.create_superuser("bench-transfer", "", PASSWORD)
    Host.objects.update_or_create(name="bench-tcp", defaults={
        "transport": "tcp", "hostname": "127.0.0.1", "port": 16509, "path": "system", "insecure_tcp": True})
    Host.objects.update_or_create(name="bench-ssh", defaults={
        "transport": "ssh", "hostname": lab["ssh"]["host"], "port": lab["ssh"]["port"], "username": "root",
        "path": "system", "ssh_host_keys": "\n".join(lab["ssh"]["host_keys"])})
    identity = services.identity()
    identity.ensure()
    labctl.authorize_key(identity.public_key_line())
    services.sync_known_hosts()
    return [("tcp", "bench-tcp"), ("ssh", "bench-ssh")]


def _measure_panel(server: PanelServer, what: Any, cpu: list[dict[str, float]]) -> tuple[Any, dict[str, int]]:
    """Runs `what` (the HTTP client, in this process) and adds the CPU seconds of both sides to `cpu`."""
    server.reset_peak()
    before = server.rss_kib()
    panel_cpu, client_cpu = server.cpu_seconds(), time.process_time()
    result = what()
    cpu.append({"client": round(time.process_time() - client_cpu, 2),
                "panel": round(server.cpu_seconds() - panel_cpu, 2)})
    memory = {"rss_before_kib": before, "peak_kib": server.hwm_kib(), "rss_after_kib": server.rss_kib()}
    memory["growth_kib"] = memory["peak_kib"] - before
    return result, memory


def _link(server: PanelServer, session: Session, admin: libvirt.virConnect, label: str, host: str, uri: str,
          source: Path, digest: str, repeat: int) -> dict[str, Any]:
    """virsh and the panel in turns, `repeat` times each way; medians are compared (this machine is shared)."""
    size = source.stat().st_size
    runs: dict[str, list[float]] = {k: [] for k in ("virsh_upload", "virsh_download", "panel_upload", "panel_download")}
    memory: dict[str, list[dict[str, int]]] = {"upload": [], "download": []}
    cpu: dict[str, list[dict[str, float]]] = {"upload": [], "download": []}
    identical = True
    def by_virsh() -> None:
        _virsh(uri, "vol-create-as", POOL, "virsh.img", str(size), "--format", "raw")
        os.sync()  # each upload starts without the previous one's dirty pages to write back
        runs["virsh_upload"].append(_virsh(uri, "vol-upload", "--pool", POOL, "virsh.img", str(source)))
        runs["virsh_download"].append(_virsh(uri, "vol-download", "--pool", POOL, "virsh.img", "/dev/null"))
        _delete_volume(admin, "virsh.img")

    def by_panel() -> None:
        nonlocal identical
        os.sync()
        (seconds, _answer), used = _measure_panel(server, lambda: session.upload(host, "panel.img", source),
                                                   cpu["upload"])
        runs["panel_upload"].append(seconds)
        memory["upload"].append(used)
        (seconds, got, _none), used = _measure_panel(server, lambda: session.download(host, "panel.img"),
                                                       cpu["download"])
        runs["panel_download"].append(seconds)
        memory["download"].append(used)
        identical = identical and got == size
        if len(runs["panel_download"]) == repeat:  # once, untimed: the bytes are the very bytes uploaded
            _seconds, got, got_digest = session.download(host, "panel.img", verify=True)
            identical = identical and got == size and got_digest == digest
        _delete_volume(admin, "panel.img")

    for turn in range(repeat):
        for measure in (by_virsh, by_panel) if turn % 2 == 0 else (by_panel, by_virsh):  # who goes first alternates
            measure()
    result: dict[str, Any] = {"link": label, "uri_kind": uri.split(":")[0], "bytes": size, "repeat": repeat,
                              "seconds": {k: [round(v, 3) for v in vals] for k, vals in runs.items()},
                              "download_identical": identical,
                              "cpu_seconds": cpu}
    for way in ("upload", "download"):
        virsh_s, panel_s = statistics.median(runs[f"virsh_{way}"]), statistics.median(runs[f"panel_{way}"])
        result[f"virsh_{way}_mb_s"] = round(size / virsh_s / 1e6, 1)
        result[f"panel_{way}_mb_s"] = round(size / panel_s / 1e6, 1)
        result[f"{way}_ratio"] = round(virsh_s / panel_s, 3)
        result[f"panel_{way}_memory"] = max(memory[way], key=lambda m: m["growth_kib"])  # the worst run
    return result


def targets(links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for link in links:
        for way in ("upload", "download"):
            growth = link[f"panel_{way}_memory"]["growth_kib"] / 1024
            found.append({"name": f"{link['link']} {way}: panel memory grows by less than {RSS_TARGET_MIB} MiB",
                          "pass": growth < RSS_TARGET_MIB,
                          "detail": f"peak {link[f'panel_{way}_memory']['peak_kib'] / 1024:.1f} MiB vs "
                                    f"{link[f'panel_{way}_memory']['rss_before_kib'] / 1024:.1f} MiB before: "
                                    f"+{growth:.1f} MiB for {link['bytes'] / 2**30:g} GiB"})
            ratio = link[f"{way}_ratio"]
            found.append({"name": f"{link['link']} {way}: panel throughput at least {RATIO_TARGET:.0%} of virsh",
                          "pass": ratio >= RATIO_TARGET,
                          "detail": f"{link[f'panel_{way}_mb_s']} MB/s vs virsh {link[f'virsh_{way}_mb_s']} MB/s: "
                                    f"{ratio:.0%}"})
        found.append({"name": f"{link['link']}: the download is identical to the upload",
                      "pass": bool(link["download_identical"]), "detail": "sha256 of the bytes the browser got"})
    return found


def run(lab: dict[str, Any], size_mib: int = 1024, repeat: int = 3, work_dir: Path | None = None) -> dict[str, Any]:
    """Needs Django set up on the bench's private data dir (bench/panel.setup_django)."""
    began = time.monotonic()
    libvirt.registerErrorHandler(lambda *_: None, None)  # failures raise; no stderr noise
    admin = libvirt.open(lab["unix_uri"])
    # /var/tmp, not /tmp: the source file and the pool's volumes are GiBs (and /tmp may be memory).
    work = Path(tempfile.mkdtemp(prefix="webkvm-bench-transfer-", dir=work_dir or "/var/tmp"))  # noqa: S108
    server: PanelServer | None = None
    links: list[dict[str, Any]] = []
    try:
        _remove_pool(admin)  # left by an interrupted run
        pool_dir = work / "pool"
        pool_dir.mkdir()
        pool = admin.storagePoolDefineXML(_pool_xml(pool_dir), 0)
        pool.create(0)
        source = work / "source.img"
        digest = _make_source(source, size_mib << 20)
        hosts = _setup_panel(lab)
        server = PanelServer(work / "panel.log")
        session = Session(server.port, "bench-transfer")
        uris = {"tcp": lab["tcp_uri"], "ssh": lab["ssh"]["uri"]}
        for label, host in hosts:
            warm = work / "warm.img"
            _make_source(warm, 8 << 20)
            session.upload(host, "warm.img", warm)  # opens the host's connection, loads every module
            session.download(host, "warm.img")
            _delete_volume(admin, "warm.img")
            print(f"  {label}: virsh and the panel in turns, {size_mib} MiB each way, {repeat} times", flush=True)
            links.append(_link(server, session, admin, label, host, uris[label], source, digest, repeat))
    finally:
        if server is not None:
            server.stop()
        _remove_pool(admin)
        admin.close()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "bench": "volume transfer",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {"bytes": size_mib << 20, "repeat": repeat, "compared": "medians", "chunk": CHUNK,
                   "server": "uvicorn webkvm.asgi:application (1 process)",
                   "memory": "VmHWM after the transfer minus VmRSS before it (peak reset via clear_refs); worst run"},
        "links": links,
        "targets": targets(links),
        "run_seconds": round(time.monotonic() - began, 1),
    }


def _pool_xml(path: Path) -> str:
    from virt.xml.storage import StoragePool

    return StoragePool.new(type="dir", name=POOL, target_path=str(path)).to_xml()


def table(result: dict[str, Any]) -> str:
    rows = [("link", "way", "virsh MB/s", "panel MB/s", "ratio", "panel +MiB")]
    for link in result["links"]:
        for way in ("upload", "download"):
            rows.append((link["link"], way, str(link[f"virsh_{way}_mb_s"]), str(link[f"panel_{way}_mb_s"]),
                         f"{link[f'{way}_ratio']:.0%}", f"{link[f'panel_{way}_memory']['growth_kib'] / 1024:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths, strict=True))) for row in rows)


def write(path: Path, result: dict[str, Any]) -> None:
    """Add the figures under "transfer", keeping every other key of results.json."""
    record: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            record = json.loads(path.read_text())
    record["transfer"] = result
    path.write_text(json.dumps(record, indent=2) + "\n")
