"""What low-privilege users can see: every page (its GET and its POST), every declared method of an API route,
and every WebSocket's frames and close reasons that a user with grants and a self-service quota can get name no
object that user may not use (tests/tenants.py), and no host error text when the host is unreachable. The
routes come from tests/unit/test_routes.py's walker and webkvm/routing.py's WebSocket routes: a new route is
covered here too."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern

from hosts import services
from hosts.models import Host
from instances.models import Quota
from jobs import runner
from jobs.models import Job, JobState
from tests.conftest import BASIC_WORLD, DB_01_UUID, PASSWORD, WEB_01_UUID
from tests.tenants import (
    LIBRARY_ISO,
    OTHERS_IMAGE,
    OTHERS_NETWORK,
    OTHERS_POOL,
    OWN_IMAGE,
    XSS_UUID,
    furnish,
    give_quotas,
    private_named,
)
from tests.unit.test_live import _frames, _open, cookie_of
from tests.unit.test_routes import CASES, Route, _url
from tests.unit.test_websocket_routes import socket_answer, socket_ticket, socket_url
from virt.errors import VirtError
from webkvm.models import VMGrant, VMPermission
from webkvm.operations import ADMIN, PUBLIC, Access
from webkvm.routing import websocket_urlpatterns

JOB_ID = 4343
GONE = "gone"  # a host that refuses connections

# Every route a user with grants can open: anybody logged in, the owner of a job, a grant on a VM; of an API
# route declaring its methods, each method (its reads and its changes).
OPEN_TO_USERS = [case for case in CASES if case[2].permission not in (ADMIN, PUBLIC)]
Case = tuple[Route, str | None, Access, str | None]


def _id(case: Case) -> str:
    return f"{case[0].name}{' ' + case[3] if case[3] else ''}{' ' + case[1] if case[1] else ''}"


def _everything(user: Any, host: Host) -> None:
    VMGrant.objects.create(user=user, host=host, vm_uuid=WEB_01_UUID, vm_name="web-01",
                           **{f"can_{p.value}": True for p in VMPermission if p != VMPermission.VIEW})


@pytest.fixture
def test_host(db: None, tmp_path: Path) -> Host:  # overrides tests/conftest.py's
    """basic.xml with web-01's display on a port just closed: 5899 may be another test's fake VNC server, and
    the console must fail to reach it here."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    world = tmp_path / "world.xml"
    world.write_text(BASIC_WORLD.read_text().replace('port="5899"', f'port="{port}"'))
    return Host.objects.create(name="testhost", transport="test", path=str(world))


