"""Console tickets minted through the API with a token: bound to that token, opened by a WebSocket handshake
that sends `Authorization: Bearer` with the same token (a non-browser client: no Origin, or the panel's own).

The accept/refuse table runs against the fake VNC server of test_console_tickets.py: every refusal comes before a
byte reaches it, and is audited naming the token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from console.models import ConsoleTicket
from console.tickets import digest, protocols
from tests.conftest import WEB_01_UUID
from tests.unit.test_api_access import TokenClient
from tests.unit.test_console_tickets import (  # noqa: F401  (fake_vnc, quick_recheck, test_host: fixtures)
    BANNER,
    ORIGIN,
    FakeVnc,
    fake_vnc,
    quick_recheck,
    session_key,
    test_host,
)
from tests.unit.test_console_tickets import mint as mint_for_session
from tests.unit.test_serial_console import consoles  # noqa: F401  (the fake serial console: a fixture)
from webkvm.asgi import application
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer reads the database from other threads
TICKET_URL = f"/api/v1/vms/testhost/{WEB_01_UUID}/console/ticket/"
THROUGH = "through the API, token cli"


@pytest.fixture
def vnc(request: pytest.FixtureRequest) -> FakeVnc:
    """The fake VNC server of web-01 (test_console_tickets.py's fake_vnc, which test_host points at)."""
    server: FakeVnc = request.getfixturevalue("fake_vnc")
    return server


@pytest.fixture
def token(granted_user: Any) -> str:
    """alice's token (she may use web-01's console)."""
    return ApiToken.make(granted_user, "cli")[1]


def mint(text: str, kind: str = "vnc") -> dict[str, Any]:
    answer = TokenClient(text).post(TICKET_URL, {"console": kind})
    assert answer.status_code == 200, answer.content
    body: dict[str, Any] = answer.json()
    return body


async def _open(ws_path: str, ticket: str, *, bearer: str = "", origin: str = "", cookie: str = ""
                ) -> tuple[WebsocketCommunicator, dict]:
    headers = [(b"host", b"127.0.0.1:8000")]
    headers += [(b"authorization", f"Bearer {bearer}".encode())] if bearer else []
    headers += [(b"origin", origin.encode())] if origin else []
    headers += [(b"cookie", f"sessionid={cookie}".encode())] if cookie else []
    communicator = WebsocketCommunicator(application, ws_path, headers=headers, subprotocols=protocols(ticket))
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator, await communicator.receive_output(timeout=10)


def first_message(ws_path: str, ticket: str, **how: str) -> dict:
    """Open the console WebSocket; the first message back (the RFB banner, console output, or the close)."""
    async def run() -> dict:
        communicator, first = await _open(ws_path, ticket, **how)
        await communicator.disconnect()
        return first
    return async_to_sync(run)()


def vnc_path() -> str:
    return f"/console/ws/testhost/{WEB_01_UUID}/"


# ---- minting ------------------------------------------------------------------------------

def test_a_token_gets_a_ticket_bound_to_it_and_a_read_only_one_none(token: str, granted_user: Any) -> None:
    body = mint(token)
    assert body["bound_to"] == "token" and body["ws_headers"] == {"Authorization": "Bearer <this same API token>"}
    assert token not in str(body) and body["ws_path"] == vnc_path() and body["protocols"] == protocols(body["ticket"])
    stored = ConsoleTicket.objects.get(token_hash=digest(body["ticket"]))
    assert stored.api_token == ApiToken.objects.get(name="cli") and stored.session_hash == ""
    assert THROUGH in AuditEvent.objects.get(action="console.ticket").detail
    read_only = ApiToken.make(granted_user, "ro", read_only=True)[1]
    refused = TokenClient(read_only).post(TICKET_URL)
    assert refused.status_code == 403 and refused.json()["code"] == "read_only_token"
    assert ConsoleTicket.objects.count() == 1


# ---- the accept / refuse table --------------------------------------------------------------

def test_the_same_token_opens_the_console_once(token: str, vnc: FakeVnc) -> None:
    ticket = mint(token)["ticket"]
    first = first_message(vnc_path(), ticket, bearer=token)  # no Origin: a non-browser client
    assert first.get("bytes") == BANNER, first
    assert vnc.connections == 1
    opened = AuditEvent.objects.get(action="console.open")
    assert opened.username == "alice" and opened.detail == f"ticket used ({THROUGH})"
    again = first_message(vnc_path(), ticket, bearer=token)
    assert again.get("code") == 4403 and "already used" in again["reason"]
    assert vnc.connections == 1
    assert THROUGH in AuditEvent.objects.get(action="console.refused").detail


def test_the_same_token_with_the_panels_origin_is_accepted(token: str, vnc: FakeVnc) -> None:
    assert first_message(vnc_path(), mint(token)["ticket"], bearer=token, origin=ORIGIN).get("bytes") == BANNER


def _revoke() -> None:
    ApiToken.objects.filter(name="cli").update(revoked=timezone.now())


def _expire_token() -> None:
    ApiToken.objects.filter(name="cli").update(expires=timezone.now() - timedelta(seconds=1))


def _expire_ticket() -> None:
    ConsoleTicket.objects.update(expires=timezone.now() - timedelta(seconds=1))


@pytest.mark.parametrize(("case", "reason"), [
    ("another token of the same user", "another API token"),
    ("another user's token", "another API token"),
    ("a junk bearer", "another API token"),
    ("no Authorization header", "made for an API token"),
    ("the session cookie only", "made for an API token"),
    ("expired ticket", "console ticket expired"),
    ("revoked token", "API token was revoked"),
    ("expired token", "API token has expired"),
    ("disabled user", "user is disabled"),
    ("foreign origin", "foreign origin"),
    ("grant withdrawn", "no console permission"),
])
def test_a_token_ticket_is_refused(case: str, reason: str, token: str, granted_user: Any, user_client: Client,
                                   vnc: FakeVnc) -> None:
    ticket = mint(token)["ticket"]
    how: dict[str, str] = {"bearer": token, "origin": ORIGIN}
    if case == "another token of the same user":
        how["bearer"] = ApiToken.make(granted_user, "other")[1]
    elif case == "another user's token":
        bob = get_user_model().objects.create_user("bob")
        VMGrant.objects.create(user=bob, host=VMGrant.objects.get().host, vm_uuid=WEB_01_UUID, can_console=True)
        how["bearer"] = ApiToken.make(bob, "bobs")[1]
    elif case == "a junk bearer":
        how["bearer"] = "wkvm_junk_junk"
    elif case == "no Authorization header":
        del how["bearer"]
    elif case == "the session cookie only":
        how = {"cookie": session_key(user_client), "origin": ORIGIN}
    elif case == "foreign origin":
        how["origin"] = "https://evil.example"
    else:
        {"expired ticket": _expire_ticket, "revoked token": _revoke, "expired token": _expire_token,
         "disabled user": lambda: get_user_model().objects.filter(pk=granted_user.pk).update(is_active=False),
         "grant withdrawn": lambda: VMGrant.objects.update(can_console=False)}[case]()
    first = first_message(vnc_path(), ticket, **how)
    assert first.get("code") == 4403 and reason in first["reason"], first
    assert "wkvm_" not in first["reason"]
    assert vnc.connections == 0
    denied = AuditEvent.objects.get(action="console.refused")
    assert reason in denied.detail
    # The foreign origin is refused before the ticket is looked at, so before anybody is known.
    assert case == "foreign origin" or (THROUGH in denied.detail and denied.username == "alice")


@pytest.mark.parametrize("how", ["bearer and cookie", "no origin and cookie"])
def test_a_session_ticket_never_opens_with_a_bearer_nor_without_origin(how: str, token: str, user_client: Client,
                                                                       vnc: FakeVnc) -> None:
    """The Origin rule is relaxed for a bearer header only, and a bearer header opens no session's ticket."""
    ticket = mint_for_session(user_client)
    cookie = session_key(user_client)
    if how == "bearer and cookie":
        first = first_message(vnc_path(), ticket, bearer=token, cookie=cookie)
        assert "belongs to a login session, not an API token" in first["reason"]
    else:
        first = first_message(vnc_path(), ticket, cookie=cookie)
        assert "foreign origin" in first["reason"]
    assert first.get("code") == 4403 and vnc.connections == 0


def test_session_tickets_keep_working(user_client: Client, vnc: FakeVnc) -> None:
    first = first_message(vnc_path(), mint_for_session(user_client), cookie=session_key(user_client), origin=ORIGIN)
    assert first.get("bytes") == BANNER
    assert AuditEvent.objects.get(action="console.open").detail == "ticket used"


@pytest.mark.usefixtures("quick_recheck")
def test_revoking_the_token_closes_the_open_console(token: str, vnc: FakeVnc) -> None:
    ticket = mint(token)["ticket"]

    async def run() -> dict:
        communicator, first = await _open(vnc_path(), ticket, bearer=token)
        assert first.get("bytes") == BANNER
        await sync_to_async(_revoke, thread_sensitive=False)()
        message = await communicator.receive_output(timeout=10)
        while message["type"] != "websocket.close":
            message = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        return message
    closing = async_to_sync(run)()
    assert closing["code"] == 4000 and "revoked" in closing["reason"]
    assert AuditEvent.objects.filter(action="console.close", detail__contains=f"revoked ({THROUGH})").exists()


@pytest.mark.usefixtures("consoles")
def test_the_serial_console_opens_with_its_token_too(token: str) -> None:
    body = mint(token, "serial")
    assert "belongs to another API token" in first_message(
        body["ws_path"], body["ticket"], bearer=ApiToken.make(get_user_model().objects.get(username="alice"),
                                                               "other")[1])["reason"]
    body = mint(token, "serial")
    first = first_message(body["ws_path"], body["ticket"], bearer=token)
    assert first.get("bytes", b"").startswith(b"SeaBIOS"), first
    assert AuditEvent.objects.get(action="console.open").detail == f"serial ticket used ({THROUGH})"


# ---- the standalone proxy (manage.py consoleproxy) -------------------------------------------

def test_the_standalone_proxy_takes_the_token_too(token: str, vnc: FakeVnc, standalone_proxy: int) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect

    def open_with(bearer: str) -> tuple[bytes | None, Any]:
        body = mint(token)
        with ws_connect(f"ws://127.0.0.1:{standalone_proxy}{body['ws_path']}", open_timeout=10,
                        additional_headers={"Authorization": f"Bearer {bearer}"},
                        subprotocols=body["protocols"]) as ws:  # no Origin, as a non-browser client
            try:
                return ws.recv(timeout=10), None
            except ConnectionClosed as exc:
                return None, exc.rcvd

    data, close = open_with("wkvm_junk_junk")
    assert data is None and close.code == 4403 and "another API token" in close.reason
    assert vnc.connections == 0
    data, _ = open_with(token)
    assert data == BANNER and vnc.connections == 1
