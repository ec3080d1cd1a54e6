"""Live migration through the panel against `virsh migrate --live`, between the lab's two hosts.

One running 64 MiB diskless VM (test-bench-migrate) goes from host 1 to host 2 and back, ROUNDS times by
each method, interleaved so that a busy moment on the machine hits both alike:

- virsh:  `virsh -c SRC migrate --live --persistent --undefinesource NAME DEST` (the way back adds
          `--migrateuri tcp://10.213.0.1 --listen-address 10.213.0.1`: host 1 listens on loopback only);
          wall time of the command; downtime from `virsh domjobinfo --completed` on the destination.
- panel:  the POST of the migrate form through Django's test client (logged-in admin, full middleware)
          until the job reports its result: the request, the job's own connections, the pre-flight
          checks and the migration; downtime from the job's completed statistics.

Targets: the panel's median wall time at most 10 % above virsh's, and the same downtime (medians
within 10 ms or 25 %). Figures go under "migrate" in bench/results.json, next to the other sections.
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import libvirt

from tests.lab import domain_xml, remove_domain

NAME = "test-bench-migrate"  # not lab-bench-*: the other sections remove those wholesale
ROUNDS = 5
WALL_TARGET = 1.10
DOWNTIME_SLACK_MS, DOWNTIME_SLACK = 10.0, 0.25
SETTLE_S = 0.3  # let the guest and both daemons go quiet between migrations


def _virsh(*args: str, timeout: float = 120) -> str:
    res = subprocess.run(["virsh", "-q", *args], capture_output=True, text=True, timeout=timeout)
    if res.returncode:
        raise RuntimeError(f"virsh {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def _downtime(uri: str) -> int | None:
    found = re.search(r"Total downtime:\s+(\d+)\s*ms", _virsh("-c", uri, "domjobinfo", "--completed", NAME))
    return int(found.group(1)) if found else None


def _by_virsh(src: str, dst: str, back_address: str | None) -> tuple[float, int | None]:
    extra = ["--migrateuri", f"tcp://{back_address}", "--listen-address", back_address] if back_address else []
    began = time.perf_counter()
    _virsh("-c", src, "migrate", "--live", "--persistent", "--undefinesource", *extra, NAME, dst)
    return time.perf_counter() - began, _downtime(dst)


class _Panel:
    """The panel in this process with the two lab hosts."""

    def __init__(self, lab: dict[str, Any]) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from hosts.models import Host

        user = get_user_model().objects.create_superuser("bench-migrate", "", None)
        self.client = Client(HTTP_HOST="127.0.0.1")
        self.client.force_login(user)
        self.hosts = {"1": Host.objects.create(name="bench-lab1", transport="local", path="system"),
                      "2": Host.objects.create(name="bench-lab2", transport="tcp", hostname=lab["host2"]["address"],
                                               port=16509, insecure_tcp=True)}

    def migrate(self, vm_uuid: str, src: str, dst: str, back_address: str | None) -> tuple[float, int | None]:
        from django.urls import reverse

        from jobs.models import Job

        url = reverse("instances:migrate", args=[self.hosts[src].name, vm_uuid])
        form = {"target": self.hosts[dst].name, **({"migration_address": back_address} if back_address else {})}
        began = time.monotonic()
        response = self.client.post(url, form)
        if response.status_code != 302:
            raise RuntimeError(f"panel answered {response.status_code}: {response.content[:300]!r}")
        job = Job.objects.get(pk=int(response.url.strip("/").rsplit("/", 1)[-1]))
        while job.active:  # the job runs in a thread of this process (no Redis in the bench)
            time.sleep(0.01)
            job.refresh_from_db()
        ended = time.monotonic()
        if job.state != "done":
            raise RuntimeError(f"panel migration did not finish: {job.state}: {job.result}")
        return ended - began, job.params.get("downtime_ms")

    def close(self) -> None:
        from hosts import services

        services.registry.close_all()


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run(lab: dict[str, Any], rounds: int = ROUNDS) -> dict[str, Any]:
    host2 = lab.get("host2") or {}
    if "uri" not in host2:
        raise RuntimeError(f"lab host 2 is not up: {host2.get('error') or host2.get('skipped') or 'unknown'}")
    uris = {"1": lab["unix_uri"], "2": host2["uri"]}
    back = host2["host1_address"]  # where host 1 receives migrations from host 2
    conns = {k: libvirt.open(uri) for k, uri in uris.items()}
    for conn in conns.values():  # an interrupted run may have left it on either host
        with contextlib.suppress(libvirt.libvirtError):
            remove_domain(conn.lookupByName(NAME))
    dom = conns["1"].defineXML(domain_xml(NAME, lab["domain_type"]))
    dom.create()
    vm_uuid = dom.UUIDString()
    time.sleep(2)  # the guest's first second keeps a CPU busy
    samples: dict[str, dict[str, list[float]]] = {m: {"wall_s": [], "downtime_ms": []} for m in ("virsh", "panel")}
    web = _Panel(lab)
    try:
        for index in range(rounds):
            for method in ("virsh", "panel") if index % 2 == 0 else ("panel", "virsh"):
                for src, dst in (("1", "2"), ("2", "1")):
                    time.sleep(SETTLE_S)
                    address = back if dst == "1" else None
                    if method == "virsh":
                        wall, downtime = _by_virsh(uris[src], uris[dst], address)
                    else:
                        wall, downtime = web.migrate(vm_uuid, src, dst, address)
                    samples[method]["wall_s"].append(round(wall, 4))
                    if downtime is not None:
                        samples[method]["downtime_ms"].append(downtime)
            print(f"  round {index + 1}/{rounds}: virsh {samples['virsh']['wall_s'][-2:]} s, "
                  f"panel {samples['panel']['wall_s'][-2:]} s", flush=True)
    finally:
        web.close()
        for conn in conns.values():
            with contextlib.suppress(libvirt.libvirtError):
                remove_domain(conn.lookupByName(NAME))
            conn.close()
    return summarise(samples, rounds, lab["domain_type"])


def summarise(samples: dict[str, dict[str, list[float]]], rounds: int, domain_type: str) -> dict[str, Any]:
    med = {m: {k: _median(v) for k, v in s.items()} for m, s in samples.items()}
    virsh_wall, panel_wall = med["virsh"]["wall_s"], med["panel"]["wall_s"]
    virsh_down, panel_down = med["virsh"]["downtime_ms"], med["panel"]["downtime_ms"]
    ratio = panel_wall / virsh_wall if panel_wall and virsh_wall else None
    slack = max(DOWNTIME_SLACK_MS, DOWNTIME_SLACK * (virsh_down or 0))
    same_downtime = virsh_down is not None and panel_down is not None and abs(panel_down - virsh_down) <= slack
    return {
        "bench": "live migration, panel vs virsh",
        "config": {"vm": f"{NAME}: 64 MiB, diskless, {domain_type}", "rounds": rounds,
                   "migrations_per_method": 2 * rounds, "route": "host 1 (local socket) <-> host 2 (qemu+tcp, "
                   "own network namespace); back to host 1 with migration URI tcp://10.213.0.1"},
        "samples": samples,
        "median": med,
        "panel_over_virsh": round(ratio, 3) if ratio else None,
        "targets": [
            {"name": f"panel wall time at most {WALL_TARGET - 1:.0%} above virsh's (medians)",
             "pass": ratio is not None and ratio <= WALL_TARGET,
             "detail": f"panel {panel_wall} s, virsh {virsh_wall} s, ratio {ratio and round(ratio, 3)}"},
            {"name": f"same downtime (medians within {DOWNTIME_SLACK_MS:g} ms or {DOWNTIME_SLACK:.0%})",
             "pass": same_downtime, "detail": f"panel {panel_down} ms, virsh {virsh_down} ms"},
        ],
    }


def table(result: dict[str, Any]) -> str:
    lines = [f"{'method':6}  {'median wall s':>13}  {'median downtime ms':>18}  samples (wall s)"]
    for method in ("virsh", "panel"):
        med, samples = result["median"][method], result["samples"][method]
        lines.append(f"{method:6}  {med['wall_s']!s:>13}  {med['downtime_ms']!s:>18}  {samples['wall_s']}")
    return "\n".join(lines)


def write(path: Path, result: dict[str, Any]) -> None:
    """Add the figures under "migrate", keeping every other key of results.json."""
    record: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            record = json.loads(path.read_text())
    record["migrate"] = result
    path.write_text(json.dumps(record, indent=2) + "\n")
