"""The fleet: every VM a user may see on every host, gathered concurrently, filtered and sorted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict
from django.urls import reverse
from django.utils.safestring import SafeString

from hosts import services
from hosts.models import Host
from instances.host_rows import HostRows, RowVariant, host_rows, meter
from virt.domains import STATES, DomainRow
from virt.errors import brief_words
from webkvm.models import VMGrant
from webkvm.permissions import is_admin

__all__ = ["SORT_KEYS", "Filters", "Fleet", "FleetRow", "gather", "meter", "visible"]

SORT_KEYS = {
    "name": lambda r: (r.row.name.lower(), r.host.name),
    "host": lambda r: (r.host.name, r.row.name.lower()),
    "state": lambda r: (r.row.state, r.row.name.lower()),
    "vcpus": lambda r: (r.row.vcpus, r.row.name.lower()),
    "memory": lambda r: (r.row.memory_kib, r.row.name.lower()),
    "cpu": lambda r: (r.row.cpu_percent or 0.0, r.row.name.lower()),
}


@dataclass(frozen=True)
class FleetRow:
    host: Host
    row: DomainRow
    prefix: str = "/instances/"  # reverse("instances:list"), resolved once per page, not per row
    console_prefix: str = ""  # set when the user may open this VM's console
    snapshot: HostRows | None = None  # the shared read the row came from (its HTML is built once there)

    @property
    def key(self) -> str:
        return f"{self.host.name}/{self.row.uuid}"

    @property
    def detail_url(self) -> str:
        return f"{self.prefix}{self.host.name}/{self.row.uuid}/"

    @property
    def console_url(self) -> str:
        return f"{self.console_prefix}{self.host.name}/{self.row.uuid}/" if self.console_prefix else ""

    @property
    def host_url(self) -> str:
        return f"{self.prefix}host/{self.host.name}/"

    def html(self, *, select: bool, host_column: bool, console_base: str) -> SafeString:
        assert self.snapshot is not None
        variant = RowVariant(select, host_column, bool(self.console_prefix))
        return self.snapshot.html(self.host.name, self.row, variant, self.prefix, console_base)


@dataclass(frozen=True)
class Filters:
    host: str = ""
    state: str = ""
    q: str = ""
    sort: str = "name"
    descending: bool = False

    @classmethod
    def from_query(cls, query: QueryDict, host: str = "") -> Filters:
        sort = query.get("sort", "name")
        descending = sort.startswith("-")
        sort = sort.lstrip("-")
        state = query.get("state", "")
        return cls(
            host=host or query.get("host", "")[:63],
            state=state if state in STATES else "",
            q=query.get("q", "").strip()[:100],
            sort=sort if sort in SORT_KEYS else "name",
            descending=descending,
        )

    def matches(self, item: FleetRow) -> bool:
        if self.state and item.row.state != self.state:
            return False
        q = self.q.lower()
        return not q or q in item.row.name.lower() or q in item.row.uuid


@dataclass
class Fleet:
    rows: list[FleetRow] = field(default_factory=list)
    unreachable: list[tuple[Host, str]] = field(default_factory=list)  # (host, "busy: ..." / "unreachable: ...")
    hosts: list[Host] = field(default_factory=list)
    total: int = 0


@dataclass(frozen=True)
class Visibility:
    hosts: list[Host]
    granted: dict[int, set[str]] | None  # per host the UUIDs the user may see; None: all (admin)
    console: set[tuple[int, str]]  # (host id, UUID) whose console the user may open (non-admins)


def visible(user: Any) -> Visibility:
    if is_admin(user):
        return Visibility(list(Host.objects.all()), None, set())
    granted: dict[int, set[str]] = {}
    console: set[tuple[int, str]] = set()
    # A host that answers as another machine than recorded has its grants suspended (hosts/machine.py).
    for host_id, vm_uuid, can_console in VMGrant.objects.filter(user=user, host__unconfirmed_uuid="").values_list(
            "host_id", "vm_uuid", "can_console"):
        granted.setdefault(host_id, set()).add(str(vm_uuid))
        if can_console:
            console.add((host_id, str(vm_uuid)))
    return Visibility(list(Host.objects.filter(pk__in=granted)), granted, console)


def console_base() -> str:
    """The console page's URL without host and VM: resolved once, joined per row."""
    sample = ("h", "00000000-0000-0000-0000-000000000000")
    return reverse("console:page", args=sample).removesuffix("h/00000000-0000-0000-0000-000000000000/")


def gather(user: Any, filters: Filters) -> Fleet:
    """Every visible host's shared rows at once (each host within its own deadline), then grants, filter, sort."""
    seen = visible(user)
    hosts, granted = seen.hosts, seen.granted
    fleet = Fleet(hosts=hosts)
    prefix = reverse("instances:list")
    base = console_base()
    queried = [h for h in hosts if not filters.host or h.name == filters.host]
    for outcome in services.each(queried, host_rows):
        host = outcome.host
        if not outcome.ok or outcome.value is None:
            fleet.unreachable.append((host, outcome.words if granted is None else brief_words(outcome.words)))
            continue
        snapshot = outcome.value
        allowed = None if granted is None else granted.get(host.pk, set())
        for row in snapshot.rows:
            if allowed is not None and row.uuid.lower() not in allowed:
                continue
            fleet.total += 1
            may_console = granted is None or (host.pk, row.uuid.lower()) in seen.console
            item = FleetRow(host, row, prefix, base if may_console else "", snapshot)
            if filters.matches(item):
                fleet.rows.append(item)
    fleet.rows.sort(key=SORT_KEYS[filters.sort], reverse=filters.descending)
    return fleet
