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

from django.utils import translation
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts import services
from hosts.models import Host
from instances.models import StateSince
from instances.state_since import Since
from instances.templatetags.vm import state_badge, state_label
from virt import lifecycle
from virt.domains import STATE_NAMES, ActivityMeter, DomainRow, list_domains
from virt.events import DOMAIN
from virt.reads import Read
from webkvm.templatetags.formats import kib

READ_KEY = "domains"

meter = ActivityMeter()


# The power actions a row offers (the VM page has them all), each the VM page's own action and operation;
# which of them the VM's state allows comes from virt/lifecycle.py.
ROW_ACTIONS = {"start": gettext_lazy("Start"), "restore": gettext_lazy("Restore"), "resume": gettext_lazy("Resume"),
               "shutdown": gettext_lazy("Shut down"), "destroy": gettext_lazy("Force off")}
STATE_CODES: dict[str, int] = {str(name): code for code, name in STATE_NAMES.items()}


def row_actions(row: DomainRow) -> list[str]:
    """The row's power actions its state allows, in the order the row shows them."""
    code = STATE_CODES.get(row.state, 0)
    return [a.name for a in lifecycle.available(code, row.managed_save) if a.name in ROW_ACTIONS]


@dataclass(frozen=True)
class RowVariant:
    """What differs between viewers of one row: the select column and whether they may tick this row, the host
    column, the console button, the power buttons."""

    select: bool  # the page has a select column
    selectable: bool  # this viewer may act on this VM (power or delete): its box
    host_column: bool
    console: bool
    power: bool = False


@dataclass
class HostRows:
    host_key: str
    rows: list[DomainRow]
    read_at: float = field(default_factory=time.time)
    _html: dict[tuple[str, RowVariant, str], SafeString] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Each row's state start, from the store every process shares (instances/state_since.apply), once per read.
    states_applied: bool = False
    states_lock: threading.Lock = field(default_factory=threading.Lock)

    @functools.cached_property
    def dicts(self) -> dict[str, dict[str, Any]]:
        """Each row as JSON-ready data, by lower-case UUID: built once per read for rows.json and live pages,
        with what the pages derive from the state (its badge's class, the power actions it allows)."""
        return {row.uuid.lower(): {**row.as_dict(), "state_class": state_badge(row.state), "active": row.active,
                                   "actions": row_actions(row)} for row in self.rows}

    def html(self, host_name: str, row: DomainRow, variant: RowVariant, prefix: str, console_prefix: str) -> SafeString:
        """The row's <tr>, built once per read, variant and language (prefixes are the same for every request)."""
        key = (row.uuid, variant, translation.get_language() or "")
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
    """The row's <tr>. Its power buttons post to the VM page's own action URLs through the page's one
    `row-action` form (which carries the CSRF token and where to come back to), so the row itself holds
    nothing per request; the select box belongs to the page's `bulk` form. fleet-live.js redraws the
    state, buttons and console link from the row's data attributes when the state changes."""
    vm_key = f"{host_name}/{row.uuid}"
    url = f"{prefix}{vm_key}/"
    console_url = f"{console_prefix}{vm_key}/" if variant.console else ""
    parts: list[str] = [format_html('<tr data-key="{}" data-url="{}"', vm_key, url)]
    if variant.power:
        parts.append(' data-power="1"')
    if console_url:
        parts.append(format_html(' data-console="{}"', console_url))
    parts.append(">")
    if variant.select:
        parts.append(format_html('<td class="select"><input type="checkbox" name="vm" value="{}" form="bulk" '
                                 'aria-label="{}"></td>', vm_key, _("select {name}").format(name=row.name))
                     if variant.selectable
                     else '<td class="select"></td>')
    parts.append(format_html('<td><a href="{}">{}</a>', url, row.name))
    if row.managed_save:
        parts.append(format_html(' <span class="badge">{}</span>', _("saved")))
    parts.append("</td>")
    if variant.host_column:
        parts.append(format_html('<td><a href="{}host/{}/">{}</a></td>', prefix, host_name, host_name))
    cpu = f"{row.cpu_percent} %" if row.cpu_percent is not None else ""
    parts.append(format_html(
        '<td data-col="state"><span class="badge {}">{}</span></td><td data-col="since">{}</td>'
        '<td data-col="vcpus">{}</td><td data-col="memory">{}</td><td data-col="cpu">{}</td>'
        '<td data-col="autostart">{}</td>',
        state_badge(row.state), state_label(row.state), since_words(row), row.vcpus, kib(row.memory_kib), cpu,
        _("yes") if row.autostart else _("no")))
    parts.append('<td data-col="actions" class="row-actions">')
    if console_url and row.active:
        parts.append(format_html('<a class="button" data-act="console" href="{}" title="{}">{}'
                                 '<span class="label">{}</span></a>', console_url, _("Console"), row_icon("console"),
                                 _("Console")))
    if variant.power:
        parts.extend(action_button(url, name, row.name) for name in row_actions(row))
    parts.append("</td></tr>")
    return mark_safe("".join(parts))  # noqa: S308 - constants and format_html output only


def since_words(row: DomainRow) -> str:
    """How long the VM has been in its state, as the VM page says it (instances/state_since.py)."""
    source = StateSince.FIRST_SEEN if row.state_since_at_least else StateSince.PANEL
    return Since(row.state_since, source).words()


def action_button(url: str, name: str, vm_name: str) -> SafeString:
    """One power button of a row: the VM page's action. One that can lose data (force off) is confirmed: in
    a dialog (static/js/confirm.js), else on the server's confirmation page, which the post leads to."""
    confirm = lifecycle.ACTIONS[name].confirm
    label = str(ROW_ACTIONS[name])
    extra = format_html(' class="danger" data-confirm="{}" data-confirm-title="{}"', _(confirm),
                        _("{action} {name}?").format(action=label, name=vm_name)) if confirm else ""
    return format_html('<button type="submit" form="row-action" formaction="{}action/{}/" data-act="{}" title="{}"{}>'
                       '{}<span class="label">{}</span></button>', url, name, name, label, extra,
                       row_icon(name), label)


def row_icon(name: str) -> SafeString:
    """A row button's icon: the VM page's for the same action (narrow windows show the icons alone)."""
    from instances.views.detail import ICONS  # the views import this module
    from webkvm.templatetags.icons import icon_svg

    return icon_svg("monitor" if name == "console" else ICONS[name])
