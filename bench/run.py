#!/usr/bin/env python3
"""`make bench`: the instance list's server time and libvirt calls on the lab, through 20 ms forwarders.

For 10, 100 and 1000 defined VMs (3 running) and for 1 and 5 hosts, it times the fleet page
and one host's page (first request and median of warm ones), counts libvirt calls per host
per page at the forwarders, and compares with the raw lower bound on the same links.
Writes bench/results.json, prints a table and PASS/FAIL per target; exits 0 either way.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: make the repo's packages importable

import libvirt  # noqa: E402

from bench import domains, lowerbound, panel, report  # noqa: E402
from lab import labctl  # noqa: E402
from lab.forwarder import Forwarder  # noqa: E402

HOST_COUNTS = (1, 5)
PAGES = ("fleet", "host")


def _sizes(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=[10, 100, 1000], help="VM counts, e.g. 10,100,1000")
    parser.add_argument("--warm", type=int, default=5, help="warm requests per page (median is reported)")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="round trip added by each forwarder")
    parser.add_argument("--pages", choices=sorted(panel.PAGE_SETS), default="instances",
                        help="instance pages (default) or the host pages the harness was proven on")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results.json")
    return parser.parse_args(argv)


def run_size(vms: int, forwarders: list[Forwarder], web: panel.Panel, args: argparse.Namespace,
             scenarios: list[dict]) -> None:
    for hosts in HOST_COUNTS:
        links = forwarders[:hosts]
        web.set_hosts([fwd.port for fwd in links])
        bound_one, domains_per_host = lowerbound.measure([links[0].port])
        bound_all = bound_one if hosts == 1 else lowerbound.measure([fwd.port for fwd in links])[0]
        for page in PAGES:
            url = web.url(page)
            result = web.measure(url, links, args.warm)
            bound = bound_all if page == "fleet" else bound_one
            record = report.scenario(page, url, vms, hosts, domains_per_host, bound, result)
            scenarios.append(record)
            print(f"  {page:5} {vms:5} VMs x{hosts} host(s): HTTP {record['status']}, first {record['first_ms']} ms, "
                  f"warm {record['warm_median_ms']} ms, {record['calls_per_host']} calls/host, "
                  f"bound {record['lower_bound_ms']} ms", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    lab = labctl.up()
    tcp = urlsplit(lab["tcp_uri"])
    data_dir = Path(tempfile.mkdtemp(prefix="webkvm-bench-"))
    admin = libvirt.open(lab["unix_uri"])
    forwarders: list[Forwarder] = []
    scenarios: list[dict] = []
    definitions: dict[str, float] = {}
    try:
        panel.setup_django(data_dir)
        for _ in range(max(HOST_COUNTS)):
            forwarders.append(Forwarder((tcp.hostname or "127.0.0.1", tcp.port or 16509), rtt_ms=args.rtt_ms).start())
        web = panel.Panel(args.pages)
        leftovers = domains.remove_all(admin)
        if leftovers:
            print(f"removed {leftovers} lab-bench-* domains left by an interrupted run")
        for vms in args.sizes:
            seconds = domains.ensure_defined(admin, vms, lab["domain_type"])
            definitions[str(vms)] = round(seconds, 1)
            print(f"{vms} lab-bench VMs defined, {domains.RUNNING} running ({seconds:.1f} s)", flush=True)
            run_size(vms, forwarders, web, args, scenarios)
        web.close(forwarders)
    finally:
        unparsed = sum(fwd.framing_lost for fwd in forwarders)
        for fwd in forwarders:
            fwd.stop()
        removed = domains.remove_all(admin)
        admin.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"removed {removed} lab-bench-* domains")

    targets = report.check_targets(scenarios)
    report.write(args.output, {
        "bench": "instance list",
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "pages": {page: scenarios[i]["url"] for i, page in enumerate(PAGES)} if scenarios else {},
            "sizes": args.sizes,
            "host_counts": list(HOST_COUNTS),
            "rtt_ms": args.rtt_ms,
            "warm_requests": args.warm,
            "running_vms": domains.RUNNING,
            "lower_bound": "listAllDomains(0) + getAllDomainStats(state|cpu-total|balloon|vcpu) per host, "
                           "connection open, all hosts at once, median of 5",
        },
        "environment": {
            "libvirt": libvirt_version(lab),
            "domain_type": lab["domain_type"],
            "python": platform.python_version(),
            "prepare_seconds": definitions,
            "unparsed_connections": unparsed,  # must be 0: otherwise some calls went uncounted
        },
        "scenarios": scenarios,
        "targets": targets,
        "run_seconds": round(time.monotonic() - began, 1),
    })
    print()
    if unparsed:
        print(f"WARNING: {unparsed} forwarded connection(s) were not libvirt's plain protocol; call counts are low")
    print(report.table(scenarios))
    print()
    print(report.verdicts(targets))
    print(f"\nwrote {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output} "
          f"in {time.monotonic() - began:.0f} s")
    return 0


def libvirt_version(lab: dict) -> str:
    conn = libvirt.open(lab["unix_uri"])
    try:
        number = conn.getLibVersion()
    finally:
        conn.close()
    return f"{number // 1000000}.{number // 1000 % 1000}.{number % 1000}"


if __name__ == "__main__":
    sys.exit(main())
