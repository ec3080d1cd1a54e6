"""Minting and spending console tickets.

A ticket is 32 random bytes shown once to the browser; the database keeps only its sha256.
It is valid for TICKET_SECONDS, spent by one atomic UPDATE (so two connections racing for
the same ticket cannot both win) and bound to user, host, VM and what it was minted through: the login
session, or the API token of an API caller (whose WebSocket handshake then sends `Authorization: Bearer
TOKEN`, the same token, instead of a session cookie).
Every ticket minted, used or refused leaves an audit record; spent and expired tickets are
deleted at the next mint, so the table holds only the last minute's.

The browser sends the ticket as a WebSocket subprotocol (`webkvm.ticket.TICKET`, beside `binary`,
the one the server selects), never in the URL: URLs end up in access logs, handshake headers do not.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta
from importlib import import_module
from types import SimpleNamespace
from typing import Any, cast

from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest
from django.utils import timezone

from api.models import ApiToken
from console.models import ConsoleTicket
from hosts.models import Host
from virt.errors import HOST_UNAVAILABLE, Said, Text, VirtError, gettext_noop, hidden_words
from webkvm import audit, permissions
from webkvm.models import AuditResult

TICKET_SECONDS = 30
MAX_TICKET_LENGTH = 100  # token_urlsafe(32) is 43 characters; anything much longer is junk
# A ticket (URL-safe base64: letters, digits, - and _) is a valid subprotocol token after this prefix.
TICKET_PROTOCOL = "webkvm.ticket."
SELECTED_PROTOCOL = "binary"  # what the server answers; noVNC and the serial page offer it
VM_GONE = gettext_noop("the VM no longer exists on this host")
# A ticket for the other console, in words (each sentence whole, for its translation).
OTHER_KIND = {("vnc", "serial"): gettext_noop("console ticket is for the VNC console, not the serial one"),
              ("serial", "vnc"): gettext_noop("console ticket is for the serial console, not the vnc one")}


class Refused(Said, Exception):
    """The console is refused. The message is shown to the user, so it names no secret.

    `reason` is a message of ours (a virt.errors.Text, or a template marked with gettext_noop and its
    `params`): str() is English (the audit record), webkvm.i18n.said() shows it in the reader's language.
    `host_said`: the host's own words (libvirt's, ssh's) behind the refusal, apart from the panel's:
    refuse() keeps them in the audit record and shows them to admins only."""

    def __init__(self, reason: str, host_said: str = "", hidden_as: str = HOST_UNAVAILABLE, /,
                 **params: object) -> None:
        self.reason = Text.of(reason) if isinstance(reason, Said) else Text(reason, **params)
        self.host_said, self.hidden_as = host_said, hidden_as
        self.text = self._words(host_said)
        self.template, self.params = self.text.template, self.text.params
        super().__init__(str(self.text))

    def _words(self, host_said: str | Text) -> Text:
        if not host_said:
            return self.reason
        return Text(gettext_noop("{reason}: {host_said}"), reason=self.reason, host_said=host_said)

    def told(self, user: Any) -> Text:
        """What `user` reads of it: all of it for admins, the panel's words for everybody else."""
        if not self.host_said or permissions.is_admin(user):
            return self.text
        return self._words(Text.of(self.hidden_as))


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def protocols(token: str) -> list[str]:
    """The WebSocket subprotocols a browser offers to open a console with `token`."""
    return [SELECTED_PROTOCOL, TICKET_PROTOCOL + token]


def from_protocols(offered: list[str]) -> str:
    """The ticket among the offered subprotocols ("" when there is none)."""
    return next((p.strip()[len(TICKET_PROTOCOL):] for p in offered if p.strip().startswith(TICKET_PROTOCOL)), "")


def prune() -> int:
    """Delete tickets that can open nothing any more: expired at least TICKET_SECONDS ago, used or not (a
    later attempt with one is refused as an unknown ticket)."""
    return ConsoleTicket.objects.filter(expires__lt=timezone.now() - timedelta(seconds=TICKET_SECONDS)).delete()[0]


def api_token_of(request: Any) -> ApiToken | None:
    """The API token the request came with (the API's DRF request sets `auth`), None for a session."""
    token = getattr(request, "auth", None)
    return token if isinstance(token, ApiToken) else None


def through(token: ApiToken) -> str:
    """How the audit names a token's console: the API's own words (api/auth.py via)."""
    return f"through the API, token {token.name}"


