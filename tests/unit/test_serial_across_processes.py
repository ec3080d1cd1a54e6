"""One serial console viewer per VM among several panel processes sharing Redis.

Each "process" is a RedisSerialSessions of its own (its own renewals) and a RedisChannelLayer of its
own, both on the test's private redis-server: what one process writes or sends, the other reads
only through Redis. The last test runs two real SerialConsumers that way; libvirt's console stream
is faked as tests/unit/test_serial_console.py fakes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from django.urls import path

from console import serial_session
from console.serial_consumer import SerialConsumer
from console.serial_holders import KICK, Holder, InUse, RedisSerialSessions
from hosts.models import Host
from tests.conftest import WEB_01_UUID
from tests.unit.test_config_and_bootstrap import manage
from tests.unit.test_serial_console import (  # noqa: F401  # fixtures: the fake console and a VM with a serial port
    FakeConsoles,
    _open,
    _until_closed,
    bob_client,
    consoles,
    mint,
    refused,
    session_key,
    test_host,
    wait_for,
    ws_path,
)
from webkvm.config import CHANNEL_SOCKET_TIMEOUT
from webkvm.models import AuditEvent

KEY = (1, WEB_01_UUID)
PROCESSES = ("process-a", "process-b")


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    found = redis.Redis.from_url(redis_url)
    found.flushdb()
    return found


@pytest.fixture
def layers(settings, redis_url: str) -> None:
    """A channel layer per process, both on the same Redis (as every panel process's "default" is)."""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
        **{alias: {"BACKEND": "channels_redis.core.RedisChannelLayer",
                   "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": CHANNEL_SOCKET_TIMEOUT}],
                              "prefix": "webkvm-test:channels:"}} for alias in PROCESSES}}


@pytest.fixture
def registry(client: redis.Redis, layers: None) -> Iterator[Callable[..., RedisSerialSessions]]:
    """registry(alias, ttl=...): one process's holder registry; its renewals stop when the test ends."""
    made: list[RedisSerialSessions] = []

    def make(alias: str, ttl: float = 10.0) -> RedisSerialSessions:
        made.append(RedisSerialSessions(client, ttl=ttl, layer_alias=alias))
        return made[-1]
    yield make
    for one in made:
        one._stop.set()


async def claim(registry: RedisSerialSessions, holder: Holder, take_over: bool = False) -> Holder | None:
    """Claim from a worker thread, as open_session does (the consumer runs it off the event loop)."""
    return await sync_to_async(registry.claim, thread_sensitive=False)(KEY, holder, take_over=take_over)


def test_take_over_reaches_the_holder_in_another_process(registry) -> None:
    process_a, process_b = registry("process-a"), registry("process-b")
    kicked_locally: list[str] = []

    async def run() -> tuple[Holder, Holder, dict[str, Any]]:
        layer_a, layer_b = get_channel_layer("process-a"), get_channel_layer("process-b")
        alice = Holder("alice", kicked_locally.append, channel=await layer_a.new_channel())
        assert await claim(process_a, alice) is None
        with pytest.raises(InUse) as in_use:
            await claim(process_b, Holder("bob", kicked_locally.append, channel=await layer_b.new_channel()))
        assert str(in_use.value) == alice.describe()  # the words of one process: "in use by alice since ..."
        assert str(in_use.value).startswith("in use by alice since ")
        bob = Holder("bob", kicked_locally.append, channel=await layer_b.new_channel())
        previous = await claim(process_b, bob, take_over=True)
        assert previous is not None and (previous.username, previous.token) == ("alice", alice.token)
        return alice, bob, await asyncio.wait_for(layer_a.receive(alice.channel), 5)
    alice, bob, message = async_to_sync(run)()
    said = message.pop("said")  # the words again, for the holder to say in its user's language
    assert message == {"type": KICK, "reason": "taken over by bob", "token": alice.token}
    assert (said["template"], said["params"]) == ("taken over by {user}", {"user": "bob"})
    assert kicked_locally == []  # told through the channel layer, not by a call within one process
    for seen_by in (process_a, process_b):
        now = seen_by.holder(KEY)
        assert now is not None and (now.username, now.token, now.channel) == ("bob", bob.token, bob.channel)
    process_a.release(KEY, alice)  # alice's session closes after being taken over
    assert process_b.holder(KEY) is not None and process_b.holder(KEY).token == bob.token
    process_b.release(KEY, bob)
    assert process_a.holder(KEY) is None


