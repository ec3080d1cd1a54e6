"""The connection registry on libvirt's test driver: deadlines, fail-fast, state, one connection per host."""

import threading
import time

import pytest

from tests.conftest import BASIC_WORLD
from virt.connections import HostState, Registry
from virt.errors import NotFound, Unreachable
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


def test_slow_call_fails_within_deadline_and_host_is_degraded(registry: Registry) -> None:
    host = registry.host("h1", SPEC)
    host.call(lambda conn: conn.getLibVersion())
    release = threading.Event()
    began = time.monotonic()
    with pytest.raises(Unreachable, match="no answer within"):
        host.call(lambda conn: release.wait(5))
    assert time.monotonic() - began < 1.0
    assert host.status.state == HostState.DEGRADED
    release.set()


def test_stuck_host_fails_fast_then_recovers(registry: Registry) -> None:
    host = registry.host("h1", SPEC)
    release = threading.Event()
    for _ in range(host.max_in_flight):
        host.submit(lambda conn: release.wait(5))
    began = time.monotonic()
    with pytest.raises(Unreachable, match="not responding"):
        host.call(lambda conn: conn.getLibVersion())
    assert time.monotonic() - began < 0.1
    release.set()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            assert host.call(lambda conn: conn.getLibVersion()) > 0
            break
        except Unreachable:
            time.sleep(0.05)
    assert host.status.state == HostState.UP


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
