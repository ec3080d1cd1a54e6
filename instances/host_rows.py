"""One host's VM rows as read at one moment: asked once, annotated once, rendered once, shared.

Every VM list, the live-update watcher and rows.json take a host's rows from here. The bulk read
is a shared read of the host's connection (one libvirt call set however many people look), the
CPU meter runs once per read, and each row's HTML is built once per read and variant and then
joined by every page whose viewer may see that row. A request then costs little more than
filtering by grants and joining strings.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from hosts import services
from hosts.models import Host
from instances.templatetags.vm import ago, kib, state_class
from virt.domains import ActivityMeter, DomainRow, list_domains
from virt.events import DOMAIN
from virt.reads import Read

READ_KEY = "domains"

meter = ActivityMeter()


@dataclass(frozen=True)
class RowVariant:
    """What differs between viewers of one row: the admin's select box, the host column, the console link."""

    select: bool
    host_column: bool
    console: bool


@dataclass
class HostRows:
    host_key: str
    rows: list[DomainRow]
    read_at: float = field(default_factory=time.time)
    _html: dict[tuple[str, RowVariant], SafeString] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @functools.cached_property
    def dicts(self) -> dict[str, dict[str, Any]]:
        """Each row as JSON-ready data, by lower-case UUID: built once per read for rows.json and live pages."""
        return {row.uuid.lower(): row.as_dict() for row in self.rows}

    def html(self, host_name: str, row: DomainRow, variant: RowVariant, prefix: str, console_prefix: str) -> SafeString:
        """The row's <tr>, built once per read and variant (prefixes are the same for every request)."""
        key = (row.uuid, variant)
        cached = self._html.get(key)
        if cached is None:
            cached = render_row(host_name, row, variant, prefix, console_prefix)
            with self._lock:
                self._html[key] = cached
        return cached


def read(conn_rows: list[DomainRow], host_key: str) -> HostRows:
    return HostRows(host_key, meter.annotate(host_key, conn_rows))


def host_rows(host: Host, timeout: float | None = None) -> HostRows:
    """The host's rows from the shared read (raises VirtError: busy, unreachable...)."""
    key = str(host.pk)
    return services.read(host, Read(READ_KEY, DOMAIN, lambda conn: read(list_domains(conn), key)), timeout)


def render_row(host_name: str, row: DomainRow, variant: RowVariant, prefix: str, console_prefix: str) -> SafeString:
    vm_key = f"{host_name}/{row.uuid}"
    parts: list[str] = [format_html('<tr data-key="{}">', vm_key)]
    if variant.select:
        parts.append(format_html('<td><input type="checkbox" name="vm" value="{}" form="migrate-selected" '
                                 'aria-label="select {}"></td>', vm_key, row.name))
    parts.append(format_html('<td><a href="{}{}/">{}</a>', prefix, vm_key, row.name))
    if row.managed_save:
        parts.append(' <span class="badge">saved</span>')
    if row.active and variant.console:
        parts.append(format_html(' <a class="console-link hint" href="{}{}/" title="open the console">console</a>',
                                 console_prefix, vm_key))
    parts.append("</td>")
    if variant.host_column:
        parts.append(format_html('<td><a href="{}host/{}/">{}</a></td>', prefix, host_name, host_name))
    cpu = f"{row.cpu_percent} %" if row.cpu_percent is not None else ""
    parts.append(format_html(
        '<td data-col="state" class="vmstate {}">{}</td><td data-col="since">{}</td><td data-col="vcpus">{}</td>'
        '<td data-col="memory">{}</td><td data-col="cpu">{}</td><td data-col="autostart">{}</td></tr>',
        state_class(row.state), row.state, ago(row.state_since), row.vcpus, kib(row.memory_kib), cpu,
        "yes" if row.autostart else "no"))
    return mark_safe("".join(parts))  # noqa: S308 - constants and format_html output only
