"""The fleet: every VM a user may see on every host, gathered concurrently, filtered and sorted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict
from django.urls import reverse
from django.utils.safestring import SafeString

from hosts import services
from hosts.models import Host
from instances import state_since
from instances.host_rows import HostRows, RowVariant, host_rows, meter
from virt.domains import STATES, DomainRow
from virt.errors import HOST_BUSY, HOST_UNAVAILABLE
from webkvm.i18n import said
from webkvm.models import VMGrant, VMPermission
from webkvm.permissions import grants_by_vm

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
    power: bool = False  # the user may start and stop it
    selectable: bool = False  # the user may act on it (power or delete): bulk actions may include it

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
        variant = RowVariant(select, self.selectable, host_column, bool(self.console_prefix), self.power)
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
    # (host, "busy: ..." / "unreachable: ..."), in the reader's language; `busy`: the ids of those only busy
    unreachable: list[tuple[Host, str]] = field(default_factory=list)
    busy: set[int] = field(default_factory=set)
    hosts: list[Host] = field(default_factory=list)
    total: int = 0
    selectable: bool = False  # the user may act on some VM: the table has a select column
    held: dict[str, bool] = field(default_factory=dict)  # per VM grant: the user holds it on some VM (bulk buttons)
    # Non-admins: per unreachable host, the names (as granted) of their VMs there, which its row names.
    waiting: dict[int, list[str]] = field(default_factory=dict)


ACTING = frozenset({VMPermission.POWER.value, VMPermission.DELETE.value})  # what bulk actions need


@dataclass(frozen=True)
class Visibility:
    hosts: list[Host]
    grants: dict[tuple[int, str], frozenset[str]] | None  # (host id, UUID): what the user may do; None: admin

    @property
    def granted(self) -> dict[int, set[str]] | None:
        """Per host the UUIDs the user may see; None: all (admin)."""
        if self.grants is None:
            return None
        out: dict[int, set[str]] = {}
        for host_id, vm_uuid in self.grants:
            out.setdefault(host_id, set()).add(vm_uuid)
        return out

    def may(self, host_id: int, vm_uuid: str, permission: str) -> bool:
        return self.grants is None or permission in self.grants.get((host_id, vm_uuid), ())

    @property
    def acts(self) -> bool:
        """May the user act (power, delete) on any VM?"""
        return self.grants is None or any(allowed & ACTING for allowed in self.grants.values())

    @property
    def held(self) -> dict[str, bool]:
        """Per VM grant: does the user hold it on some VM?"""
        every = frozenset().union(*self.grants.values()) if self.grants else frozenset()
        return {p.value: self.grants is None or p.value in every for p in VMPermission}


def visible(user: Any) -> Visibility:
    """The hosts and VMs the user may see, and what they may do with each, from the one permission check
    (webkvm/permissions.py) in one query. A host that answers as another machine than recorded has its
    grants suspended (hosts/machine.py)."""
    grants = grants_by_vm(user)
    if grants is None:
        return Visibility(list(Host.objects.all()), None)
    return Visibility(list(Host.objects.filter(pk__in={host_id for host_id, _ in grants})), grants)


def console_base() -> str:
    """The console page's URL without host and VM: resolved once, joined per row."""
    sample = ("h", "00000000-0000-0000-0000-000000000000")
    return reverse("console:page", args=sample).removesuffix("h/00000000-0000-0000-0000-000000000000/")


def gather(user: Any, filters: Filters) -> Fleet:
    """Every visible host's shared rows at once (each host within its own deadline), then grants, filter, sort."""
    seen = visible(user)
    hosts, granted = seen.hosts, seen.granted
    fleet = Fleet(hosts=hosts, selectable=seen.acts, held=seen.held)
    prefix = reverse("instances:list")
    base = console_base()
    queried = [h for h in hosts if not filters.host or h.name == filters.host]
    for outcome in services.each(queried, host_rows):
        host = outcome.host
        if not outcome.ok or outcome.value is None:
            brief = HOST_BUSY if outcome.busy else HOST_UNAVAILABLE  # never the host's own words
            fleet.unreachable.append((host, outcome.words if granted is None else said(brief)))
            if outcome.busy:
                fleet.busy.add(host.pk)
            if seen.grants is not None:
                fleet.waiting[host.pk] = _granted_names(user, host)
            continue
        snapshot = outcome.value
        state_since.apply(host, snapshot)
        allowed = None if granted is None else granted.get(host.pk, set())
        for row in snapshot.rows:
            if allowed is not None and row.uuid.lower() not in allowed:
                continue
            fleet.total += 1
            vm_uuid = row.uuid.lower()
            may_console = seen.may(host.pk, vm_uuid, VMPermission.CONSOLE.value)
            item = FleetRow(host, row, prefix, base if may_console else "", snapshot,
                            power=seen.may(host.pk, vm_uuid, VMPermission.POWER.value),
                            selectable=any(seen.may(host.pk, vm_uuid, p) for p in ACTING))
            if filters.matches(item):
                fleet.rows.append(item)
    fleet.rows.sort(key=SORT_KEYS[filters.sort], reverse=filters.descending)
    return fleet


def _granted_names(user: Any, host: Host) -> list[str]:
    """The names the user's VMs on `host` had when granted: the unreachable host's row says whose they are."""
    return sorted(name for name in VMGrant.objects.filter(user=user, host=host).values_list("vm_name", flat=True)
                  if name)
