"""The serial console WebSocket (/console/serial/ws/HOST/UUID/[?takeover=1], the ticket a subprotocol).

Binary frames carry the console's bytes both ways (text frames from the browser are taken as
UTF-8 input). The close frame says why a session was refused or ended: 4403 refused, 4409 in
use by somebody else (the page offers "Take over"), 4001 taken over, 4000 ended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console.serial_holders import InUse, SerialSessions
from console.serial_session import SerialSession, open_session
from console.sockets import cancel_others, close_words, language_of, open_arguments, selected_protocol, watch
from console.tickets import Refused
from virt.errors import Message, Text
from virt.serial import SerialPipe, abort_quietly
from webkvm.blocking import blocking

CLOSE_ENDED = 4000
CLOSE_TAKEN_OVER = 4001
CLOSE_REFUSED = 4403
CLOSE_IN_USE = 4409
SEND_TIMEOUT = 30.0  # a browser that takes longer to accept one chunk is gone


class SerialConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels has no types
    session: SerialSession | None = None
    pipe: SerialPipe | None = None
    loop: asyncio.AbstractEventLoop
    tasks: list[asyncio.Task[None]]
    close_reason = ""
    language = ""  # the user's (console.sockets.language_of): the close reasons are said in it
    accepted = False
    kicked = ""  # set (from any thread) when another viewer takes the console over
    registry: SerialSessions | None = None  # None: this process's (console.serial_session.sessions)

    async def connect(self) -> None:
        self.tasks = []
        self.loop = asyncio.get_running_loop()
        arguments, query = open_arguments(self.scope)
        try:
            self.session = await blocking(open_session)(
                **arguments, take_over=(query.get("takeover") or [""])[0] == "1", kick=self._kick,
                channel=getattr(self, "channel_name", ""), registry=self.registry)
        except Refused as exc:
            # Accept only to say why: the close reason is all the page can read of a refusal.
            language = await blocking(language_of)(self.scope)
            await self.accept(subprotocol=selected_protocol(self.scope))
            await self.close(code=CLOSE_IN_USE if isinstance(exc, InUse) else CLOSE_REFUSED,
                             reason=close_words(exc, language))
            return
        self.language = await blocking(language_of)(self.scope, self.session.user)
        self.pipe = SerialPipe(self.session.stream, on_data=self._deliver_from_thread, on_end=self._ended_from_thread,
                               name=self.session.vm_uuid[:8])
        try:
            await self.accept(subprotocol=selected_protocol(self.scope))
        except BaseException as exc:  # the client left meanwhile: let go of the console and the stream
            self.close_reason = f"the connection failed as it opened: {exc}"
            await self.disconnect(1006)
            raise
        self.accepted = True
        if self.kicked:  # taken over while this one was still opening
            await self._end(self.kicked, CLOSE_TAKEN_OVER)
            return
        self.pipe.start()
        self.tasks = [asyncio.create_task(watch(self.session.lost, self._end))]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.pipe is None or self.close_reason:
            return
        self.pipe.write(bytes_data if bytes_data is not None else (text_data or "").encode())

    # Called by the pipe's worker thread.
    def _deliver_from_thread(self, data: bytes) -> bool:
        """Hand one chunk to the browser; waiting for it gives back-pressure to the console reader."""
        try:
            return bool(asyncio.run_coroutine_threadsafe(self._deliver(data), self.loop).result(SEND_TIMEOUT))
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError):
            return False  # too slow, or the loop is gone
        except Exception:  # the browser went away mid-send; disconnect() does the rest
            return False

    async def _deliver(self, data: bytes) -> bool:
        if self.close_reason:
            return False
        await self.send(bytes_data=data)
        return True

    def _ended_from_thread(self, reason: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody left to tell
            self.loop.call_soon_threadsafe(self._end_soon, reason, CLOSE_ENDED)

    def _kick(self, reason: str) -> None:
        """Another viewer took the console over (called from that viewer's thread)."""
        self.kicked = reason
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._end_soon, reason, CLOSE_TAKEN_OVER)

    async def serial_kick(self, message: dict[str, Any]) -> None:
        """Another viewer, in this process or another, took the console over (a channel layer message).
        Handled after connect() returned: Channels dispatches one message at a time."""
        if self.session is not None and message.get("token") == self.session.holder.token:
            said = message.get("said")
            self._kick(Text.of(Message.from_dict(said)) if isinstance(said, dict)
                       else str(message.get("reason") or "taken over"))

    def _end_soon(self, reason: str, code: int) -> None:
        # Before the handshake is answered, connect() itself looks at `kicked`.
        if self.accepted and not self.close_reason:
            self.tasks.append(asyncio.create_task(self._end(self.kicked or reason, code)))

    async def _end(self, reason: str, code: int = CLOSE_ENDED) -> None:
        if self.close_reason:
            return
        self.close_reason = str(reason)  # the audit's, in English; the page reads it in its user's language
        if self.pipe is not None:
            self.pipe.close()
        await self.close(code=code, reason=close_words(reason, self.language or "en"))

    async def disconnect(self, code: int) -> None:
        if not self.close_reason:
            self.close_reason = f"browser closed (code {code})"
        await cancel_others(self.tasks)
        session, self.session = self.session, None
        if session is None:
            return
        if self.pipe is not None:
            self.pipe.close()
            # Let go of the stream before the console is free for the next viewer.
            await sync_to_async(self.pipe.join, thread_sensitive=False)(5)
        else:
            await sync_to_async(abort_quietly, thread_sensitive=False)(session.stream)
        await blocking(session.release)()
        await blocking(session.record_close)(self.close_reason)
