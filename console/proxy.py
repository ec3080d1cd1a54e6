"""The standalone console proxy (`manage.py consoleproxy`), built on websockify.

For deployments that run consoles in their own process: the reverse proxy sends
/console/ws/ here and everything else to the panel. websockify does the WebSocket framing
and the relay loop; this handler adds the same checks as the panel's Channels consumer
(console/session.py). It serves no files (websockify's only_upgrade) and uses no token plugin.
For a display with a password it plays the server's RFB opening towards the browser with
security type None (console/rfb.py), as the panel's consumer does.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

from django.db import close_old_connections
from websockify.websocketproxy import LibProxyServer, ProxyRequestHandler

from console import rfb
from console.session import ConsoleSession, open_session, parse_ws_path, session_cookie
from console.sockets import close_words, language_from
from console.target import TargetStream
from console.tickets import Refused, bearer, from_protocols
from virt.errors import Text, gettext_noop

CLOSE_REFUSED, CLOSE_ENDED = 4403, 4000
BROWSER_OPENING_SECONDS = 30.0


class ConsoleProxyHandler(ProxyRequestHandler):  # type: ignore[misc]  # websockify has no types
    console: ConsoleSession | None = None
    stream: TargetStream | None = None
    end_reason = ""
    language = "en"  # the user's (console.sockets.language_from): the close reasons are said in it

    def handle_upgrade(self) -> None:
        """Only the handshake here (websockify answers the `binary` subprotocol the browser offers first, never
        the ticket): a request that fails it (no Sec-WebSocket-Version, say) spends no ticket and opens nothing."""
        close_old_connections()
        if parse_ws_path(self.path) is None:
            self.send_error(404)
            return
        super().handle_upgrade()

    def new_websocket_client(self) -> None:
        """After the handshake: every check, then the VNC server; nothing from the client is an address.
        Whatever happens, what was opened is closed and the end is audited."""
        route = parse_ws_path(self.path)
        assert route is not None  # handle_upgrade refused the rest
        try:
            self.console, self.stream = open_session(
                ticket=from_protocols(self.headers.get("Sec-WebSocket-Protocol", "").split(",")),
                host_name=route[0], vm_uuid=route[1],
                session_key=session_cookie(self.headers.get("Cookie", "")), origin=self.headers.get("Origin", ""),
                host_header=self.headers.get("Host", ""), remote_addr=self.client_address[0],
                presented=bearer(self.headers.get("Authorization", "")))
        except Refused as exc:  # told to the page in the close frame, as the panel's consumer does
            language = language_from(self.headers.get("Cookie", ""), self.headers.get("Accept-Language", ""))
            raise self.CClose(CLOSE_REFUSED, close_words(exc, language) or "refused") from None
        self.language = language_from("", self.headers.get("Accept-Language", ""), self.console.user)
        try:
            if self.stream.authenticated:
                self._open_for_browser(self.stream.sock)
            self.do_proxy(self.stream.sock)
        except self.CClose as exc:
            self.end_reason = self.end_reason or str(exc.args[1] if len(exc.args) > 1 else exc)
            raise
        except OSError as exc:
            self.end_reason = self.end_reason or f"connection failed: {exc.strerror or exc}"
            raise
        finally:
            self.stream.close()
            self.console.record_close(self.end_reason or "closed")

    def _open_for_browser(self, target: socket.socket) -> None:
        """The server's part of the RFB opening, security type None; what follows it goes to the VNC server."""
        opening = rfb.NoAuthOpening()
        self._send([opening.GREETING])
        deadline = time.monotonic() + BROWSER_OPENING_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.request], [], [], left)[0]:
                continue
            bufs, closed = self.recv_frames()
            for index, buf in enumerate(bufs):
                try:
                    reply, rest = opening.feed(buf)
                except rfb.RfbError as exc:
                    self.end_reason = str(exc)
                    raise self.CClose(CLOSE_ENDED, close_words(rfb.words(exc), self.language)) from None
                if reply:
                    self._send([reply])
                if rest is not None:
                    target.sendall(rest + b"".join(bufs[index + 1:]))
                    return
            if closed:
                raise self.CClose(closed["code"], closed["reason"])
        unfinished = Text(gettext_noop("the browser did not finish the RFB opening"))
        self.end_reason = str(unfinished)
        raise self.CClose(CLOSE_ENDED, close_words(unfinished, self.language))

    def _send(self, bufs: list[bytes]) -> None:
        pending = self.send_frames(bufs)
        while pending:
            select.select([], [self.request], [], 1)
            pending = self.send_frames()

    def send_ping(self, data: bytes = b"") -> None:
        """websockify's heartbeat, every WEBKVM_CONSOLE_RECHECK_SECONDS: re-check before each ping."""
        assert self.console is not None
        reason = self.console.lost()
        if reason:
            self.end_reason = str(reason)
            raise self.CClose(CLOSE_ENDED, close_words(reason, self.language))
        super().send_ping(data)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            close_old_connections()


def make_server(listen_host: str, listen_port: int, recheck_seconds: float, **options: Any) -> LibProxyServer:
    """A threaded websockify server: no web root (so no files), heartbeat = re-check interval."""
    return LibProxyServer(RequestHandlerClass=ConsoleProxyHandler, listen_host=listen_host, listen_port=listen_port,
                          web="", heartbeat=recheck_seconds, **options)
