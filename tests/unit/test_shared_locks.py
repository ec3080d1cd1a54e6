"""Leases and per-VM locks in a real Redis, as several panel processes share them."""

from __future__ import annotations

import time

import pytest
import redis

from virt.errors import Busy
from webkvm.shared_locks import RedisLeases, RedisVMLocks


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    found = redis.Redis.from_url(redis_url)
    found.flushdb()
    return found


def test_one_lease_holder_among_processes_and_a_dead_one_lapses(client: redis.Redis) -> None:
    first, second = RedisLeases(client), RedisLeases(client)  # two processes
    assert first.hold("live-watcher:1", 0.3)
    assert not second.hold("live-watcher:1", 0.3)
    assert first.hold("live-watcher:1", 0.3)  # renewing is holding
    time.sleep(0.4)  # the first process died: it renews no more
    assert second.hold("live-watcher:1", 0.3)
    assert not first.hold("live-watcher:1", 0.3)
    first.release("live-watcher:1")  # a former holder cannot release what another holds now
    assert not first.hold("live-watcher:1", 0.3)
    second.release("live-watcher:1")
    assert first.hold("live-watcher:1", 0.3)


def test_a_vm_lock_is_seen_by_every_process_and_released_by_its_holder(client: redis.Redis) -> None:
    worker_a, worker_b = RedisVMLocks(client), RedisVMLocks(client)
    worker_a.acquire("1", "ABC")
    with pytest.raises(Busy, match="still running"):
        worker_b.acquire("1", "abc")
    assert worker_b.held("1", "abc")
    worker_b.release("1", "abc")  # not its lock: nothing happens
    assert worker_a.held("1", "abc")
    worker_b.acquire("2", "abc")  # another host's VM is another lock
    worker_a.release("1", "abc")
    worker_b.acquire("1", "abc")
    worker_b.release("1", "abc")
    worker_b.release("2", "abc")
    assert not worker_a.held("1", "abc")


def test_a_long_operation_keeps_its_lock_and_a_crashed_holder_loses_it(client: redis.Redis) -> None:
    holder, other = RedisVMLocks(client, ttl=0.3), RedisVMLocks(client, ttl=0.3)
    holder.acquire("1", "vm")
    time.sleep(0.8)  # the holder's renewer keeps it while the work runs
    with pytest.raises(Busy):
        other.acquire("1", "vm")
    holder._stop.set()  # the holding process dies: nobody renews
    time.sleep(0.5)
    other.acquire("1", "vm")
    other.release("1", "vm")


def test_a_job_worker_adopts_the_lock_its_request_took_and_releases_it(client: redis.Redis) -> None:
    """The clone's request takes the VM's lock; the job's worker (another process) renews and releases it."""
    request, worker, other = (RedisVMLocks(client, ttl=0.3) for _ in range(3))
    token = request.acquire("1", "vm")
    worker.adopt("1", "vm", token)
    request._stop.set()  # the request's process goes away: the worker keeps the lock alive
    time.sleep(0.8)
    with pytest.raises(Busy):
        other.acquire("1", "vm")
    with pytest.raises(Busy):
        other.adopt("1", "vm", "not-the-token")
    other.release_token("1", "vm", "not-the-token")  # a wrong token releases nothing
    assert other.held("1", "vm")
    worker.release_token("1", "vm", token)
    assert not other.held("1", "vm")
    other.acquire("1", "vm")
    worker.adopt("1", "other-vm", "lapsed")  # a lock that lapsed while queued is taken again with its token
    assert other.held("1", "other-vm")
