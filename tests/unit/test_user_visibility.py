"""What low-privilege users can see: every page, JSON answer and live-updates frame a user with grants can
get names no object that user may not use (tests/tenants.py), and no host error text when the host is
unreachable. The routes come from tests/unit/test_routes.py's walker: a new route is covered here too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import Client

from hosts import services
from hosts.models import Host
from jobs.models import Job
from tests.conftest import DB_01_UUID, PASSWORD, WEB_01_UUID
from tests.tenants import XSS_UUID, furnish, private_named
from tests.unit.test_live import _frames, _open, cookie_of
from tests.unit.test_routes import CASES, Route, _url
from virt.errors import VirtError
from webkvm.models import VMGrant, VMPermission
from webkvm.operations import ADMIN, PUBLIC, Access

JOB_ID = 4343
GONE = "gone"  # a host that refuses connections

# Every route a user with grants can open: anybody logged in, the owner of a job, a grant on a VM.
# (Of an API route declaring its methods, its reads: GET.)
OPEN_TO_USERS = [(r, c, a) for r, c, a, m in CASES if a.permission not in (ADMIN, PUBLIC) and m in (None, "GET")]


def _id(case: tuple[Route, str | None, Access]) -> str:
    return f"{case[0].name}{' ' + case[1] if case[1] else ''}"


def _everything(user: Any, host: Host) -> None:
    VMGrant.objects.create(user=user, host=host, vm_uuid=WEB_01_UUID, vm_name="web-01",
                           **{f"can_{p.value}": True for p in VMPermission if p != VMPermission.VIEW})


@pytest.fixture
def tenant(test_host: Host) -> Client:
    """A user with every grant on web-01 of the tenants' host and on a VM of an unreachable host, and a job."""
    furnish(test_host)
    user = get_user_model().objects.create_user("tenant-a", "", PASSWORD)
    other = get_user_model().objects.create_user("tenant-b", "", PASSWORD)
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


def _pages(client: Client, url: str, post: bool) -> Iterator[tuple[int, str]]:
    """A GET of a page; with `post`, an empty POST too (its message shows on the page it leads to)."""
    response = client.get(url, follow=True)
    if response.status_code != 405:
        yield response.status_code, response.content.decode()
    if post:
        response = client.post(url, {}, follow=True)
        yield response.status_code, response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("case", OPEN_TO_USERS, ids=[_id(c) for c in OPEN_TO_USERS])
def test_users_see_nothing_they_may_not_use(tenant: Client, case: tuple[Route, str | None, Access]) -> None:
    route, chosen, _ = case
    for status, text in _pages(tenant, _job_url(_url(route, chosen)), post=False):
        assert status < 500, status
        assert private_named(text) == [], f"{route.name} names {private_named(text)}"


@pytest.mark.django_db
@pytest.mark.parametrize("case", OPEN_TO_USERS, ids=[_id(c) for c in OPEN_TO_USERS])
def test_users_read_no_host_error_text(tenant: Client, case: tuple[Route, str | None, Access]) -> None:
    """Every route, with its VM (or host) on the unreachable host; changes are posted too, since nothing there
    can change: their failure messages are checked as well."""
    route, chosen, _ = case
    url = _job_url(_url(route, chosen)).replace("/testhost/", f"/{GONE}/")
    words = _gone_words()
    for status, text in _pages(tenant, url, post=True):
        assert status < 500 or status == 503, status  # 503: the page says the host cannot be asked
        for leak in (words, "libvirtd", "refused", "127.0.0.1:1"):
            assert leak not in text, f"{route.name} shows {leak!r}"


@pytest.mark.django_db(transaction=True)  # the consumer reads the database from other threads
@pytest.mark.parametrize("query", ["scope=fleet", "host=testhost", f"vm=testhost/{WEB_01_UUID}", f"host={GONE}"])
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
