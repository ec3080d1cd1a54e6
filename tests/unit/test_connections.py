"""The connection registry on libvirt's test driver: deadlines, fail-fast, state, one connection per host."""

import threading
import time

import pytest

from tests.conftest import BASIC_WORLD
from virt.connections import HostState, Registry
from virt.errors import HostBusy, NotFound, Unreachable, host_words
from virt.events import DOMAIN, HostEvent
from virt.uri import ConnectionSpec, Transport

SPEC = ConnectionSpec(Transport.TEST, path=str(BASIC_WORLD))


@pytest.fixture
def registry():
    reg = Registry(open_timeout=2, call_timeout=0.5)
    yield reg
    reg.close_all()


def test_call_returns_value_and_marks_host_up(registry: Registry) -> None:
    host = registry.host("h1", SPEC)
    names = host.call(lambda conn: sorted(d.name() for d in conn.listAllDomains()))
    assert names[:2] == ["<img src=x onerror=alert(1)>", "db-01"]
    assert host.status.state == HostState.UP


def test_one_connection_per_host(registry: Registry) -> None:
    first = registry.host("h1", SPEC).call(lambda conn: conn)
    again = registry.host("h1", SPEC).call(lambda conn: conn)
    assert first is again


def test_changed_spec_replaces_connection(registry: Registry) -> None:
    old = registry.host("h1", SPEC)
    new = registry.host("h1", ConnectionSpec(Transport.TEST, path="default"))
    assert old is not new
    assert new.call(lambda conn: conn.getURI()) == "test:///default"


def _until(check, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_slow_call_fails_within_its_deadline_but_a_host_that_answers_is_busy_not_down(registry: Registry) -> None:
    host = registry.host("h1", SPEC)
    host.call(lambda conn: conn.getLibVersion())
    release = threading.Event()
    began = time.monotonic()
    # The probe finds the host answering: one slow call (a VM's job lock, say) is not a dead host.
    with pytest.raises(HostBusy, match=r"the host answers, but not this call within 0\.5 s"):
        host.call(lambda conn: release.wait(5))
    assert time.monotonic() - began < 1.5
    assert host.status.state == HostState.UP
    assert host.call(lambda conn: conn.getLibVersion()) > 0
    release.set()


def test_frozen_host_fails_fast_then_recovers(registry: Registry, monkeypatch) -> None:
    host = registry.host("h1", SPEC)
    host.call(lambda conn: conn.getLibVersion())
    # A frozen daemon answers no probe either; the real one is tested with `labctl freeze`
    # (tests/integration/test_hosts_lab.py). The test driver runs in-process and cannot freeze.
    monkeypatch.setattr(host, "_probe", threading.Event)  # a probe that is never answered
    release = threading.Event()
    with pytest.raises(Unreachable, match="no answer within"):
        host.call(lambda conn: release.wait(5))
    assert host.status.state == HostState.DEGRADED
    began = time.monotonic()
    with pytest.raises(Unreachable, match="not responding"):
        host.call(lambda conn: conn.getLibVersion())
    assert time.monotonic() - began < 0.1
    release.set()  # the daemon thaws: its answer clears the failure
    assert _until(lambda: host.status.state == HostState.UP)
    assert host.call(lambda conn: conn.getLibVersion()) > 0


def test_more_callers_than_slots_queue_and_all_get_their_answer() -> None:
    reg = Registry(open_timeout=2, call_timeout=2.0, slots=2)
    try:
        host = reg.host("h1", SPEC)
        host.call(lambda conn: conn.getLibVersion())
        answers: list[object] = []

        def caller(i: int) -> None:
            try:
                answers.append(host.call(lambda conn: (time.sleep(0.1), i)[1]))
            except Exception as exc:
                answers.append(exc)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(a for a in answers if isinstance(a, int)) == list(range(12)), answers
        assert host.status.state == HostState.UP
    finally:
        reg.close_all()


def test_a_call_whose_deadline_passes_in_the_queue_is_busy_and_never_runs() -> None:
    reg = Registry(open_timeout=2, call_timeout=2.0, slots=1)
    try:
        host = reg.host("h1", SPEC)
        host.call(lambda conn: conn.getLibVersion())
        release = threading.Event()
        holder = host.submit(lambda conn: release.wait(2))
        ran = threading.Event()
        with pytest.raises(HostBusy, match=r"^busy: 1 calls queued"):
            host.call(lambda conn: ran.set(), timeout=0.3)
        release.set()
        host.wait(holder)
        time.sleep(0.1)
        assert not ran.is_set()
        assert host.queued == 0
        assert host.status.state == HostState.UP
        assert host_words(HostBusy("busy: 1 calls queued")) == "busy: 1 calls queued"
        assert host_words(Unreachable("refused")) == "unreachable: refused"
    finally:
        reg.close_all()


def test_overlapping_reads_share_one_call_and_a_fresh_answer_is_kept(registry: Registry) -> None:
    host = registry.host("h1", SPEC)
    calls: list[int] = []
    gate = threading.Event()

    def bulk(conn) -> list[str]:
        calls.append(1)
        gate.wait(2)
        return sorted(d.name() for d in conn.listAllDomains())

    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(host.read("domains", DOMAIN, bulk)))
               for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 10 and all(r == results[0] for r in results)
    host.read("domains", DOMAIN, bulk)  # within the freshness window
    assert len(calls) == 1
    host.reads.invalidate(DOMAIN)
    host.read("domains", DOMAIN, bulk)
    assert len(calls) == 2
    host.read("domains", DOMAIN, bulk, fresh_for=0)
    assert len(calls) == 3


