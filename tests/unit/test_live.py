"""Live updates over /live/ws/ on libvirt's test driver: who may connect, what each user receives,
and that a change reaches an open page at once (from libvirt's event, not the next interval)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from hosts import services
from hosts.models import Host
from instances import live
from instances.models import VMState
from tests.conftest import DB_01_UUID, WEB_01_UUID
from webkvm.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer reads the database from other threads

ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture(autouse=True)
def _slow_interval(settings) -> None:
    # Far longer than any wait below: whatever arrives in time was pushed by an event, not a periodic read.
    settings.WEBKVM_LIVE_INTERVAL_MS = 30000
    settings.WEBKVM_CONSOLE_RECHECK_SECONDS = 0.3


def cookie_of(client: Client) -> str:
    return client.cookies["sessionid"].value


async def _open(query: str, cookie: str, origin: str = ORIGIN) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/live/ws/?{query}", headers=[
        (b"origin", origin.encode()), (b"host", b"127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())])
    await communicator.connect(timeout=10)
    return communicator


async def _frames(communicator: WebsocketCommunicator, seconds: float) -> list[dict[str, Any]]:
    """Every frame that arrives within `seconds`."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while deadline - time.monotonic() > 0:
        # receive_output's timeout would cancel the application: ask whether anything waits first.
        if await communicator.receive_nothing(timeout=0.05, interval=0.01):
            continue
        message = await communicator.receive_output(timeout=5)
        if message["type"] == "websocket.close":
            frames.append({"closed": message.get("code")})
            break
        frames.append(json.loads(message["text"]))
    return frames


def _destroy(host: Host, uuid: str) -> None:
    services.change(host, lambda conn: conn.lookupByUUIDString(uuid).destroy())


