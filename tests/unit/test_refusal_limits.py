"""What anonymous clients (or anybody retrying) can make the panel store is bounded: log-ins are throttled per
address and per user name, repeated identical refusals are counted on one audit row, and console tickets that
can open nothing any more are deleted."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.models import ConsoleTicket
from console.tickets import protocols
from tests.conftest import PASSWORD, WEB_01_UUID
from webkvm.asgi import application
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)
N = 20  # attempts per case: well past the failure limit


def log_in(client: Client, username: str, password: str, address: str) -> tuple[int, str]:
    response = client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)
    return response.status_code, response.content.decode()


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


LOCKED = "Too many failed log-ins from your address or for this user name"


# (case, the N failed attempts as (user name, address), then a right password: (user, address), locked out?)
THROTTLING = [
    ("one address, many names", lambda i: (f"guess{i}", "198.51.100.7"), ("alice", "198.51.100.7"), True),
    ("one name, many addresses", lambda i: ("alice", f"198.51.100.{i + 10}"), ("alice", "203.0.113.5"), True),
    ("others are not locked out", lambda i: ("alice", "198.51.100.7"), ("root-admin", "203.0.113.5"), False),
]


@pytest.mark.parametrize(("case", "failure", "then", "locked"), THROTTLING, ids=[c[0] for c in THROTTLING])
def test_log_in_is_throttled_per_address_and_per_user(case, failure, then, locked, granted_user, admin_user) -> None:
    client = Client()
    for attempt in range(N):
        username, address = failure(attempt)
        status, page = log_in(client, username, "wrong password", address)
        limit_reached = attempt + 1 >= settings.AXES_FAILURE_LIMIT  # the failure that reaches it is refused so
        assert (status == 429 and LOCKED in page) if limit_reached else (status == 200 and LOCKED not in page)
    status, page = log_in(client, then[0], PASSWORD, then[1])
    if locked:  # even the right password: the lock is for the address or the name, whoever asks
        assert status == 429 and LOCKED in page and "locked for 15 minutes" in page and not logged_in(client)
        assert 'id="login-locked"' in page and 'name="username"' in page  # the log-in page, saying why
    else:
        assert status == 302 and logged_in(client)
    # At most one row per name tried before the lock, and one counted row per locked-out client.
    failed = AuditEvent.objects.filter(action="login").exclude(result="ok")
    assert failed.count() <= settings.AXES_FAILURE_LIMIT + (N if case == "one name, many addresses" else 1)
    assert sum(failed.values_list("repeats", flat=True)) == N + locked


def test_a_lockout_ends_after_its_cool_off(granted_user, settings) -> None:
    from django.core.cache import caches

    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "alice", "wrong password", "198.51.100.7")
    assert log_in(client, "alice", PASSWORD, "198.51.100.7")[0] == 429
    caches[settings.AXES_CACHE].clear()  # what the cool-off's expiry does
    assert log_in(client, "alice", PASSWORD, "198.51.100.7")[0] == 302


def open_console(ticket: str, vm: str = WEB_01_UUID, host: str = "testhost", kind: str = "ws",
                 origin: str = "http://127.0.0.1:8000") -> dict:
    """A console WebSocket (`kind` "ws": VNC, "serial/ws": the serial console); its first message (the close)."""
    async def run() -> dict:
        communicator = WebsocketCommunicator(application, f"/console/{kind}/{host}/{vm}/", headers=[
            (b"origin", origin.encode()), (b"host", b"127.0.0.1:8000")], subprotocols=protocols(ticket))
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        message = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        return message
    return async_to_sync(run)()


def knock(path: str, origin: str = "http://127.0.0.1:8000") -> None:
    """An anonymous WebSocket at `path`, refused (closed before it is accepted)."""
    async def run() -> None:
        communicator = WebsocketCommunicator(application, path, headers=[
            (b"origin", origin.encode()), (b"host", b"127.0.0.1:8000")])
        connected, _ = await communicator.connect(timeout=10)
        assert not connected
    async_to_sync(run)()


def anywhere(attempt: int) -> dict[str, str]:
    """A new host name and VM UUID for each attempt, as a client changing the URL every time sends."""
    return {"host": f"h{attempt}", "vm": str(uuid.uuid4())}


# (what the i-th of N clients does, the audit rows all of them may leave: refusals of other kinds, none)
REFUSALS = [
    ("anonymous console WebSockets with a made-up ticket",
     lambda personas, i: open_console("A" * 43), {"console.refused": 1}),
    ("anonymous console WebSockets without a ticket",
     lambda personas, i: open_console(""), {"console.refused": 1}),
    ("anonymous console WebSockets, a new host and VM in the URL each time",
     lambda personas, i: open_console("A" * 43, **anywhere(i)), {"console.refused": 1}),
    ("anonymous serial console WebSockets, a new host and VM in the URL each time",
     lambda personas, i: open_console("A" * 43, **anywhere(i), kind="serial/ws"), {"console.refused": 1}),
    ("anonymous console WebSockets, a new foreign Origin each time",
     lambda personas, i: open_console("A" * 43, origin=f"http://evil{i}.example"), {"console.refused": 1}),
    ("anonymous live-update WebSockets (refused without a row)",
     lambda personas, i: knock("/live/ws/?vm={host}/{vm}".format(**anywhere(i))), {}),
    ("anonymous job WebSockets, a new job each time (refused without a row)",
     lambda personas, i: knock(f"/jobs/ws/{i + 1}/", origin=f"http://evil{i}.example"), {}),
    ("a user without the grant asking for tickets",
     lambda personas, i: personas["outsider"].post(reverse("console:ticket", args=["testhost", WEB_01_UUID])),
     {"denied:console": 1}),
    ("failed log-ins for one name from one address, below the limit",
     lambda personas, i: log_in(Client(), "alice", "wrong password", "198.51.100.7"), {"login": 2}),
]


@pytest.mark.parametrize(("case", "attempt", "rows"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_repeated_refusals_are_counted_on_one_row(case, attempt, rows, personas, settings) -> None:
    settings.AXES_FAILURE_LIMIT = N + 1  # the counting, not the lock (the row after the lock is its own)
    for i in range(N):
        attempt(personas, i)
    refusals = AuditEvent.objects.exclude(result="ok")
    assert set(refusals.values_list("action", flat=True)) <= set(rows), list(refusals.values("action", "detail"))
    for action, at_most in rows.items():
        events = AuditEvent.objects.filter(action=action).exclude(result="ok")
        assert 1 <= events.count() <= at_most, list(events.values("detail", "repeats"))
        assert sum(events.values_list("repeats", flat=True)) == N
        assert events.first().last_time is not None


def test_the_audit_log_shows_how_often_a_refusal_happened(personas) -> None:
    for _ in range(7):
        open_console("B" * 43)
    page = personas["admin"].get(reverse("audit")).content.decode()
    assert "unknown console ticket" in page and "\N{MULTIPLICATION SIGN}7, last " in page


def test_a_refusal_after_its_window_starts_a_new_row(personas) -> None:
    from webkvm import audit

    open_console("C" * 43)
    AuditEvent.objects.filter(action="console.refused").update(time=timezone.now() - audit.REPEAT_WINDOW)
    open_console("C" * 43)
    assert list(AuditEvent.objects.filter(action="console.refused").values_list("repeats", flat=True)) == [1, 1]


def test_tickets_that_open_nothing_any_more_are_deleted(user_client: Client) -> None:
    url = reverse("console:ticket", args=["testhost", WEB_01_UUID])
    for _ in range(N):
        assert user_client.post(url).status_code == 200
    assert ConsoleTicket.objects.count() == N  # all still valid
    ConsoleTicket.objects.update(expires=timezone.now() - timedelta(seconds=61))
    ConsoleTicket.objects.filter(pk=ConsoleTicket.objects.first().pk).update(used_at=timezone.now())
    assert user_client.post(url).status_code == 200
    assert ConsoleTicket.objects.count() == 1  # the new one: used and expired ones went with this mint


def test_the_served_panel_locks_out_across_its_workers(tmp_path) -> None:
    """As `make run` serves it, with two workers: the failures counted by one count for the other (Redis), so
    the lock comes after WEBKVM_LOGIN_FAILURES attempts whichever worker answers, each on a new connection."""
    import http.client
    import secrets
    from urllib.parse import urlencode

    import redis

    from tests.unit.test_console_ticket_transport import served

    with served(tmp_path, workers=2) as panel:
        port = int(panel.base.rsplit(":", 1)[1])
        csrf = secrets.token_hex(16)
        answers = []
        for _ in range(8):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            body = urlencode({"username": "root-admin", "password": "wrong", "csrfmiddlewaretoken": csrf})
            connection.request("POST", "/login/", body, {"Content-Type": "application/x-www-form-urlencoded",
                                                         "Cookie": f"csrftoken={csrf}"})
            response = connection.getresponse()
            answers.append((response.status, LOCKED in response.read().decode()))
            connection.close()
        # The counts are in the panel's Redis, where every worker reads them (not in one worker's memory).
        store = redis.Redis(unix_socket_path=str(tmp_path / "redis" / "redis.sock"))
        assert store.keys("webkvm:axes*"), "the failed log-ins were not counted in Redis"
    limit = 5  # WEBKVM_LOGIN_FAILURES' default
    assert answers == [(200, False)] * (limit - 1) + [(429, True)] * (8 - limit + 1), answers
