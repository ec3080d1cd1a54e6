"""Many people at once, on the real lab libvirtd behind a 20 ms link: a busy host is never called
unreachable, identical reads share one libvirt call, a frozen host still fails fast while another
host's pages stay fast, and one VM's actions stay serialised."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from instances.host_rows import host_rows
from lab import labctl
from lab.forwarder import Forwarder
from tests.conftest import PASSWORD
from virt.shared_reads import SharedReads
from webkvm import credentials

# The freshness window of shared reads plus the grace in which a new read's predecessor still serves.
READ_WINDOW = services.registry.fresh_for + SharedReads().stale_for + 0.1

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.lab]

RTT_MS = 20.0


@pytest.fixture
def slow_link(lab: dict[str, Any]) -> Iterator[Forwarder]:
    """The lab's qemu+tcp port behind a forwarder adding 20 ms of round trip and counting libvirt calls."""
    with Forwarder(("127.0.0.1", 16509), rtt_ms=RTT_MS) as forwarder:
        yield forwarder


def remote_host(forwarder: Forwarder, name: str = "far") -> Host:
    return Host.objects.create(name=name, transport="tcp", hostname="127.0.0.1", port=forwarder.port,
                               insecure_tcp=True)


def sessions(count: int) -> list[Client]:
    admin = get_user_model().objects.filter(is_superuser=True).first() or \
        get_user_model().objects.create_superuser("many-admin", "", PASSWORD)
    clients = []
    for _ in range(count):
        client = Client()
        client.force_login(admin)
        clients.append(client)
    return clients


def hammer(clients: list[Client], url: str, seconds: float) -> list[tuple[int, str, float]]:
    """Every client loads `url` in a loop for `seconds`, all at once; (status, body, seconds) per answer."""
    answers: list[tuple[int, str, float]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop(client: Client) -> None:
        while time.monotonic() < stop:
            began = time.monotonic()
            response = client.get(url)
            with lock:
                answers.append((response.status_code, response.content.decode(), time.monotonic() - began))

    threads = [threading.Thread(target=loop, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_many_sessions_on_one_host_page_never_see_it_unreachable(slow_link: Forwarder, lab_domain) -> None:
    lab_domain()
    host = remote_host(slow_link)
    url = reverse("instances:host", args=[host.name])
    sessions(1)[0].get(url)  # open the connection first: opening is not what this test measures
    slow_link.reset_calls()
    answers = hammer(sessions(20), url, 4.0)
    calls = slow_link.take_calls()
    assert len(answers) >= 20
    wrong = [body.split('class="unreachable"')[1][:200] for status, body, _ in answers if 'class="unreachable"' in body]
    assert wrong == [], wrong[:3]
    assert all(status == 200 for status, _, _ in answers)
    # Shared reads: far fewer libvirt calls than pages (3 per read, at most one read per second or so).
    assert calls < 3 * len(answers) / 4, (calls, len(answers))


def test_concurrent_identical_reads_cost_one_libvirt_read(slow_link: Forwarder, lab_domain) -> None:
    lab_domain()
    host = remote_host(slow_link)
    services.call(host, lambda conn: conn.getLibVersion())
    services.connection(host).reads.invalidate()
    slow_link.reset_calls()
    single = host_rows(host)
    per_read = slow_link.take_calls()
    assert per_read == 3  # getAllDomainStats + two filtered listAllDomains
    services.connection(host).reads.invalidate()
    results: list[Any] = []
    start = threading.Barrier(10)

    def reader() -> None:
        start.wait()
        results.append(host_rows(host))

    threads = [threading.Thread(target=reader) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 10 and all(r is results[0] for r in results)
    assert slow_link.take_calls() == per_read, "ten overlapping readers made more than one read"
    assert {r.uuid for r in results[0].rows} == {r.uuid for r in single.rows}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    began = time.monotonic()
    value = fn()
    return value, time.monotonic() - began


def test_frozen_host_fails_fast_while_another_stays_fast_and_recovers(lab: dict[str, Any], lab_domain) -> None:
    lab_domain()
    sasl = lab["sasl"]
    frozen = Host.objects.create(name="main", transport="tcp", hostname="127.0.0.1", port=16509, insecure_tcp=True)
    Host.objects.create(name="other", transport="tcp", hostname="127.0.0.1", port=16510,
                        sasl_username=sasl["username"],
                        sasl_password_encrypted=credentials.encrypt(sasl["password"]))
    client = sessions(1)[0]
    fleet = reverse("instances:list")
    assert 'class="unreachable"' not in client.get(fleet).content.decode()
    labctl.freeze()
    try:
        time.sleep(READ_WINDOW)  # pages may show the host's last answer this long (virt/shared_reads.py)
        page, first = _timed(lambda: client.get(fleet).content.decode())
        assert first < settings_deadline() + 1.5, first
        row = page.split('data-host="main"')[1].split("</tr>")[0]
        assert "unreachable:" in row, row
        assert 'data-host="other"' not in page  # the other host answers: its VMs are listed, no failure row
        # Later pages fail fast on the frozen host instead of waiting for it again, and the other's pages stay fast.
        for url in (fleet, reverse("instances:host", args=["other"]), reverse("hosts:list")):
            _body, seconds = _timed(lambda u=url: client.get(u).content.decode())
            assert seconds < 1.0, (url, seconds)
        assert "unreachable:" in client.get(reverse("instances:host", args=["main"])).content.decode()
    finally:
        labctl.thaw()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if 'data-host="main"' not in client.get(fleet).content.decode():
            break
        time.sleep(0.5)
    else:
        pytest.fail("the thawed host did not come back")
    assert services.status(frozen).reachable


def settings_deadline() -> float:
    from django.conf import settings

    return float(max(settings.WEBKVM_CALL_TIMEOUT, settings.WEBKVM_OPEN_TIMEOUT))


def test_one_vms_actions_from_many_sessions_run_one_at_a_time(lab: dict[str, Any], lab_domain) -> None:
    dom = lab_domain()
    # A 300 ms link keeps the first action running while the other sessions' requests arrive.
    with Forwarder(("127.0.0.1", 16509), rtt_ms=300) as link:
        host = remote_host(link)
        services.call(host, lambda conn: conn.getLibVersion(), timeout=30)  # opening takes a dozen round trips
        url = reverse("instances:action", args=[host.name, dom.UUIDString(), "suspend"])
        clients = sessions(8)
        answers: list[list[str]] = []
        lock = threading.Lock()
        start = threading.Barrier(len(clients))

        def act(client: Client) -> None:
            start.wait()
            try:
                body = client.post(url, {"confirm": "yes"}, follow=True).content.decode()
            except Exception as exc:  # reported by the assertions below
                body = f'<p class="msg crash" role="status">{exc!r}</p>'
            with lock:
                answers.append(re.findall(r'class="msg [^"]*" role="status">([^<]*)<', body))

        threads = [threading.Thread(target=act, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    words = [" ".join(found) for found in answers]
    assert dom.state()[0] == 3, words  # VIR_DOMAIN_PAUSED: libvirt did it
    assert sum("pause: done" in w.lower() for w in words) == 1, words
    assert sum("still running" in w for w in words) == 7, words  # the VM's lock: "busy", never "unreachable"
