"""The live-updates WebSocket (/live/ws/?scope=fleet | ?host=NAME | ?vm=HOST/UUID).

Logged-in users only, from the panel's own origin, with the permission check every page uses:
a user receives rows only for VMs they may see, filtered here from the host's shared watcher
(instances/live.py) and re-checked every few seconds (logout, grant withdrawn, grant added).
Messages: {"vms": {"HOST/UUID": row}, "added": [...], "removed": [...], "unreachable": {HOST: words},
"busy": [HOST], "full": bool}, one per host; the first of each host is "full" (all its rows this user may see).
Keys, states and codes stay English (scripts compare them); what is shown (a host's words, each row's
`state_label`) is in the user's language (webkvm/languages.py), learnt at connect and at each re-check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import translation

from console.session import origin_allowed, session_cookie
from console.tickets import session_user
from instances import live
from instances.fleet import Visibility, visible
from instances.templatetags.vm import state_label
from virt.errors import HOST_BUSY, HOST_UNAVAILABLE, Text
from webkvm import languages
from webkvm.blocking import blocking
from webkvm.i18n import said, said_dict

CLOSE_REFUSED = 4403
ASK_AGAIN_SECONDS = 2.0  # a page without its first rows asks the host's watchers again this often
ASK_ATTEMPTS = 30


@dataclass(frozen=True)
class Scope:
    """Which rows a page shows: every host's (fleet), one host's, or one VM's."""

    host: str = ""
    vm: str = ""  # UUID, lower case, with `host`

    @classmethod
    def parse(cls, query: dict[str, list[str]]) -> Scope | None:
        if (query.get("scope") or [""])[0] == "fleet":
            return cls()
        if "host" in query:
            return cls(host=query["host"][0][:63])
        if "vm" in query:
            host, _, uuid = query["vm"][0].partition("/")
            return cls(host=host[:63], vm=uuid.lower()[:36]) if host and uuid else None
        return None


def _allowed(seen: Visibility, scope: Scope) -> dict[int, set[str] | None]:
    """Per host id in scope, the VM UUIDs the user may see there (None: all of them)."""
    out: dict[int, set[str] | None] = {}
    for host in seen.hosts:
        if scope.host and host.name != scope.host:
            continue
        uuids = None if seen.granted is None else seen.granted.get(host.pk, set())
        if scope.vm:
            uuids = {scope.vm} if uuids is None or scope.vm in uuids else set()
            if not uuids:
                continue
        out[host.pk] = uuids
    return out


def _check(session_key: str, scope: Scope) -> tuple[Any, dict[int, set[str] | None], dict[int, str]]:
    """The session's user, what they may see in scope, and the names of those hosts (user None: refused)."""
    user = session_user(session_key)
    if user is None:
        return None, {}, {}
    seen = visible(user)
    allowed = _allowed(seen, scope)
    return user, allowed, {h.pk: h.name for h in seen.hosts if h.pk in allowed}


# A host's words as an older watcher may send them (plain English): the panel's own part is translated here.
_PREFIXES = {"unreachable: ": "unreachable: {error}", "error: ": "error: {error}"}


def host_words_shown(words: object, *, busy: bool, admin: bool) -> str:
    """A host's words in the active language: all of them for admins (the host's own text as it said it),
    only "host busy" or "host unavailable" for anybody else; "" while the host answers."""
    if not words:
        return ""
    if not admin:
        return said(HOST_BUSY if busy or (isinstance(words, str) and words.startswith("busy")) else HOST_UNAVAILABLE)
    if isinstance(words, dict):
        return said_dict(words)
    text = str(words)
    for prefix, template in _PREFIXES.items():
        if text.startswith(prefix):
            return said(Text(template, error=text.removeprefix(prefix)))
    return said(Text(text))


class LiveConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels has no types
    scope_of_page: Scope
    session_key = ""
    allowed: dict[int, set[str] | None]
    host_names: dict[int, str]
    recheck: asyncio.Task[None] | None = None
    unanswered: set[int]  # hosts whose watcher has not yet sent this page their rows
    asking: set[asyncio.Task[None]]
    language = settings.LANGUAGE_CODE  # the user's (webkvm/languages.py): what this socket's words are said in
    browser: tuple[str, str] = ("", "")  # the Cookie and Accept-Language the socket came with

    async def connect(self) -> None:
        self.allowed, self.host_names = {}, {}
        self.unanswered, self.asking = set(), set()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope["headers"]}
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        page = Scope.parse(query)
        if page is None or not origin_allowed(headers.get("origin", ""), headers.get("host", "")):
            await self.close(code=CLOSE_REFUSED)
            return
        self.scope_of_page = page
        self.session_key = session_cookie(headers.get("cookie", ""))
        user, allowed, names = await blocking(_check)(self.session_key, page)
        if user is None:
            await self.close(code=CLOSE_REFUSED)
            return
        self.browser = (headers.get("cookie", ""), headers.get("accept-language", ""))
        self.language = await blocking(languages.of_caller)(user, *self.browser)
        await self.accept()
        await self._follow(allowed, names)
        self.recheck = asyncio.create_task(self._recheck())

    async def _follow(self, allowed: dict[int, set[str] | None], names: dict[int, str]) -> None:
        """Join the groups of hosts newly in view, leave those no longer in it."""
        for pk in set(self.allowed) - set(allowed):
            await self.channel_layer.group_discard(live.group_name(pk), self.channel_name)
            live.unwant(pk)
        added = set(allowed) - set(self.allowed)
        for pk in added:
            await self.channel_layer.group_add(live.group_name(pk), self.channel_name)
            await live.want(pk)
        self.allowed, self.host_names = allowed, names
        for pk in added:  # the host's watcher answers with the rows its next changes are relative to
            self.unanswered.add(pk)
            self.asking.add(asyncio.create_task(self._ask_for_rows(pk)))

    async def _ask_for_rows(self, pk: int) -> None:
        """Ask the host's watchers for the rows until one answers: the lease holder may be another process's
        watcher that joined the host's group only after the first request was sent, and never saw it."""
        try:
            for _ in range(ASK_ATTEMPTS):
                if pk not in self.unanswered or pk not in self.allowed:
                    return
                await self.channel_layer.group_send(live.watch_group(pk), {
                    "type": "snapshot.request", "reply_to": self.channel_name})
                await asyncio.sleep(ASK_AGAIN_SECONDS)
        finally:
            self.asking.discard(asyncio.current_task())

    async def _recheck(self) -> None:
        while True:
            await asyncio.sleep(settings.WEBKVM_CONSOLE_RECHECK_SECONDS)
            user, allowed, names = await blocking(_check)(self.session_key, self.scope_of_page)
            if user is None:
                await self.close(code=CLOSE_REFUSED)
                return
            self.language = await blocking(languages.of_caller)(user, *self.browser)  # one chosen meanwhile
            await self._follow(allowed, names)

    async def disconnect(self, code: int) -> None:
        for task in list(self.asking):
            task.cancel()
        if self.recheck is not None:
            self.recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.recheck
        await self._follow({}, {})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page sends nothing that matters."""

    async def host_rows(self, event: dict[str, Any]) -> None:
        """A host's watcher published changes: pass on those this user may see."""
        pk = int(event["host_pk"])
        if pk not in self.allowed:
            return
        if event["full"]:
            if pk not in self.unanswered:
                return  # a second answer to a repeated request: the page already has the rows
            self.unanswered.discard(pk)
        uuids = self.allowed[pk]
        name = event["host"]
        busy = bool(event.get("busy"))

        def mine(uuid: str) -> bool:
            return uuids is None or uuid in uuids

        with translation.override(self.language):  # this user's words, whoever else watches the host
            words = host_words_shown(event["words"], busy=busy, admin=uuids is None)  # admins see all of a host
            message = {
                "full": event["full"],
                "vms": {f"{name}/{row['uuid']}": {**row, "state_label": state_label(row.get("state", ""))}
                        for uuid, row in event["rows"].items() if mine(uuid)},
                "added": [f"{name}/{uuid}" for uuid in event["added"] if mine(uuid)],
                "removed": [f"{name}/{uuid}" for uuid in event["removed"] if mine(uuid)],
                "unreachable": {name: words},
                "busy": [name] if words and busy else [],
            }
        words_only = event["full"] or not (event["rows"] or event["added"] or event["removed"])
        # Nothing at all about VMs this user may not see: not even that something changed.
        if message["vms"] or message["added"] or message["removed"] or words_only:
            await self.send(text_data=json.dumps(message))