def test_after_the_window_the_last_answer_serves_while_a_new_read_runs() -> None:
    reg = Registry(open_timeout=2, call_timeout=2.0)
    host = reg.host("h1", SPEC)
    host.reads.fresh_for, host.reads.stale_for = 0.1, 0.5
    gate = threading.Event()
    answers = iter(["first", "second"])

    def slow_read(conn) -> str:
        answer = next(answers)
        if answer == "second":
            gate.wait(3)
        return answer

    assert host.read("k", DOMAIN, slow_read) == "first"
    time.sleep(0.15)  # past the window: this reader starts the new read and is answered at once
    began = time.monotonic()
    assert host.read("k", DOMAIN, slow_read) == "first"
    assert host.read("k", DOMAIN, slow_read) == "first"  # shares the flight's wait-free answer
    assert time.monotonic() - began < 0.1
    time.sleep(0.5)  # the new read is no longer young: readers now wait for it (within their deadline)
    threading.Timer(0.1, gate.set).start()
    assert host.read("k", DOMAIN, slow_read) == "second"
    reg.close_all()


def test_a_failed_read_drops_the_kept_answer(registry: Registry) -> None:
    host = registry.host("h1", SPEC)
    host.reads.fresh_for = 0.05
    assert host.read("k", DOMAIN, lambda conn: "kept") == "kept"
    time.sleep(0.06)
    host.read("k", DOMAIN, lambda conn: conn.lookupByName("no-such-vm"))  # served the last answer meanwhile
    time.sleep(0.05)
    with pytest.raises(NotFound):  # the failure dropped it: nobody is served the old answer any more
        host.read("k", DOMAIN, lambda conn: conn.lookupByName("no-such-vm"))


def test_a_failed_read_is_shared_but_not_kept(registry: Registry) -> None:
    host = registry.host("h1", SPEC)
    with pytest.raises(NotFound):
        host.read("vm", DOMAIN, lambda conn: conn.lookupByName("no-such-vm"))
    assert host.read("vm", DOMAIN, lambda conn: "found") == "found"


def test_a_domain_event_reaches_listeners_and_drops_kept_reads() -> None:
    reg = Registry(open_timeout=2, call_timeout=2.0, fresh_for=60)
    try:
        host = reg.host("h1", ConnectionSpec(Transport.TEST, path="default"))
        seen: list[HostEvent] = []
        unsubscribe = host.subscribe(seen.append)
        names = host.read("domains", DOMAIN, lambda conn: [d.name() for d in conn.listAllDomains()])
        assert names == ["test"]
        host.call(lambda conn: conn.lookupByName("test").suspend())
        assert _until(lambda: any(e.what == "suspended" for e in seen))
        event = next(e for e in seen if e.what == "suspended")
        assert event.topic == DOMAIN and event.uuid == host.call(lambda c: c.lookupByName("test").UUIDString())
        calls: list[int] = []
        host.read("domains", DOMAIN, lambda conn: calls.append(1))
        assert calls == [1]  # the event dropped the kept answer although it was kept for 60 s
        host.call(lambda conn: conn.lookupByName("test").resume())
        unsubscribe()
    finally:
        reg.close_all()


def test_libvirt_errors_are_translated(registry: Registry) -> None:
    host = registry.host("h1", SPEC)
    with pytest.raises(NotFound, match="not found"):
        host.call(lambda conn: conn.lookupByName("no-such-vm"))
    assert host.status.state == HostState.UP


def test_unopenable_host_is_down_with_reason_and_backs_off(registry: Registry) -> None:
    host = registry.host("h2", ConnectionSpec(Transport.TCP, hostname="127.0.0.1", port=1))
    with pytest.raises(Unreachable, match="refused"):
        host.call(lambda conn: conn.getLibVersion())
    assert host.status.state == HostState.DOWN
    assert "refused" in host.status.reason
    began = time.monotonic()
    with pytest.raises(Unreachable):
        host.call(lambda conn: conn.getLibVersion())
    assert time.monotonic() - began < 0.05  # within the backoff window: no new attempt
