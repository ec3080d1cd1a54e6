"""The console WebSocket on the panel's own origin (/console/ws/HOST/UUID/, the ticket a subprotocol).

Channels carries the WebSocket inside the panel's ASGI app, so `make run` serves pages and
consoles on one origin, and a reverse proxy needs one location with Upgrade headers. The
checks live in console/session.py, shared with the standalone websockify proxy. For a
display with a password the proxy has already authenticated to the VNC server
(console/target.py); the consumer then plays the server's opening towards the browser with
security type None (console/rfb.py) before relaying.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console import rfb
from console.session import ConsoleSession, open_session
from console.sockets import cancel_others, close_words, language_of, open_arguments, selected_protocol, watch
from console.target import TargetStream
from console.tickets import Refused
from virt.errors import Text, gettext_noop
from webkvm.blocking import blocking

CLOSE_REFUSED = 4403  # private-use close codes: the page shows the reason that comes with them
CLOSE_ENDED = 4000
CHUNK = 262144  # one WebSocket message per read: 64 KiB reads relayed a 720x400 Raw update at a third of the speed


class ConsoleConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels has no types
    session: ConsoleSession | None = None
    stream: TargetStream | None = None
    writer: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]]
    opening: rfb.NoAuthOpening | None = None
    close_reason = ""
    language = ""  # the user's (console.sockets.language_of): the close reasons are said in it

    async def connect(self) -> None:
        self.tasks = []
        arguments, _query = open_arguments(self.scope)
        try:
            self.session, self.stream = await blocking(open_session)(**arguments)
        except Refused as exc:
            # Accept only to say why: the close reason is all the page can read of a refusal.
            language = await blocking(language_of)(self.scope)
            await self.accept(subprotocol=selected_protocol(self.scope))
            await self.close(code=CLOSE_REFUSED, reason=close_words(exc, language))
            return
        self.language = await blocking(language_of)(self.scope, self.session.user)
        try:
            reader, self.writer = await asyncio.open_connection(sock=self.stream.sock, limit=CHUNK)
            await self.accept(subprotocol=selected_protocol(self.scope))
        except BaseException as exc:  # the client left meanwhile, or the socket failed: close what is open
            self.close_reason = f"the connection failed as it opened: {exc}"
            await self.disconnect(1006)
            raise
        if self.stream.authenticated:
            # The VNC server now waits for ClientInit, so nothing comes from it before the browser's opening ends.
            self.opening = rfb.NoAuthOpening()
            await self.send(bytes_data=rfb.NoAuthOpening.GREETING)
        self.tasks = [asyncio.create_task(self._pump_from_vnc(reader)),
                      asyncio.create_task(watch(self.session.lost, self._end))]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.writer is None or bytes_data is None:
            return  # RFB is binary; text frames carry nothing for the VNC server
        if self.opening is not None:
            try:
                reply, rest = self.opening.feed(bytes_data)
            except rfb.RfbError as exc:
                await self._end(rfb.words(exc))
                return
            if reply:
                await self.send(bytes_data=reply)
            if rest is None:
                return
            self.opening, bytes_data = None, rest
            if not bytes_data:
                return
        self.writer.write(bytes_data)
        await self.writer.drain()

    async def _pump_from_vnc(self, reader: asyncio.StreamReader) -> None:
        sent_any = False
        while data := await reader.read(CHUNK):
            sent_any = True
            await self.send(bytes_data=data)
        reason = Text(gettext_noop("the VNC server closed the connection"))
        if not sent_any and self.stream is not None and self.stream.process is not None:
            said = await sync_to_async(self.stream.ssh_error, thread_sensitive=False)()
            if said:
                reason = Text(gettext_noop("ssh tunnel to the host failed: {said}"), said=said)
        await self._end(reason)

    async def _end(self, reason: str) -> None:
        """Close with `reason` (a Text: said in the user's language; the audit keeps the English)."""
        if not self.close_reason:
            self.close_reason = str(reason)
            await self.close(code=CLOSE_ENDED, reason=close_words(reason, self.language or "en"))

    async def disconnect(self, code: int) -> None:
        await cancel_others(self.tasks)
        if self.writer is not None:
            self.writer.close()
        if self.stream is not None:
            await sync_to_async(self.stream.close, thread_sensitive=False)()
        if self.session is not None:
            await blocking(self.session.record_close)(self.close_reason or f"browser closed (code {code})")
            self.session = None
