#!/usr/bin/env python3
"""`make bench`: the instance list's server time and libvirt calls on the lab, through 20 ms forwarders,
then the VNC console path.

For 10, 100 and 1000 defined VMs (3 running) and for 1 and 5 hosts, it times the fleet page
and one host's page (first request and median of warm ones), counts libvirt calls per host
per page at the forwarders, and compares with the raw lower bound on the same links.
Then it measures framebuffer-update throughput and round trips through the panel's console
proxy against a direct connection to the same VM's VNC server (bench/vnc.py).
`--only transfer`: a 1 GiB volume up and down through the panel beside virsh, over qemu+tcp and
qemu+ssh, with the panel process's memory growth (bench/transfer.py).
`--only concurrency`: 1, 10 and 50 logged-in sessions and 1 and 50 open live pages on one panel process,
500 VMs on 1 and 5 hosts, with latency, wrong "unreachable" answers and libvirt calls (bench/concurrency.py).
Writes bench/results.json, prints a table and PASS/FAIL per target; exits 0 either way.
`--only vnc` (or `--only instances`) runs one section and keeps the other's figures in the file.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
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

from bench import concurrency as bench_concurrency  # noqa: E402
from bench import domains, lowerbound, panel, report, vnc  # noqa: E402
from bench import migrate as bench_migrate  # noqa: E402
from bench import transfer as bench_transfer  # noqa: E402
from lab import labctl  # noqa: E402
from lab.forwarder import Forwarder  # noqa: E402

HOST_COUNTS = (1, 5)
PAGES = ("fleet", "host")
SECTIONS = ("instances", "vnc", "migrate", "transfer", "concurrency")


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
    parser.add_argument("--only", choices=SECTIONS, help="run one section; results.json keeps the other's figures")
    parser.add_argument("--vnc-seconds", type=float, default=6.0, help="seconds of full updates per VNC path")
    parser.add_argument("--vnc-round-trips", type=int, default=600, help="round trips timed per VNC path")
    parser.add_argument("--transfer-mib", type=int, default=1024, help="volume size moved each way (bench/transfer.py)")
    parser.add_argument("--transfer-repeat", type=int, default=3, help="runs per way and tool (medians compared)")
    parser.add_argument("--concurrency-seconds", type=float, default=30.0,
                        help="seconds of each load window (sessions, live pages) in bench/concurrency.py")
    parser.add_argument("--concurrency-vms", type=int, default=500, help="VMs defined for bench/concurrency.py")
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
    sections = [args.only] if args.only else list(SECTIONS)
    began = time.monotonic()
    lab = labctl.up()
    tcp = urlsplit(lab["tcp_uri"])
    data_dir = Path(tempfile.mkdtemp(prefix="webkvm-bench-"))
    admin = libvirt.open(lab["unix_uri"])
    forwarders: list[Forwarder] = []
    scenarios: list[dict] = []
    definitions: dict[str, float] = {}
    vnc_result: dict | None = None
    migrate_result: dict | None = None
    transfer_result: dict | None = None
    concurrency_result: dict | None = None
    removed = 0
    try:
        panel.setup_django(data_dir)
        leftovers = domains.remove_all(admin)
        if leftovers:
            print(f"removed {leftovers} lab-bench-* domains left by an interrupted run")
        if "instances" in sections:
            for _ in range(max(HOST_COUNTS)):
                forwarders.append(Forwarder((tcp.hostname or "127.0.0.1", tcp.port or 16509),
                                            rtt_ms=args.rtt_ms).start())
            web = panel.Panel(args.pages)
            for vms in args.sizes:
                seconds = domains.ensure_defined(admin, vms, lab["domain_type"])
                definitions[str(vms)] = round(seconds, 1)
                print(f"{vms} lab-bench VMs defined, {domains.RUNNING} running ({seconds:.1f} s)", flush=True)
                run_size(vms, forwarders, web, args, scenarios)
            web.close(forwarders)
            removed = domains.remove_all(admin)  # the VNC section boots its own VM on a quiet daemon
        if "vnc" in sections:
            print(f"VNC: {args.vnc_seconds:g} s of full updates and {args.vnc_round_trips} round trips per path, "
                  "direct and through the panel's proxy", flush=True)
            vnc_result = vnc.run(lab, args.vnc_seconds, args.vnc_round_trips)
        if "migrate" in sections:  # bench/migrate.py: panel vs virsh between the lab's two hosts
            print(f"migrate: live, host 1 <-> host 2, {bench_migrate.ROUNDS} rounds each by virsh and the panel",
                  flush=True)
            migrate_result = bench_migrate.run(lab)
        if "transfer" in sections:  # bench/transfer.py: a volume up and down, panel vs virsh, tcp and ssh
            print(f"transfer: {args.transfer_mib} MiB up and down through the panel and by virsh", flush=True)
            transfer_result = bench_transfer.run(lab, args.transfer_mib, args.transfer_repeat)
        if "concurrency" in sections:  # bench/concurrency.py: many sessions and live pages on one panel process
            print(f"concurrency: {args.concurrency_vms} VMs, 1 and 5 hosts, 1/10/50 sessions and 1/50 live pages, "
                  f"{args.concurrency_seconds:g} s each", flush=True)
            concurrency_result = bench_concurrency.run(lab, admin, args.concurrency_seconds, args.concurrency_vms,
                                                       args.rtt_ms)
            removed += domains.remove_all(admin)
    finally:
        unparsed = sum(fwd.framing_lost for fwd in forwarders)
        for fwd in forwarders:
            fwd.stop()
        removed += domains.remove_all(admin)
        admin.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"removed {removed} lab-bench-* domains")

    if "instances" in sections:
        write_instances(args, lab, scenarios, definitions, unparsed, began)
    if vnc_result is not None:
        vnc.write(args.output, vnc_result)
        print("\nVNC console path (bench/vnc.py)")
        print(vnc.table(vnc_result))
        print()
        print(report.verdicts(vnc_result["targets"]))
    if migrate_result is not None:
        bench_migrate.write(args.output, migrate_result)
        print("\nLive migration (bench/migrate.py)")
        print(bench_migrate.table(migrate_result))
        print()
        print(report.verdicts(migrate_result["targets"]))
    if transfer_result is not None:
        bench_transfer.write(args.output, transfer_result)
        print("\nVolume transfer (bench/transfer.py)")
        print(bench_transfer.table(transfer_result))
        print()
        print(report.verdicts(transfer_result["targets"]))
    if concurrency_result is not None:
        bench_concurrency.write(args.output, concurrency_result)
        print("\nConcurrency (bench/concurrency.py)")
        if concurrency_result["environment"]["unparsed_connections"]:
            print("WARNING: some forwarded connections were not libvirt's plain protocol; call counts are low")
        print(bench_concurrency.table(concurrency_result))
        print()
        print(report.verdicts(concurrency_result["targets"]))
    print(f"\nwrote {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output} "
          f"in {time.monotonic() - began:.0f} s")
    return 0


def write_instances(args: argparse.Namespace, lab: dict, scenarios: list[dict], definitions: dict[str, float],
                    unparsed: int, began: float) -> None:
    targets = report.check_targets(scenarios)
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
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
        # `--only instances` keeps the other sections' figures (each under its section's name).
        **{key: value for key, value in previous.items() if key in SECTIONS and key != "instances"},
    })
    print()
    if unparsed:
        print(f"WARNING: {unparsed} forwarded connection(s) were not libvirt's plain protocol; call counts are low")
    print(report.table(scenarios))
    print()
    print(report.verdicts(targets))


def libvirt_version(lab: dict) -> str:
    conn = libvirt.open(lab["unix_uri"])
    try:
        number = conn.getLibVersion()
    finally:
        conn.close()
    return f"{number // 1000000}.{number // 1000 % 1000}.{number % 1000}"


if __name__ == "__main__":
    sys.exit(main())
