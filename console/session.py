"""One console session, whichever proxy carries its bytes (the panel's Channels consumer or
`manage.py consoleproxy`): the checks before the first byte, the re-checks while it lasts.

Nothing the client sends is used as an address: only the ticket, the VM named in the URL
(which must be the ticket's) and the login session cookie, or, for a ticket minted through the API, the
`Authorization: Bearer` header with that same API token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from console import target as targets
from console.models import ConsoleTicket
from console.tickets import Refused, consume, refuse, session_user, through, usable_token
from hosts.models import Host
from virt.errors import Text, gettext_noop
from webkvm import audit, permissions

WS_PATH_PREFIX = "/console/ws/"


def origin_allowed(origin: str, host_header: str) -> bool:
    """Same rule as Django's CSRF check: the page's own origin (a host in ALLOWED_HOSTS) or a
    CSRF_TRUSTED_ORIGINS entry. Blocks cross-site WebSocket hijacking (Nova CVE-2015-0259)."""
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if f"{parts.scheme}://{parts.netloc}".lower() in {o.lower().rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    domain, _port = split_domain_port(host_header)
    return bool(domain) and parts.netloc.lower() == host_header.lower() and validate_host(domain,
                                                                                          settings.ALLOWED_HOSTS)


def admit(*, ticket: str, host_name: str, vm_uuid: str, session_key: str, origin: str, host_header: str,
          remote_addr: str | None, kind: str = "vnc", presented: str = "") -> ConsoleTicket:
    """The checks before any console opens: the page's own origin, then the single-use ticket of `kind`.
    `presented`: the handshake's `Authorization: Bearer` token text ("" without one).
    Returns the spent ticket (user and host); Refused, audited, on a failure."""
    # The Origin rule guards browsers against cross-site WebSocket hijacking, where the ambient session cookie
    # is the key. A browser always sends Origin and cannot set Authorization on a WebSocket, so a bearer
    # header means a non-browser client (the API's): it may send no Origin at all, but an Origin it does
    # send must still be the panel's own. A bearer header opens only a ticket minted through that very
    # token (tickets.consume), never a session's, so a missing Origin never lets a cookie in.
    if not (presented and not origin) and not origin_allowed(origin, host_header):
        raise refuse(Refused(gettext_noop("foreign origin {origin}"), origin=repr(origin[:100])), host_name=host_name,
                     vm_uuid=vm_uuid, remote_addr=remote_addr)
    return consume(ticket, host_name=host_name, vm_uuid=vm_uuid, session_key=session_key, remote_addr=remote_addr,
                   kind=kind, presented=presented)


def via_of(ticket: ConsoleTicket) -> str:
    """How the audit names the way a console was opened: "through the API, token NAME", or "" for a session."""
    return through(ticket.api_token) if ticket.api_token is not None else ""


def access_lost(user: Any, session_key: str, host: Host, vm_uuid: str,
                api_token_id: int | None = None) -> tuple[str, Host | None]:
    """Why an open console must end for its user ("" while it may go on): logout (or, for a console opened
    with an API token, that token revoked, expired or made read-only), host removed, grant withdrawn.
    Returns the reason and the host as the database has it now."""
    if api_token_id is not None:
        api_token, why = usable_token(api_token_id)
        if api_token is None or api_token.user.pk != user.pk:
            return why or Text(gettext_noop("the API token changed hands")), None
        now = api_token.user
    else:
        now = session_user(session_key)
        if now is None or now.pk != user.pk:
            return Text(gettext_noop("you were logged out")), None
    current = Host.objects.filter(pk=host.pk).first()
    if current is None:
        return Text(gettext_noop("the host was removed from the panel")), None
    if not permissions.can(now, "console", host=current, vm_uuid=vm_uuid):
        return Text(gettext_noop("your console permission on this VM was withdrawn")), None
    return "", current


@dataclass
class ConsoleSession:
    user: Any
    host: Host
    vm_uuid: str
    session_key: str
    target: targets.Target
    remote_addr: str | None
    api_token_id: int | None = None  # opened with an API token (not a login session)
    via: str = ""  # "through the API, token NAME" for the audit

    def lost(self) -> str:
        """Why the session must end now ("" while it may go on): logout, grant withdrawn, VM gone or moved."""
        reason, host = access_lost(self.user, self.session_key, self.host, self.vm_uuid, self.api_token_id)
        if host is None:
            return reason
        try:
            display = targets.current_display(host, self.vm_uuid)
        except Refused as exc:
            return exc.told(self.user)
        if display.port != self.target.port:  # the port may now belong to another VM
            return Text(gettext_noop("the VM's display moved"))
        return ""

    def record_close(self, reason: str) -> None:
        detail = reason or "closed"
        audit.record(None, "console.close", object_type="vm", object_name=self.vm_uuid, host_name=self.host.name,
                     detail=f"{detail} ({self.via})" if self.via else detail, user=self.user,
                     remote_addr=self.remote_addr)


def open_session(*, ticket: str, host_name: str, vm_uuid: str, session_key: str, origin: str, host_header: str,
                 remote_addr: str | None, presented: str = "") -> tuple[ConsoleSession, targets.TargetStream]:
    """Every check, then the connection to the VNC server; Refused (audited) on any failure."""
    spent = admit(ticket=ticket, host_name=host_name, vm_uuid=vm_uuid, session_key=session_key, origin=origin,
                  host_header=host_header, remote_addr=remote_addr, presented=presented)
    where: dict[str, Any] = {"host_name": host_name, "vm_uuid": vm_uuid, "remote_addr": remote_addr,
                             "user": spent.user, "via": via_of(spent)}
    try:
        target = targets.resolve(spent.host, str(spent.vm_uuid))
        stream = targets.open_stream(spent.host, target)
    except Refused as exc:
        raise refuse(exc, **where) from None
    # The password did its work in open_stream; the session that lives on does not keep it.
    session = ConsoleSession(user=spent.user, host=spent.host, vm_uuid=str(spent.vm_uuid), session_key=session_key,
                             target=replace(target, password=None), remote_addr=remote_addr,
                             api_token_id=spent.api_token_id, via=via_of(spent))
    return session, stream


def parse_ws_path(path: str) -> tuple[str, str] | None:
    """(host name, VM UUID) from /console/ws/HOST/UUID/, for the standalone proxy."""
    if not path.startswith(WS_PATH_PREFIX):
        return None
    parts = path[len(WS_PATH_PREFIX):].split("?", 1)[0].strip("/").split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def session_cookie(cookie_header: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return ""
    morsel = jar.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel else ""
