"""Scenario records, the issue's targets, bench/results.json and the printed table."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.panel import PageResult

CALLS_SLACK = 1.5  # 5 hosts may cost at most this much more than 1 host
BOUND_FACTOR, RENDER_ALLOWANCE_MS = 3.0, 50.0  # fleet page <= 3 x lower bound + 50 ms of rendering


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 1)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 2)


def scenario(page: str, url: str, vms: int, hosts: int, domains_per_host: int, lower_bound_ms: float,
             result: PageResult) -> dict[str, Any]:
    """One page at one size: the fleet page is spread over every host, a host page over its one host."""
    page_hosts = hosts if page == "fleet" else 1
    per_request = [sum(calls[:page_hosts]) / page_hosts for calls in result.warm_calls]
    elsewhere = [sum(calls[page_hosts:]) for calls in result.warm_calls]
    warm = result.warm_median_ms
    return {
        "page": page,
        "url": url,
        "vms": vms,
        "hosts": hosts,
        "domains_per_host": domains_per_host,
        "status": result.status,
        "first_ms": _ms(result.first_ms),
        "first_calls_per_host": _number(sum(result.first_calls[:page_hosts]) / page_hosts),
        "warm_median_ms": _ms(warm),
        "warm_ms": [_ms(value) for value in result.warm_ms],
        "rows": domains_per_host * page_hosts,
        "no_match_ms": _ms(statistics.median(result.no_match_ms)) if result.no_match_ms else None,
        "calls_per_host": _number(statistics.median(per_request)) if per_request else None,
        "calls_varied": len(set(per_request)) > 1,
        "calls_by_host": result.warm_calls[-1] if result.warm_calls else [],
        "calls_on_other_hosts": max(elsewhere, default=0),
        "procedures_on_bench_1": {str(proc): count for proc, count in sorted(result.procedures.items())},
        "lower_bound_ms": _ms(lower_bound_ms),
        "ratio": round(warm / lower_bound_ms, 2) if lower_bound_ms > 0 and not math.isnan(warm) else None,
        "size_bytes": result.size_bytes,
    }


def _target(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "pass": passed, "detail": detail}


def check_targets(scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    failed_pages = sorted({f"{s['url']} -> {s['status']}" for s in scenarios if s["status"] != 200})
    broken = f"pages not served: {', '.join(failed_pages)}" if failed_pages else ""
    targets = []

    by_series: dict[tuple[str, int], dict[int, Any]] = defaultdict(dict)
    for s in scenarios:
        by_series[(s["page"], s["hosts"])][s["vms"]] = s["calls_per_host"]
    constant = all(len(set(calls.values())) == 1 for calls in by_series.values())
    constant = constant and not any(s["calls_varied"] for s in scenarios)
    detail = "; ".join(f"{page} x{hosts}: " + " / ".join(f"{calls[n]}@{n}" for n in sorted(calls))
                       for (page, hosts), calls in sorted(by_series.items()))
    targets.append(_target("libvirt calls per host per page the same at every VM count",
                           constant and not broken, broken or detail))

    by_size: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    for s in scenarios:
        by_size[(s["page"], s["vms"])][s["hosts"]] = s["warm_median_ms"] or math.nan
    ratios = {key: times[5] / times[1] for key, times in sorted(by_size.items()) if 1 in times and 5 in times}
    within = bool(ratios) and all(ratio <= CALLS_SLACK for ratio in ratios.values())
    detail = "; ".join(f"{page}@{vms}: {ratio:.2f}x" for (page, vms), ratio in ratios.items())
    targets.append(_target(f"5 hosts cost at most {CALLS_SLACK}x one host", within and not broken, broken or detail))

    largest = max((s["vms"] for s in scenarios), default=0)
    fleet = [s for s in scenarios if s["page"] == "fleet" and s["vms"] == largest]
    verdicts = []
    for s in fleet:
        limit = BOUND_FACTOR * (s["lower_bound_ms"] or 0) + RENDER_ALLOWANCE_MS
        verdicts.append((s["warm_median_ms"] is not None and s["warm_median_ms"] <= limit,
                         f"{s['hosts']} host(s): {s['warm_median_ms']} ms vs limit {limit:.1f} ms"))
    passed = bool(verdicts) and all(ok for ok, _ in verdicts)
    targets.append(_target(f"fleet page at {largest} VMs within {BOUND_FACTOR:g}x lower bound + "
                           f"{RENDER_ALLOWANCE_MS:g} ms", passed and not broken,
                           broken or "; ".join(text for _, text in verdicts)))
    return targets


def write(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2) + "\n")


COLUMNS = ("page", "VMs", "hosts", "rows", "status", "first ms", "warm ms", "no-match ms", "calls/host", "bound ms",
           "page/bound")


def table(scenarios: list[dict[str, Any]]) -> str:
    rows = [COLUMNS] + [
        (s["page"], s["vms"], s["hosts"], s["rows"], s["status"], s["first_ms"], s["warm_median_ms"], s["no_match_ms"],
         s["calls_per_host"], s["lower_bound_ms"], s["ratio"])
        for s in scenarios
    ]
    cells = [[("-" if value is None else str(value)) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    return "\n".join(lines)


def verdicts(targets: list[dict[str, Any]]) -> str:
    return "\n".join(f"{'PASS' if t['pass'] else 'FAIL'}  {t['name']}\n      {t['detail']}" for t in targets)
