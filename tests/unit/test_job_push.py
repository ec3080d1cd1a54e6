"""Job progress pushed over /jobs/ws/ID/: the job's JSON at once and at each step its worker reports, the
end closes the socket; only the job's owner and admins, from the panel's own origin, are let in."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from hosts.models import Host
from jobs import consumers, runner
from jobs.models import Job, JobState
from tests.unit.test_jobs import steps_kind  # noqa: F401 (fixture)
from tests.unit.test_live import ORIGIN, cookie_of
from webkvm.asgi import application
from webkvm.config import channel_layers

pytestmark = pytest.mark.django_db(transaction=True)


def _socket(job: Job, cookie: str, origin: str = ORIGIN) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/jobs/ws/{job.pk}/", headers=[
        (b"origin", origin.encode()), (b"host", b"127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())])


def _started(admin_user: Any, host: Host, rf: Any) -> Job:
    request = rf.post("/")
    request.user = admin_user
    job = runner.start(request, "test.steps", host, runner.Target("host", host.name), {})
    deadline = time.monotonic() + 30
    while not Job.objects.filter(pk=job.pk, state=JobState.RUNNING, phase="step 1").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return job


@pytest.fixture
def redis_layer(settings: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The channel layer of several processes (Redis), and no rereading of the row within the test: what
    arrives was pushed."""
    settings.CHANNEL_LAYERS = channel_layers(redis_url)
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 600.0)


def _follow(job: Job, cookie: str, go: threading.Event) -> list[dict[str, Any]]:
    async def follow() -> list[dict[str, Any]]:
        communicator = _socket(job, cookie)
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        frames = [json.loads(await communicator.receive_from(timeout=10))]
        go.set()  # the job runs its ten steps now
        while True:
            message = await communicator.receive_output(timeout=15)
            if message["type"] == "websocket.close":
                frames.append({"closed": message.get("code")})
                return frames
            frames.append(json.loads(message["text"]))

    return async_to_sync(follow)()


def test_each_step_is_pushed_and_the_end_closes_the_socket(admin_client: Client, admin_user: Any, rf: Any,
                                                          test_host: Host, redis_layer: None,
                                                          steps_kind: threading.Event) -> None:  # noqa: F811
    job = _started(admin_user, test_host, rf)
    frames = _follow(job, cookie_of(admin_client), steps_kind)
    assert frames[0]["state"] == "running" and frames[0]["phase"] == "step 1" and frames[0]["id"] == job.pk
    phases = [f.get("phase") for f in frames[1:-1]]
    assert "step 10" in phases, phases  # pushed as they happened, not just the end
    assert frames[-2]["state"] == "done" and frames[-2]["result"] == "all ten steps"
    assert frames[-1] == {"closed": 4000}


def test_without_a_shared_layer_the_socket_rereads_the_job(admin_client: Client, admin_user: Any, rf: Any,
                                                           test_host: Host, monkeypatch: pytest.MonkeyPatch,
                                                           steps_kind: threading.Event) -> None:  # noqa: F811
    """The panel alone: its in-memory layer does not reach the job's thread, so the page learns from the row."""
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.2)
    job = _started(admin_user, test_host, rf)
    frames = _follow(job, cookie_of(admin_client), steps_kind)
    assert frames[-2]["state"] == "done" and frames[-1] == {"closed": 4000}


@pytest.mark.parametrize("who", ["outsider", "anonymous", "foreign-origin"])
def test_others_are_refused(who: str, admin_client: Client, outsider_client: Client, admin_user: Any, rf: Any,
                            test_host: Host, steps_kind: threading.Event) -> None:  # noqa: F811
    job = _started(admin_user, test_host, rf)
    cookie = {"outsider": cookie_of(outsider_client), "anonymous": "none"}.get(who, cookie_of(admin_client))

    async def knock() -> tuple[bool, Any]:
        connected, code = await _socket(job, cookie, "http://evil.example" if who == "foreign-origin"
                                         else ORIGIN).connect(timeout=10)
        return connected, code

    assert async_to_sync(knock)() == (False, 4403)


def test_the_page_follows_the_socket(admin_client: Client, admin_user: Any, rf: Any, test_host: Host,
                                     steps_kind: threading.Event) -> None:  # noqa: F811
    job = _started(admin_user, test_host, rf)
    page = admin_client.get(job.get_absolute_url()).content.decode()
    assert f'data-socket="/jobs/ws/{job.pk}/"' in page
