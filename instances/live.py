"""Live VM rows pushed to open pages: one watcher per host, shared by every viewer.

A watcher follows its host's libvirt events (a VM started, stopped, rebooted, a device came or
went, a job ended, the connection closed) and, for CPU and memory figures, the host's shared bulk
read once per interval. It publishes what changed to the Channels group of the host; each page's
WebSocket (instances/consumers.py) passes on only the rows its user may see. The libvirt calls a
host receives therefore do not grow with the number of open pages.

The watcher runs on the event loop of a panel process that has viewers of the host. With one
process the channel layer is in memory; with several (a Redis channel layer) a lease picks the one
process whose watcher publishes, and another takes over when that process goes (webkvm/leases.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from hosts import services
from hosts.models import Host
from instances import state_since
from instances.host_rows import HostRows, host_rows
from virt.errors import HostBusy, Said, VirtError, host_words
from virt.events import CONNECTION, DOMAIN, HostEvent
from webkvm.blocking import blocking
from webkvm.leases import leases

log = logging.getLogger(__name__)

IDLE_GRACE_SECONDS = 10.0  # a watcher outlives its last viewer this long (a page reload keeps it)
HOST_REFRESH_TICKS = 10  # re-read the host row (renamed, removed, new address) every this many ticks


def group_name(host_pk: int) -> str:
    """The group of a host's viewers: the watcher's changes go here."""
    return f"live.host.{host_pk}"


def watch_group(host_pk: int) -> str:
    """The group of a host's watchers (one per process with viewers): a new viewer asks here for the rows
    the next changes will be relative to; only the lease holder answers."""
    return f"live.watch.{host_pk}"


# What an event-triggered read publishes: state and shape. CPU figures wait for the periodic read, so an
# event about one VM makes no frame about another for a viewer who may see only that other.
STATE_FIELDS = ("name", "state", "state_since", "vcpus", "memory_kib", "max_memory_kib", "autostart", "managed_save")


def row_changes(before: dict[str, dict[str, Any]] | None, after: dict[str, dict[str, Any]],
                fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """What a viewer needs to move from `before` to `after`: changed rows (in `fields` when given), added
    and removed VMs."""
    if before is None:
        return {"rows": after, "added": [], "removed": []}

    def changed(uuid: str, row: dict[str, Any]) -> bool:
        old = before.get(uuid)
        if old is None or fields is None:
            return old != row
        return any(old.get(name) != row.get(name) for name in fields)

    return {"rows": {uuid: row for uuid, row in after.items() if changed(uuid, row)},
            "added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after))}


def _rows_with_states(host: Host) -> HostRows:
    """The host's rows, each with since when it is in its state: a change the watcher sees is recorded for
    every process (instances/state_since.py)."""
    snapshot = host_rows(host)
    state_since.apply(host, snapshot)
    return snapshot


@dataclass
class Watcher:
    host_pk: int
    viewers: int = 0
    idle_since: float | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    published: dict[str, dict[str, Any]] | None = None  # the rows viewers hold now, by UUID
    words: str = ""  # how the host's read failed (a virt.errors.Text: each viewer reads it in their language)
    busy: bool = False  # the failure is only that the host is busy
    replies: list[str] = field(default_factory=list)  # channels of new viewers waiting for the rows
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # listening for new viewers' requests

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        layer = get_channel_layer()
        interval = settings.WEBKVM_LIVE_INTERVAL_MS / 1000
        lease = f"live-watcher:{self.host_pk}"
        unsubscribe: Callable[[], None] | None = None
        followed: object = None
        host: Host | None = None
        tick = 0
        by_event = False
        inbox = await layer.new_channel()
        await layer.group_add(watch_group(self.host_pk), inbox)
        listener = loop.create_task(self._requests(layer, inbox))
        self.ready.set()

        def on_event(event: HostEvent) -> None:  # libvirt's event thread
            if event.topic in (DOMAIN, CONNECTION):
                loop.call_soon_threadsafe(self.wake.set)

        try:
            while not self._idle_too_long(loop.time()):
                if host is None or tick % HOST_REFRESH_TICKS == 0:
                    host = await blocking(Host.objects.filter(pk=self.host_pk).first)()
                    if host is None:
                        return
                tick += 1
                connection = await blocking(services.connection)(host)
                if connection is not followed:
                    if unsubscribe:
                        unsubscribe()
                    unsubscribe, followed = connection.subscribe(on_event), connection
                if await blocking(leases.hold)(lease, interval * 5):
                    await self._publish(layer, host, STATE_FIELDS if by_event else None)
                    await self._answer(layer, host)
                try:
                    await asyncio.wait_for(self.wake.wait(), interval)
                    by_event = True
                except TimeoutError:
                    by_event = False
                self.wake.clear()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live watcher of host %s stopped", self.host_pk)
        finally:
            listener.cancel()
            if unsubscribe:
                unsubscribe()
            await layer.group_discard(watch_group(self.host_pk), inbox)
            await blocking(leases.release)(lease)
            if watchers.get(self.host_pk) is self:
                del watchers[self.host_pk]

    def _idle_too_long(self, now: float) -> bool:
        return self.viewers <= 0 and self.idle_since is not None and now - self.idle_since > IDLE_GRACE_SECONDS

    async def _requests(self, layer: Any, inbox: str) -> None:
        while True:
            message = await layer.receive(inbox)
            if message.get("type") == "snapshot.request" and message["reply_to"] not in self.replies:
                self.replies.append(str(message["reply_to"]))
                self.wake.set()

    async def _publish(self, layer: Any, host: Host, fields: tuple[str, ...] | None) -> None:
        try:
            snapshot = await blocking(_rows_with_states)(host)
        except VirtError as exc:
            words = host_words(exc)
            if words != self.words:
                self.words, self.busy = words, isinstance(exc, HostBusy)
                await layer.group_send(group_name(host.pk), self._message(host, words=words))
            return
        current = snapshot.dicts
        if self.published is None:  # the first read is the baseline: new viewers are sent it in full
            self.published, self.words = current, ""
            return
        changes = row_changes(self.published, current, fields)
        recovered = bool(self.words)
        if fields is None:
            self.published = current
        else:  # rows left out keep their old figures, so the next periodic read still sends their CPU
            self.published = {uuid: changes["rows"].get(uuid, self.published.get(uuid, row))
                               for uuid, row in current.items()}
        self.words = ""
        if changes["rows"] or changes["added"] or changes["removed"] or recovered:
            await layer.group_send(group_name(host.pk), self._message(host, **changes))

    async def _answer(self, layer: Any, host: Host) -> None:
        """Send each new viewer the rows that the next changes will be relative to."""
        replies, self.replies = self.replies, []
        for channel in replies:
            await layer.send(channel, self._message(host, rows=self.published or {}, words=self.words, full=True))

    def _message(self, host: Host, *, rows: dict[str, Any] | None = None, added: list[str] | None = None,
                 removed: list[str] | None = None, words: str = "", full: bool = False) -> dict[str, Any]:
        """The words travel as data (Said.as_dict), so that each viewer's socket says them in its user's language
        (instances/consumers.py); `busy` tells a busy host from one that is down without reading them."""
        return {"type": "host.rows", "host": host.name, "host_pk": host.pk,
                "words": words.as_dict() if isinstance(words, Said) else words, "busy": bool(words) and self.busy,
                "full": full, "rows": rows or {}, "added": added or [], "removed": removed or []}


watchers: dict[int, Watcher] = {}


async def want(host_pk: int) -> None:
    """A viewer of this process follows the host: make sure its watcher runs (on the running loop) and
    listens for the viewer's request for the rows."""
    watcher = watchers.get(host_pk)
    loop = asyncio.get_running_loop()
    if watcher is None or watcher.task is None or watcher.task.done() or watcher.task.get_loop() is not loop:
        watcher = Watcher(host_pk)
        watchers[host_pk] = watcher
        watcher.task = loop.create_task(watcher.run(), name=f"live-watcher-{host_pk}")
    watcher.viewers += 1
    watcher.idle_since = None
    await asyncio.wait_for(watcher.ready.wait(), 10)


def unwant(host_pk: int) -> None:
    watcher = watchers.get(host_pk)
    if watcher is None:
        return
    watcher.viewers -= 1
    if watcher.viewers <= 0:
        watcher.idle_since = asyncio.get_running_loop().time()