def bearer(header: str) -> str:
    """The token text of an `Authorization: Bearer TOKEN` header ("" for none or another scheme)."""
    parts = header.split()
    return parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else ""


def mint(request: HttpRequest, host: Host, vm_uuid: str, kind: str = "vnc") -> str:
    """A new ticket for the requesting user; raises PermissionDenied (audited) without the console grant.

    `kind` ("vnc" or "serial") is the only console the ticket opens. A ticket asked for with an API token is
    bound to that token; any other to the login session."""
    permissions.require(request, "console", host=host, vm_uuid=vm_uuid)
    api_token = api_token_of(request)
    if api_token is not None:
        if api_token.read_only:  # the API refuses the POST already; opening a console is not a read
            raise Refused(gettext_noop("a read-only API token opens no console"))
        binding: dict[str, Any] = {"api_token": api_token, "session_hash": ""}
    else:
        session_key = request.session.session_key
        if not session_key:  # a logged-in user always has one; be explicit rather than bind to ""
            raise Refused(gettext_noop("no login session"))
        binding = {"session_hash": digest(session_key)}
    token = secrets.token_urlsafe(32)
    prune()  # every mint cleans up, so the table stays as small as the last minute's use: no cron needed
    ConsoleTicket.objects.create(
        token_hash=digest(token), user=cast(Any, request.user), host=host, vm_uuid=vm_uuid,
        expires=timezone.now() + timedelta(seconds=TICKET_SECONDS), kind=kind, **binding,
    )
    audit.record(request, "console.ticket", object_type="vm", object_name=vm_uuid, host_name=host.name,
                 detail=f"{kind}, valid {TICKET_SECONDS} s, single use")
    return token


def session_user(session_key: str) -> Any:
    """The active user logged in with this session key, or None (logged out, expired, password changed)."""
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    # auth.get_user also checks the session's password hash, exactly as for a page request.
    user = auth.get_user(cast(HttpRequest, SimpleNamespace(session=store)))
    return user if user.is_authenticated and user.is_active else None


def host_refusal(reason: str, exc: VirtError) -> Refused:
    """A refusal for a failure the host reported: its words reach admins only (webkvm.operations.told).
    `reason` is a message of ours (a Text, or a template of gettext_noop without parameters)."""
    if not exc.from_host:
        return Refused(gettext_noop("{reason}: {error}"),
                       reason=Text.of(reason) if isinstance(reason, Said) else Text(reason), error=Text.of(exc))
    return Refused(reason, str(exc), hidden_words(exc))


def refuse(reason: str | Refused, *, host_name: str, vm_uuid: str, remote_addr: str | None,
           user: Any = None, via: str = "") -> Refused:
    """Audit a refusal (with the host's words, if any) and return what the client is told.

    `via` ("through the API, token NAME" for a token's ticket) goes to the audit record only."""
    refusal = reason if isinstance(reason, Refused) else Refused(reason)
    detail = f"{refusal} ({via})" if via else str(refusal)
    if user is None:
        # Nobody holds a ticket: host, VM and the values in the reason (an Origin) are all the client's words.
        # Counted per address and kind of refusal only, or each changed URL or header would be a row of its own.
        host_name = vm_uuid = ""
        detail = anonymous_reason(refusal)
    audit.record(None, "console.refused", object_type="vm", object_name=vm_uuid, host_name=host_name,
                 result=AuditResult.DENIED, detail=detail, user=user, remote_addr=remote_addr)
    return Refused(refusal.told(user))


def anonymous_reason(refusal: Refused) -> str:
    """The English reason without the client-chosen values it names ("foreign origin ..."): the same text
    for every attempt of one kind."""
    reason = refusal.reason
    if not reason.params:
        return str(reason)
    return reason.template.format(**{name: "..." for name in reason.params})


def usable_token(api_token_id: int, presented: str = "") -> tuple[ApiToken | None, str]:
    """The API token `api_token_id` while it may open a console (not revoked, expired or read-only, its user
    active), or None and why not. With `presented` (the handshake's bearer text), that must be this token."""
    if presented:
        token = ApiToken.find(presented)
        if token is None or token.pk != api_token_id:
            return None, Text(gettext_noop("console ticket belongs to another API token"))
    else:
        token = ApiToken.objects.select_related("user").filter(pk=api_token_id).first()
        if token is None:
            return None, Text(gettext_noop("the API token was deleted"))
    if token.revoked is not None:
        return None, Text(gettext_noop("the API token was revoked"))
    if token.expired:
        return None, Text(gettext_noop("the API token has expired"))
    if token.read_only:
        return None, Text(gettext_noop("a read-only API token opens no console"))
    if not token.user.is_active:
        return None, Text(gettext_noop("the API token's user is disabled"))
    return token, ""


