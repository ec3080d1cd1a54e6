"""The panel in this process: its own data dir and SQLite db, bench-N host rows, timed requests.

Pages are served by Django's test client (the full middleware stack, no network), so
"server time" is the time Django takes for the request, libvirt round trips included.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# URL names (kwargs, query) of the two pages each scenario requests. "hosts" is the host list and
# host overview, used to prove the harness while the instance pages were being written; "api" the
# API's VM list (every host, then one host's VMs: the same reads as the fleet page).
PAGE_SETS: dict[str, dict[str, tuple[str, dict[str, str], str]]] = {
    "instances": {"fleet": ("instances:list", {}, ""), "host": ("instances:host", {"host": "bench-1"}, "")},
    "hosts": {"fleet": ("hosts:list", {}, ""), "host": ("hosts:detail", {"name": "bench-1"}, "")},
    "api": {"fleet": ("api:vms", {}, "?limit=1000"), "host": ("api:vms", {}, "?host=bench-1&limit=1000")},
}
# Same libvirt calls, next to nothing to render: splits a slow page into fetching and rendering.
NO_MATCH_QUERY = {"instances": "?q=no-such-vm-in-the-bench", "hosts": "", "api": "&q=no-such-vm-in-the-bench"}
WARM_BUDGET_S = 20.0  # a page that loops per VM could take minutes: stop warm requests after this


def setup_django(data_dir: Path) -> None:
    """Point the panel at a private data dir before Django reads its settings, then migrate."""
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "webkvm.settings",
        "WEBKVM_DATA_DIR": str(data_dir),
        "WEBKVM_DATABASE_URL": f"sqlite:///{data_dir / 'bench.sqlite3'}",
        "WEBKVM_CREDENTIAL_KEY_FILE": str(data_dir / "credentials.key"),
        "WEBKVM_ALLOWED_HOSTS": "127.0.0.1",
        "WEBKVM_DEBUG": "false",  # DEBUG keeps every SQL query in memory
    })
    (data_dir / "static").mkdir(exist_ok=True)  # STATIC_ROOT: whitenoise warns when it is missing
    import django
    from django.core.management import call_command

    django.setup()
    # One "connected to" line per cold request, or "Not Found" per request, would bury the table; 500s still show.
    logging.getLogger("virt").setLevel(logging.WARNING)
    logging.getLogger("django.request").setLevel(logging.ERROR)
    call_command("migrate", verbosity=0, interactive=False)


@dataclass
class PageResult:
    status: int
    first_ms: float
    first_calls: list[int]
    warm_ms: list[float] = field(default_factory=list)
    warm_calls: list[list[int]] = field(default_factory=list)  # per warm request, per host
    procedures: dict[int, int] = field(default_factory=dict)  # bench-1's calls in the last warm request
    size_bytes: int = 0
    no_match_ms: list[float] = field(default_factory=list)

    @property
    def warm_median_ms(self) -> float:
        return statistics.median(self.warm_ms) if self.warm_ms else float("nan")


class Panel:
    def __init__(self, page_set: str) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        user = get_user_model().objects.create_superuser("bench-admin", "", None)
        # raise_request_exception=False: a broken page is a 500 in the results, not a crashed bench.
        self.client = Client(raise_request_exception=False, HTTP_HOST="127.0.0.1")
        self.client.force_login(user)
        self.pages = PAGE_SETS[page_set]
        self.no_match_query = NO_MATCH_QUERY[page_set]

    def url(self, page: str) -> str:
        from django.urls import reverse

        name, kwargs, query = self.pages[page]
        return reverse(name, kwargs=kwargs) + query

    def set_hosts(self, ports: list[int]) -> None:
        """Exactly bench-1..bench-len(ports), each reached through its own forwarder port."""
        from hosts.models import Host

        names = [f"bench-{i}" for i in range(1, len(ports) + 1)]
        Host.objects.exclude(name__in=names).delete()
        for name, port in zip(names, ports, strict=True):
            Host.objects.update_or_create(name=name, defaults={
                "transport": "tcp", "hostname": "127.0.0.1", "port": port, "path": "system", "insecure_tcp": True,
            })

    def drop_connections(self, forwarders: list[Any], timeout: float = 3.0) -> None:
        """Close the panel's libvirt connections and wait until the forwarders saw them go."""
        from hosts import services

        services.registry.close_all()
        end = time.monotonic() + timeout
        while any(fwd.connections for fwd in forwarders) and time.monotonic() < end:
            time.sleep(0.01)

    def get(self, url: str) -> tuple[int, float, int]:
        started = time.perf_counter()
        response = self.client.get(url)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return response.status_code, elapsed_ms, len(response.content)

    def measure(self, url: str, forwarders: list[Any], warm: int) -> PageResult:
        """One cold request (the panel opens its connections), then up to `warm` more."""
        self.drop_connections(forwarders)
        gc.collect()  # garbage left by the previous scenario (5000-row pages) must not be collected in this one
        for fwd in forwarders:
            fwd.reset_calls()
        status, first_ms, size = self.get(url)
        result = PageResult(status, first_ms, [fwd.take_calls() for fwd in forwarders], size_bytes=size)
        started = time.monotonic()
        for _ in range(warm):
            status, elapsed_ms, size = self.get(url)
            result.procedures = forwarders[0].procedures
            result.warm_calls.append([fwd.take_calls() for fwd in forwarders])
            result.warm_ms.append(elapsed_ms)
            result.status = max(result.status, status)  # any failed request marks the scenario
            result.size_bytes = size
            if time.monotonic() - started > WARM_BUDGET_S:
                break
        if self.no_match_query:
            for _ in range(3):
                result.no_match_ms.append(self.get(url + self.no_match_query)[1])
        for fwd in forwarders:
            fwd.reset_calls()
        return result

    def close(self, forwarders: list[Any]) -> None:
        self.drop_connections(forwarders, timeout=1.0)
