"""The job page's socket (/jobs/ws/ID/): the job's JSON (as its status.json) at once and after each change
its worker announces (jobs/push.py); closed when the job has ended. Logged-in users from the panel's own
origin only, who may see the job; anything else is refused before a byte of it is sent.

The socket also reads the row every RECHECK_SECONDS: a push can be lost (Redis restarting), and the panel
alone (no Redis, jobs in its own threads) has no channel layer that reaches across threads' event loops.

Before each read, jobs whose worker is gone are ended (jobs/reconcile.py now_and_then: at most once per lease
period among the panel's processes), so a job whose worker died is seen ending here too.

Each socket speaks its viewer's language (the one their pages speak): the job's words are translated for
them as they are read, never in the worker that wrote them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import translation

from console.session import origin_allowed, session_cookie
from console.tickets import session_user
from jobs import push
from jobs.models import Job
from jobs.reconcile import now_and_then
from webkvm import languages
from webkvm.blocking import blocking

CLOSE_REFUSED = 4403
CLOSE_ENDED = 4000  # the job has ended: nothing more will come
RECHECK_SECONDS = 2.0


def _status(session_key: str, job_id: int, language: str = settings.LANGUAGE_CODE) -> dict[str, Any] | None:
    """The job's JSON for the session's user, in `language`; None when they may not see it."""
    from jobs.views import as_json

    now_and_then()
    user = session_user(session_key)
    job = Job.objects.select_related("host", "owner").filter(pk=job_id).first()
    if job is None or not push.may_see(user, job):
        return None
    with translation.override(language):
        return as_json(job, user)


def language_of(session_key: str, headers: dict[str, str]) -> str:
    """The language the viewer's pages speak (webkvm.languages.of_caller)."""
    return languages.of_caller(session_user(session_key), headers.get("cookie", ""), headers.get("accept-language", ""))


class JobConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels has no types
    job_id = 0
    session_key = ""
    language = settings.LANGUAGE_CODE
    last: dict[str, Any] | None = None
    recheck: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope["headers"]}
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        self.session_key = session_cookie(headers.get("cookie", ""))
        if not origin_allowed(headers.get("origin", ""), headers.get("host", "")):
            await self.close(code=CLOSE_REFUSED)
            return
        self.language = await blocking(language_of)(self.session_key, headers)
        status = await blocking(_status)(self.session_key, self.job_id, self.language)
        if status is None:
            await self.close(code=CLOSE_REFUSED)
            return
        await self.accept()
        await self.channel_layer.group_add(push.group(self.job_id), self.channel_name)
        await self._send(status)  # after joining: a change between the read and the join is sent again
        self.recheck = asyncio.create_task(self._recheck())

    async def job_changed(self, _event: dict[str, Any]) -> None:
        await self._read_and_send()

    async def _recheck(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            await self._read_and_send()

    async def _read_and_send(self) -> None:
        status = await blocking(_status)(self.session_key, self.job_id, self.language)
        if status is None:  # logged out meanwhile
            await self.close(code=CLOSE_REFUSED)
            return
        if status != self.last:
            await self._send(status)

    async def _send(self, status: dict[str, Any]) -> None:
        self.last = status
        await self.send(text_data=json.dumps(status))
        if not status["active"]:
            await self.close(code=CLOSE_ENDED)

    async def disconnect(self, code: int) -> None:
        if self.recheck is not None:
            self.recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.recheck
        await self.channel_layer.group_discard(push.group(self.job_id), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page sends nothing that matters."""