@pytest.mark.parametrize(("who", "origin", "query"), [
    ("anonymous", ORIGIN, "scope=fleet"),
    ("admin", "http://evil.example", "scope=fleet"),
    ("admin", ORIGIN, "nothing=1"),
])
def test_refused_without_login_own_origin_or_scope(who, origin, query, admin_client, client) -> None:
    cookie = cookie_of(admin_client) if who == "admin" else "no-such-session"

    async def run() -> list[dict[str, Any]]:
        communicator = WebsocketCommunicator(application, f"/live/ws/?{query}", headers=[
            (b"origin", origin.encode()), (b"host", b"127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())])
        connected, code = await communicator.connect(timeout=10)
        assert not connected and code == 4403
        return []

    async_to_sync(run)()


def test_a_change_reaches_the_fleet_page_at_once(admin_client, test_host) -> None:
    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        page = await _open("scope=fleet", cookie_of(admin_client))
        first = json.loads((await page.receive_output(timeout=10))["text"])
        await sync_to_async(_destroy, thread_sensitive=False)(test_host, WEB_01_UUID)
        frames = await _frames(page, 1.0)  # within a second, with the periodic read 30 s away
        await page.disconnect()
        return first, frames

    first, frames = async_to_sync(run)()
    key = f"testhost/{WEB_01_UUID}"
    assert first["full"] and first["vms"][key]["state"] == "running" and first["unreachable"] == {"testhost": ""}
    states = [f["vms"][key]["state"] for f in frames if key in f.get("vms", {})]
    assert states and states[-1] == "shut off", frames
    # The watcher recorded the change it saw, for every panel process (instances/state_since.py).
    pushed = [f["vms"][key] for f in frames if key in f.get("vms", {})][-1]
    assert pushed["state_since_at_least"] is False and time.time() - pushed["state_since"] < 5
    assert first["vms"][key]["state_since_at_least"] is True  # running before the panel looked
    assert VMState.objects.get(vm_uuid=WEB_01_UUID).state == "shut off"


def test_a_user_receives_only_their_vms_and_nothing_about_others(user_client, test_host) -> None:
    async def run() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        page = await _open("scope=fleet", cookie_of(user_client))
        first = json.loads((await page.receive_output(timeout=10))["text"])
        await sync_to_async(_destroy, thread_sensitive=False)(test_host, DB_01_UUID)  # not granted to alice
        about_other = await _frames(page, 1.0)
        await sync_to_async(_destroy, thread_sensitive=False)(test_host, WEB_01_UUID)  # granted
        about_own = await _frames(page, 1.5)
        await page.disconnect()
        return first, about_other, about_own

    first, about_other, about_own = async_to_sync(run)()
    assert list(first["vms"]) == [f"testhost/{WEB_01_UUID}"]
    assert about_other == [], about_other  # not a single frame: not even that something changed
    assert about_own and all(set(f["vms"]) <= {f"testhost/{WEB_01_UUID}"} for f in about_own)
    assert about_own[-1]["vms"][f"testhost/{WEB_01_UUID}"]["state"] == "shut off"


def test_vm_scope_and_a_withdrawn_grant(user_client, granted_user, test_host) -> None:
    from webkvm.models import VMGrant

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        page = await _open(f"vm=testhost/{WEB_01_UUID}", cookie_of(user_client))
        first = json.loads((await page.receive_output(timeout=10))["text"])
        outsider = await _open(f"vm=testhost/{DB_01_UUID}", cookie_of(user_client))
        refused_vm = await _frames(outsider, 0.5)
        await outsider.disconnect()
        await sync_to_async(VMGrant.objects.filter(user=granted_user).delete, thread_sensitive=False)()
        await _frames(page, 1.0)  # the re-check runs every 0.3 s here
        await sync_to_async(_destroy, thread_sensitive=False)(test_host, WEB_01_UUID)
        after = await _frames(page, 1.0)
        await page.disconnect()
        return first, refused_vm, after

    first, refused_vm, after = async_to_sync(run)()
    assert list(first["vms"]) == [f"testhost/{WEB_01_UUID}"]
    assert refused_vm == []  # a VM not granted: not even its host's words
    assert after == [], after


def test_an_unreachable_host_is_said_in_words(admin_client, db) -> None:
    Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)

    async def run() -> dict[str, Any]:
        page = await _open("host=gone", cookie_of(admin_client))
        first = json.loads((await page.receive_output(timeout=10))["text"])
        await page.disconnect()
        return first

    first = async_to_sync(run)()
    assert first["vms"] == {} and first["unreachable"]["gone"].startswith("unreachable: ")


def test_one_watcher_per_host_whatever_the_number_of_pages(admin_client, user_client, test_host) -> None:
    async def run() -> int:
        pages = [await _open("scope=fleet", cookie_of(c)) for c in (admin_client, user_client, admin_client)]
        for page in pages:
            await page.receive_output(timeout=10)
        running = sum(1 for w in live.watchers.values() if w.task and not w.task.done())
        viewers = live.watchers[test_host.pk].viewers
        for page in pages:
            await page.disconnect()
        return running * 100 + viewers

    assert async_to_sync(run)() == 103


def test_row_changes() -> None:
    before = {"a": {"state": "running"}, "b": {"state": "shut off"}}
    after = {"a": {"state": "paused"}, "c": {"state": "running"}}
    assert live.row_changes(before, after) == {"rows": {"a": {"state": "paused"}, "c": {"state": "running"}},
                                               "added": ["c"], "removed": ["b"]}
    assert live.row_changes(None, after) == {"rows": after, "added": [], "removed": []}


def test_users_hear_that_a_host_is_unreachable_but_not_its_error_text(admin_client, user_client, granted_user,
                                                                      test_host) -> None:
    from webkvm.models import VMGrant

    gone = Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    VMGrant.objects.create(user=granted_user, host=gone, vm_uuid=DB_01_UUID, vm_name="elsewhere")

    async def first_of(client: Client) -> dict[str, str]:
        page = await _open("host=gone", cookie_of(client))
        first = json.loads((await page.receive_output(timeout=10))["text"])
        await page.disconnect()
        return first["unreachable"]

    assert async_to_sync(first_of)(user_client) == {"gone": "host unavailable"}
    assert "refused" in async_to_sync(first_of)(admin_client)["gone"]
    from django.urls import reverse

    for client, expect_reason in ((user_client, False), (admin_client, True)):
        rows = client.get(reverse("instances:rows")).json()["unreachable"]
        page = client.get(reverse("instances:list")).content.decode()
        assert ("refused" in rows["gone"]) is expect_reason and ("refused" in page) is expect_reason, rows


def test_a_page_whose_request_for_rows_was_missed_asks_again(admin_client, test_host, monkeypatch) -> None:
    """The lease holder may be a watcher that joined the host's group after the page asked (another process,
    started at the same moment): the page asks again until it has its rows, and takes them once."""
    from instances import consumers
    monkeypatch.setattr(consumers, "ASK_AGAIN_SECONDS", 0.2)
    missed: list[str] = []
    hear = live.Watcher._requests

    async def deaf_at_first(self: live.Watcher, layer: Any, inbox: str) -> None:
        if not missed:  # the first request reaches no watcher
            missed.append((await layer.receive(inbox))["reply_to"])
        await hear(self, layer, inbox)

    monkeypatch.setattr(live.Watcher, "_requests", deaf_at_first)

    async def run() -> list[dict[str, Any]]:
        page = await _open("scope=fleet", cookie_of(admin_client))
        frames = await _frames(page, 2.0)
        await page.disconnect()
        return frames

    frames = async_to_sync(run)()
    assert missed and [f["full"] for f in frames] == [True], frames
    assert f"testhost/{WEB_01_UUID}" in frames[0]["vms"]


def test_each_viewer_reads_a_hosts_words_in_their_own_language(admin_client, user_client, granted_user,
                                                                 test_host) -> None:
    """One watcher, one frame sent to the host's group; each socket says it in its user's language
    (webkvm/languages.py): a host's words and the rows' state labels, never the keys scripts compare."""
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD
    from webkvm.models import UserLanguage, VMGrant

    gone = Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    VMGrant.objects.create(user=granted_user, host=gone, vm_uuid=DB_01_UUID, vm_name="elsewhere")
    chinese_admin = get_user_model().objects.create_superuser("zh-root", "", PASSWORD)
    UserLanguage.objects.create(user=chinese_admin, language="zh-hans")
    UserLanguage.objects.create(user=granted_user, language="zh-hans")
    zh_admin_client = Client()
    zh_admin_client.force_login(chinese_admin)

    async def first_of(client: Client, query: str) -> dict[str, Any]:
        page = await _open(query, cookie_of(client))
        first = json.loads((await page.receive_output(timeout=10))["text"])
        await page.disconnect()
        return first

    english = async_to_sync(first_of)(admin_client, "host=gone")["unreachable"]["gone"]
    chinese = async_to_sync(first_of)(zh_admin_client, "host=gone")["unreachable"]["gone"]
    assert english.startswith("unreachable: ") and "refused" in english
    assert chinese.startswith("无法连接：") and "unreachable" not in chinese  # noqa: RUF001
    assert async_to_sync(first_of)(user_client, "host=gone")["unreachable"] == {"gone": "宿主机不可用"}
    rows = async_to_sync(first_of)(user_client, "host=testhost")["vms"]
    row = rows[f"testhost/{WEB_01_UUID}"]
    assert (row["state"], row["state_label"]) == ("running", "运行中")
    row = async_to_sync(first_of)(admin_client, "host=testhost")["vms"][f"testhost/{WEB_01_UUID}"]
    assert (row["state"], row["state_label"]) == ("running", "running")


def test_a_viewer_who_chose_no_language_reads_their_browsers(admin_client, test_host) -> None:
    """As their pages do: no stored choice, so the browser's Accept-Language (webkvm.languages.of_caller)."""
    async def run() -> dict[str, Any]:
        communicator = WebsocketCommunicator(application, "/live/ws/?scope=fleet", headers=[
            (b"origin", ORIGIN.encode()), (b"host", b"127.0.0.1:8000"),
            (b"cookie", f"sessionid={cookie_of(admin_client)}".encode()), (b"accept-language", b"zh-CN,zh;q=0.9")])
        await communicator.connect(timeout=10)
        first = json.loads((await communicator.receive_output(timeout=10))["text"])
        await communicator.disconnect()
        return first

    row = async_to_sync(run)()["vms"][f"testhost/{WEB_01_UUID}"]
    assert (row["state"], row["state_label"]) == ("running", "运行中")