def _holder(ticket: ConsoleTicket, session_key: str, presented: str) -> tuple[Any, str]:
    """The user holding `ticket` at the handshake, or None and why not.

    A token's ticket needs `Authorization: Bearer` with that very token (a session cookie counts for
    nothing); a session's ticket needs its session cookie and no bearer header, so a bearer header always
    means a token's ticket (console/session.py relaxes the Origin rule on that alone)."""
    if ticket.api_token_id is not None:
        if not presented:
            return None, Text(gettext_noop("console ticket was made for an API token: send it as "
                                           "Authorization: Bearer"))
        api_token, why = usable_token(ticket.api_token_id, presented)
        if api_token is None:
            return None, why
        api_token.touch()  # a use of the token, as an API request is
        return api_token.user, ""
    if presented:
        return None, Text(gettext_noop("console ticket belongs to a login session, not an API token"))
    if digest(session_key or "") != ticket.session_hash:
        return None, Text(gettext_noop("console ticket belongs to another login session"))
    user = session_user(session_key)
    if user is None or user.pk != ticket.user_id:
        return None, Text(gettext_noop("not logged in as the user the console ticket was made for"))
    return user, ""


def consume(token: str, *, host_name: str, vm_uuid: str, session_key: str, remote_addr: str | None,
            kind: str = "vnc", presented: str = "") -> ConsoleTicket:
    """Spend `token` for the console of `vm_uuid` on `host_name`, asked by the holder of `session_key` or
    of the API token `presented` (the handshake's `Authorization: Bearer` text).

    Returns the ticket (with user and host) or raises Refused, audited either way. A ticket is
    spent by any attempt, even a refused one: a leaked ticket is worth one try at most."""
    where: dict[str, Any] = {"host_name": host_name, "vm_uuid": vm_uuid, "remote_addr": remote_addr}
    if not token or len(token) > MAX_TICKET_LENGTH:
        raise refuse(gettext_noop("no console ticket"), **where)
    try:
        vm_uuid = str(uuid.UUID(vm_uuid))
    except ValueError:
        raise refuse(gettext_noop("not a VM UUID"), **where) from None
    token_hash = digest(token)
    now = timezone.now()
    spent = ConsoleTicket.objects.filter(token_hash=token_hash, used_at__isnull=True, expires__gt=now).update(
        used_at=now)
    ticket = ConsoleTicket.objects.select_related("user", "host", "api_token").filter(token_hash=token_hash).first()
    if ticket is None:
        raise refuse(gettext_noop("unknown console ticket"), **where)
    where["user"] = ticket.user
    via = through(ticket.api_token) if ticket.api_token is not None else ""
    where["via"] = via
    if not spent:
        # The UPDATE above missed: either somebody spent it already, or its 30 s are over.
        raise refuse(gettext_noop("console ticket already used") if ticket.used_at
                     else gettext_noop("console ticket expired"), **where)
    if ticket.kind != kind:
        raise refuse(OTHER_KIND.get((ticket.kind, kind)) or Refused(
            gettext_noop("console ticket is for the {ticket} console, not the {asked} one"),
            ticket=ticket.get_kind_display(), asked=kind), **where)
    if ticket.host.name != host_name or str(ticket.vm_uuid) != vm_uuid:
        raise refuse(Refused(gettext_noop("console ticket is for another VM ({uuid} on {host})"),
                             uuid=str(ticket.vm_uuid), host=ticket.host.name), **where)
    user, why = _holder(ticket, session_key, presented)
    if user is None or user.pk != ticket.user_id:
        raise refuse(why or gettext_noop("not the user the console ticket was made for"), **where)
    if not permissions.can(user, "console", host=ticket.host, vm_uuid=vm_uuid):
        raise refuse(gettext_noop("no console permission on this VM"), **where)
    detail = "ticket used" if kind == "vnc" else f"{kind} ticket used"
    audit.record(None, "console.open", object_type="vm", object_name=vm_uuid, host_name=host_name,
                 detail=f"{detail} ({via})" if via else detail, user=user, remote_addr=remote_addr)
    ticket.user = user
    return ticket
