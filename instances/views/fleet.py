"""The fleet view across hosts, one host's VMs, and the JSON the page polls for live updates.

Anybody logged in may open them: each shows only the VMs its viewer has a grant on (admins: all)."""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from hosts.models import Host
from instances.fleet import SORT_KEYS, Filters, console_base, gather
from instances.host_rows import ROW_ACTIONS, row_icon
from instances.templatetags.vm import state_label
from virt import lifecycle
from virt.domains import STATES
from webkvm.operations import LOGIN, page, route
from webkvm.permissions import host_for, is_admin

# Rendering costs about 0.1 ms a row: a page of 500 keeps the largest fleets fast; filters find the rest.
PAGE_SIZE = 500
# The sort keys (instances/fleet.py SORT_KEYS) as the list's "sort by" choice names them.
SORT_LABELS = {"name": gettext_lazy("name"), "host": gettext_lazy("host"), "state": gettext_lazy("state"),
               "vcpus": gettext_lazy("vCPUs"), "memory": gettext_lazy("memory"), "cpu": gettext_lazy("CPU")}


def row_actions_json() -> str:
    """The rows' power buttons as fleet-live.js redraws them when a VM's state changes, in the page's language."""
    return json.dumps({name: {"label": str(label), "confirm": _(lifecycle.ACTIONS[name].confirm)
                              if lifecycle.ACTIONS[name].confirm else ""}
                       for name, label in ROW_ACTIONS.items()})


def labelled(row: dict[str, Any]) -> dict[str, Any]:
    """A row's data (English keys and state, which scripts compare) with its state as the page shows it."""
    return {**row, "state_label": state_label(row.get("state", ""))}


def fleet_context(request: HttpRequest, filters: Filters, host: Host | None) -> dict[str, Any]:
    """What the VM table needs (instances/_fleet.html): the VM list, one host's VMs, a user's home page."""
    fleet = gather(request.user, filters)
    page = Paginator(fleet.rows, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    admin = is_admin(request.user)
    base = console_base()
    # Each row's HTML was built once for its host's read and is shared by every viewer: join, do not render.
    rows_html = mark_safe("".join(  # noqa: S308 - rows built by instances/host_rows.render_row
        item.html(select=fleet.selectable, host_column=host is None, console_base=base) for item in page))
    # select box (when the user may act on some VM), name, host (every host's page), state, since, vCPUs,
    # memory, CPU, autostart, actions: unreachable and empty rows span them all.
    columns = 8 + fleet.selectable + (host is None)
    return {
        "fleet": fleet, "page": page, "rows_html": rows_html, "query": query.urlencode(), "filters": filters,
        "states": [(state, state_label(state)) for state in STATES],
        "sort_keys": [(key, str(SORT_LABELS.get(key, key))) for key in SORT_KEYS],
        "host": host, "is_admin": admin, "columns": columns,
        "next": request.get_full_path(), "row_actions": row_actions_json(),
        "force_off_words": _(lifecycle.ACTIONS["destroy"].confirm),
        "row_icons": [(name, row_icon(name)) for name in ("console", *ROW_ACTIONS)],
    }


def _page(request: HttpRequest, filters: Filters, host: Host | None) -> HttpResponse:
    return render(request, "instances/list.html", fleet_context(request, filters, host))


@require_GET
@route(page(LOGIN))
def fleet(request: HttpRequest) -> HttpResponse:
    return _page(request, Filters.from_query(request.GET), None)


@require_GET
@route(page(LOGIN, "host"))  # a grant on a VM of the host the URL names
def host_fleet(request: HttpRequest, host: str) -> HttpResponse:
    found = host_for(request, host)  # non-admins: a grant on one of its VMs, else 403
    return _page(request, Filters.from_query(request.GET, host=found.name), found)


@require_GET
@route(page(LOGIN, polled=True))
def rows(request: HttpRequest) -> JsonResponse:
    """What changes without a reload: state, CPU, memory, autostart of every visible VM."""
    fleet = gather(request.user, Filters.from_query(request.GET))
    page = Paginator(fleet.rows, PAGE_SIZE).get_page(request.GET.get("page"))
    return JsonResponse({
        "vms": {item.key: labelled(item.snapshot.dicts[item.row.uuid.lower()] if item.snapshot else item.row.as_dict())
                for item in page},
        "unreachable": {host.name: words for host, words in fleet.unreachable},
        "busy": sorted(host.name for host, _words in fleet.unreachable if host.pk in fleet.busy),
    })