@pytest.fixture
def tenant(test_host: Host) -> Client:
    """A user with every grant on web-01 of the tenants' host and on a VM of an unreachable host, a job, and a
    self-service quota (tests/tenants.py)."""
    furnish(test_host)
    user = get_user_model().objects.create_user("tenant-a", "", PASSWORD)
    other = get_user_model().objects.create_user("tenant-b", "", PASSWORD)
    give_quotas(test_host, user, other)
    _everything(user, test_host)
    gone = Host.objects.create(name=GONE, transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    _everything(user, gone)
    VMGrant.objects.create(user=other, host=test_host, vm_uuid="22222222-2222-4222-8222-222222222222",
                           vm_name="db-01", can_change=True)
    Job.objects.create(pk=JOB_ID, kind="volume.wipe", host=test_host, owner=user, state="done",
                       target_type="volume", target_name="images/mine.qcow2", summary="a job of tenant A",
                       params={"pool": "images", "name": "mine.qcow2"})
    client = Client()
    client.force_login(user)
    return client


def _job_url(url: str) -> str:
    return url.replace("/4242", f"/{JOB_ID}")


def _gone_words() -> str:
    """What the unreachable host's connection says (admins read it; users must not)."""
    gone = Host.objects.get(name=GONE)
    try:
        services.call(gone, lambda conn: conn.getHostname())
    except VirtError as exc:
        return str(exc)
    raise AssertionError("the host answered")


def _pages(client: Client, case: Case, host: str = "testhost") -> Iterator[tuple[int, str]]:
    """What the user reads at a route: a page's GET and an empty POST (its message shows on the page it leads
    to), a method the route does not take (405) left out; an API route's declared method, with a JSON body."""
    route, chosen, _, method = case
    url = _job_url(_url(route, chosen, method=method)).replace("/testhost/", f"/{host}/")
    if method:
        response = client.generic(method, url, json.dumps(API_BODIES.get((route.name, method), {})),
                                  content_type="application/json")
        yield response.status_code, response.content.decode()
        return
    response = client.get(url, follow=True)
    if response.status_code != 405:
        yield response.status_code, response.content.decode()
    response = client.post(url, {}, follow=True)
    if response.status_code != 405:
        yield response.status_code, response.content.decode()


# The body of an API change that would stop at validation with none: one the page's form takes, so the answer
# comes from the host (or from what it refuses). Left out: `{}`, each field at the value the page shows.
API_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("api:vm-cdrom-media", "PUT"): {"iso": f"isos/{LIBRARY_ISO}"},
    ("api:vm-disks", "POST"): {"source": "new", "pool": "images", "size": "1 GiB"},
    ("api:vm-name", "PUT"): {"name": "web-02"},
    ("api:vm-nic", "PATCH"): {"source": "network:lan"},
    ("api:vm-nic-link", "PUT"): {"up": False},
    ("api:vm-nics", "POST"): {"source": "network:lan"},
    ("api:vm-snapshots", "POST"): {"name": "before"},
    # Over the quota: refused (nothing is made), after the host was asked what it offers.
    ("api:vm-create-own", "POST"): {"name": "mine-2", "user": "me", "password": "a-long-secret", "size": "custom",
                                    "vcpus": 64, "memory": "1 GiB"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", OPEN_TO_USERS, ids=[_id(c) for c in OPEN_TO_USERS])
def test_users_see_nothing_they_may_not_use(tenant: Client, case: Case) -> None:
    pages = list(_pages(tenant, case))
    assert pages, f"{_id(case)} answered neither GET nor POST"
    for status, text in pages:
        assert status < 500, status
        assert private_named(text) == [], f"{_id(case)} names {private_named(text)}"


@pytest.mark.django_db
@pytest.mark.parametrize("case", OPEN_TO_USERS, ids=[_id(c) for c in OPEN_TO_USERS])
def test_users_read_no_host_error_text(tenant: Client, case: Case) -> None:
    """Every route, with its VM (or host) on the unreachable host; changes are posted too, since nothing there
    can change: their failure messages are checked as well."""
    words = _gone_words()
    Quota.objects.get(user__username="tenant-a").hosts.set([Host.objects.get(name=GONE)])  # self-service there
    pages = list(_pages(tenant, case, host=GONE))
    assert pages, f"{_id(case)} answered neither GET nor POST"
    for status, text in pages:
        assert status < 500 or status == 503, status  # 503: the page says the host cannot be asked
        for leak in (words, "libvirtd", "refused", "127.0.0.1:1"):
            assert leak not in text, f"{_id(case)} shows {leak!r}"


@pytest.mark.django_db(transaction=True)  # the consumer reads the database from other threads
# (The scopes of one host, on either host: test_websocket_frames_name_nothing_else.)
@pytest.mark.parametrize("query", ["scope=fleet", f"vm=testhost/{WEB_01_UUID}"])
def test_live_frames_name_nothing_else(tenant: Client, query: str) -> None:
    async def run() -> list[dict[str, Any]]:
        page = await _open(query, cookie_of(tenant))
        frames = await _frames(page, 1.5)
        await page.disconnect()
        return frames

    frames = async_to_sync(run)()
    assert frames, "the page heard nothing"
    text = json.dumps(frames)
    assert private_named(text) == []
    for leak in (_gone_words(), "libvirtd", "refused"):
        assert leak not in text


# Bulk actions on the VM list: the ticked VMs as posted (a forged post may name others' VMs), unconfirmed and
# confirmed; what the answer (and the page it leads to) says names none of the others, nor the host's words.
BULK_CASES = [(action, confirm) for action in ("start", "shutdown", "destroy", "delete") for confirm in ("", "yes")]


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "confirm"), BULK_CASES, ids=[f"{a}-{c or 'asked'}" for a, c in BULK_CASES])
def test_bulk_answers_name_nothing_else(tenant: Client, action: str, confirm: str) -> None:
    ticked = [f"testhost/{WEB_01_UUID}", f"testhost/{DB_01_UUID}", f"testhost/{XSS_UUID}", f"{GONE}/{WEB_01_UUID}"]
    response = tenant.post("/instances/bulk/", {"action": action, "vm": ticked, "confirm": confirm}, follow=True)
    text = response.content.decode()
    assert response.status_code == 200
    assert private_named(text) == []
    for leak in (_gone_words(), "libvirtd", "127.0.0.1:1"):
        assert leak not in text