def test_a_crashed_process_holder_lapses(registry, client: redis.Redis) -> None:
    process_a, process_b = registry("process-a", ttl=0.3), registry("process-b", ttl=0.3)
    alice = Holder("alice", lambda _reason: None)
    async_to_sync(claim)(process_a, alice)
    assert 0 < client.pttl("webkvm:serial:1:" + WEB_01_UUID) <= 300
    time.sleep(0.8)  # longer than the expiry: the live session's renewals keep it
    with pytest.raises(InUse, match="in use by alice since"):
        async_to_sync(claim)(process_b, Holder("bob", lambda _reason: None))
    process_a._stop.set()  # process A dies: nobody renews alice's record
    assert wait_for(lambda: process_b.holder(KEY) is None, 2)
    bob = Holder("bob", lambda _reason: None)
    assert async_to_sync(claim)(process_b, bob) is None  # no take over needed
    process_a.release(KEY, alice)
    assert process_b.holder(KEY) is not None and process_b.holder(KEY).username == "bob"
    process_b.release(KEY, bob)


def test_renewal_tells_a_holder_the_channel_layer_missed_and_keeps_a_lapsed_record(registry, client) -> None:
    process_a, process_b = registry("process-a", ttl=0.3), registry("process-b", ttl=0.3)
    kicked: list[str] = []
    alice = Holder("alice", kicked.append)  # no channel: the take over's message cannot reach it
    async_to_sync(claim)(process_a, alice)
    client.delete("webkvm:serial:1:" + WEB_01_UUID)  # lapsed while Redis was away, and nobody took it
    assert wait_for(lambda: getattr(process_a.holder(KEY), "token", None) == alice.token, 2)  # held again
    bob = Holder("bob", lambda _reason: None)
    async_to_sync(claim)(process_b, bob, take_over=True)
    assert wait_for(lambda: kicked == ["taken over by bob"], 2)
    assert process_a._mine == {}
    process_b.release(KEY, bob)


def test_the_configured_registry(tmp_path, redis_url: str) -> None:
    probe = "from console.serial_session import sessions; print(type(sessions).__name__)"
    shared = manage(tmp_path, "shell", "-c", probe, WEBKVM_REDIS_URL=redis_url)
    assert shared.stdout.splitlines()[-1] == "RedisSerialSessions", shared
    alone = manage(tmp_path, "shell", "-c", probe)
    assert alone.stdout.splitlines()[-1] == "ProcessSerialSessions", alone


# ---- two real consumers, each in its "process" ----------------------------------------------

def panel_process(alias: str, registry: RedisSerialSessions) -> Any:
    """The serial WebSocket route of one panel process: its channel layer, its registry."""
    consumer = type(f"SerialConsumer-{alias}", (SerialConsumer,), {"channel_layer_alias": alias,
                                                                   "registry": registry})
    return URLRouter([path("console/serial/ws/<slug:host>/<uuid:vm>/", consumer.as_asgi())])


@pytest.mark.django_db(transaction=True)
def test_second_viewer_in_another_process_takes_over(
        registry, user_client,
        bob_client,  # noqa: F811  # the fixture imported above
        consoles: FakeConsoles,  # noqa: F811
) -> None:
    # Renewals far apart: only the channel layer's message can close alice's session within the test.
    process_a, process_b = registry("process-a", ttl=60), registry("process-b", ttl=60)
    panel_a, panel_b = panel_process("process-a", process_a), panel_process("process-b", process_b)
    alice_path, alice_cookie = ws_path(mint(user_client)), session_key(user_client)
    bob_cookie = session_key(bob_client)
    bob_paths = [ws_path(mint(bob_client)), ws_path(mint(bob_client), extra="&takeover=1")]
    key = (Host.objects.get().pk, WEB_01_UUID)

    async def run() -> tuple[dict, dict, dict]:
        alice, first = await _open(alice_path, alice_cookie, app=panel_a)
        assert first["bytes"].startswith(b"SeaBIOS")
        in_use = (await _open(bob_paths[0], bob_cookie, app=panel_b))[1]
        bob, bob_first = await _open(bob_paths[1], bob_cookie, app=panel_b)
        alice_closing = await _until_closed(alice)
        await alice.disconnect()
        holder = await sync_to_async(process_a.holder)(key)
        assert holder is not None and holder.username == "bob"  # alice's release left bob's record
        await bob.disconnect()
        return in_use, bob_first, alice_closing
    in_use, bob_first, alice_closing = async_to_sync(run)()
    assert refused(in_use, 4409).startswith("in use by alice since ")
    assert bob_first["bytes"].startswith(b"SeaBIOS")
    assert alice_closing["code"] == 4001 and alice_closing["reason"] == "taken over by bob"
    assert [force for _vm, force, _s in consoles.opened] == [False, True]  # FORCE only to take over
    assert wait_for(lambda: process_b.holder(key) is None)
    assert process_a._mine == {} and process_b._mine == {}
    assert serial_session.sessions.holder(key) is None  # this test process's own registry was not used
    assert AuditEvent.objects.get(action="console.takeover").detail.startswith("serial console taken over from alice")
    assert wait_for(lambda: AuditEvent.objects.filter(action="console.close", username="alice",
                                                      detail__contains="taken over by bob").exists())