# Every WebSocket route (webkvm/routing.py), opened by the tenant as its page opens it, on the tenants' host and on
# the unreachable one: a ticketed console and serial console of their own VM, their own job (there: one that
# failed on the host), the live page of the host. Frames and close reasons name nothing else, nor the host's words.
SOCKET_CASES = [(route, host) for route in websocket_urlpatterns for host in ("testhost", GONE)]


def _own_failed_job(client: Client) -> int:
    """A job of the tenant's on the unreachable host, run by the worker: it failed there."""
    job = Job.objects.create(kind="volume.wipe", host=Host.objects.get(name=GONE), owner=get_user_model().objects.get(
        username="tenant-a"), state=JobState.QUEUED, target_type="volume", target_name="images/mine.qcow2",
        summary="a job of tenant A", params={"pool": "images", "name": "mine.qcow2"})
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.FAILED, job.state
    return job.pk


@pytest.mark.django_db(transaction=True)  # the consumers read the database from other threads
@pytest.mark.parametrize(("route", "host"), SOCKET_CASES, ids=[f"{r.pattern}-{h}" for r, h in SOCKET_CASES])
def test_websocket_frames_name_nothing_else(tenant: Client, route: URLPattern, host: str) -> None:
    job = _own_failed_job(tenant) if host == GONE else JOB_ID
    url = socket_url(route, host=host, job=job)
    if str(route.pattern) == "live/ws/":
        url = url.split("?")[0] + f"?host={host}"
    ticket = socket_ticket(route, tenant, host=host)
    connected, came = async_to_sync(socket_answer)(url, cookie_of(tenant), ticket, seconds=1.5)
    assert connected, f"the tenant was refused at {url}: {came}"
    assert came, "the socket said nothing"
    said = [m.get("text") or m.get("reason") or m.get("bytes", b"").decode("latin-1") for m in came]
    text = json.dumps(said, ensure_ascii=False)
    assert private_named(text) == [], f"{route.pattern} names {private_named(text)}"
    for leak in (_gone_words(), "libvirtd", "refused", "127.0.0.1:1"):
        assert leak not in text, f"{route.pattern} on {host} says {leak!r}: {text}"



@pytest.mark.django_db(transaction=True)
def test_admins_read_where_and_why_a_console_is_unreachable(test_host: Host, admin_client: Client) -> None:
    """The counterpart of the tenant's "cannot reach the VNC server of web-01: host unavailable" (console/target.py):
    the address and the system's words reach admins (and the audit record)."""
    route = next(r for r in websocket_urlpatterns if str(r.pattern).startswith("console/ws/"))
    ticket = socket_ticket(route, admin_client)
    _, came = async_to_sync(socket_answer)(socket_url(route), cookie_of(admin_client), ticket)
    assert came[-1].get("code") == 4403
    port = Path(test_host.path).read_text().split('graphics type="vnc" port="')[1].split('"')[0]
    assert came[-1]["reason"] == f"cannot reach the VNC server of web-01: 127.0.0.1:{port}: Connection refused"


# The self-service pages of a user with a quota: the create page (its form on the quota's host) and "My quota"
# show what the quota opens (so they are seen with content) and none of what another tenant's quota opens,
# although that pool and network are opened to users too.
SELF_SERVICE = {  # each page, and what it shows of the quota: its image, pool and network
    "/instances/new-from-image/": [OWN_IMAGE, '<option value="images">', '<option value="network:lan"'],
    "/instances/quota/": [f"{OWN_IMAGE}@testhost", "images on testhost", "lan on testhost"],
    "/api/v1/usage/": [OWN_IMAGE],
}


@pytest.mark.django_db
@pytest.mark.parametrize("url", SELF_SERVICE)
def test_self_service_pages_show_the_quota_and_nothing_of_others(tenant: Client, url: str) -> None:
    response = tenant.get(url)
    assert response.status_code == 200
    text = response.content.decode()
    for shown in SELF_SERVICE[url]:
        assert shown in text, f"{url} does not show {shown!r} of the quota"
    for name in (OTHERS_IMAGE, OTHERS_POOL, OTHERS_NETWORK):
        assert name not in text, f"{url} names {name}"
    assert private_named(text) == []
