"""A job's words are written by its worker, which has no user and no language, and read later by people in
theirs: the job page, the job list, the status JSON and the pushed frames show its summary, phase and result
in Chinese to a zh-Hans reader and in English to an English one; the Job's text fields and the audit record
keep the English."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from hosts.models import Host
from jobs import liveness, runner
from jobs.models import Job, JobState
from jobs.words import shown, stored
from tests.conftest import PASSWORD
from tests.unit.test_live import ORIGIN, cookie_of
from tests.unit.test_storage_views import GIB, make_volume
from virt.errors import Message, Unreachable, gettext_noop
from webkvm.asgi import application
from webkvm.models import AuditEvent, UserLanguage

pytestmark = pytest.mark.django_db(transaction=True)  # the socket reads the job in another thread


@pytest.fixture
def chinese_client(admin_user: Any) -> Client:
    """An admin who chose Simplified Chinese (admin_client, the job's owner, speaks English)."""
    reader = get_user_model().objects.create_superuser("zh-reader", "", PASSWORD)
    UserLanguage.objects.create(user=reader, language="zh-hans")
    client = Client()
    client.force_login(reader)
    return client


def _clone_job(host: Host, owner: Any, state: str = JobState.QUEUED, **fields: Any) -> Job:
    """A volume clone as storage/views/volumes.py starts it: its summary is plain text (no message of ours)."""
    return Job.objects.create(kind="volume.clone", host=host, owner=owner, state=state, target_type="volume",
                              target_name="images/copy.img", summary="copy of images/src.img (raw)",
                              params={"pool": "images", "source": "src.img", "name": "copy.img", "format": "",
                                      "total": GIB}, rq_id="here", **fields)


def _status(client: Client, job: Job) -> dict[str, Any]:
    data: dict[str, Any] = client.get(reverse("jobs:status", args=[job.pk])).json()
    return data


def test_a_running_jobs_phase_is_shown_in_each_readers_language(admin_client: Client, chinese_client: Client,
                                                                 admin_user: Any, test_host: Host,
                                                                 request: pytest.FixtureRequest) -> None:
    job = _clone_job(test_host, admin_user, state=JobState.RUNNING, started=timezone.now())
    worker = liveness.Heartbeat(job.pk)  # its worker lives: the pages do not end it as interrupted
    assert worker.start()
    request.addfinalizer(worker.stop)
    runner.Handle(job).progress(400 << 20, GIB, Message(gettext_noop("copying")))  # as its worker writes it
    job.refresh_from_db()
    assert job.phase == "copying" and job.words["phase"]["template"] == "copying"

    english, chinese = _status(admin_client, job), _status(chinese_client, job)
    assert (english["phase"], english["state_label"], english["label"]) == ("copying", "running", "Clone volume")
    assert (chinese["phase"], chinese["state_label"], chinese["label"]) == ("正在复制", "运行中", "克隆卷")
    assert english["state"] == chinese["state"] == "running"  # the code the page's script reads stays
    page = chinese_client.get(job.get_absolute_url()).content.decode()
    assert "正在复制" in page and "运行中" in page and ">copying<" not in page
    assert ">copying<" in admin_client.get(job.get_absolute_url()).content.decode()

    async def first_frame(cookie: str) -> dict[str, Any]:
        communicator = WebsocketCommunicator(application, f"/jobs/ws/{job.pk}/", headers=[
            (b"origin", ORIGIN.encode()), (b"host", b"127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())])
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        frame: dict[str, Any] = json.loads(await communicator.receive_from(timeout=10))
        await communicator.disconnect()
        return frame

    assert async_to_sync(first_frame)(cookie_of(chinese_client))["phase"] == "正在复制"  # each viewer's own
    assert async_to_sync(first_frame)(cookie_of(admin_client))["phase"] == "copying"


def test_a_finished_jobs_summary_and_result_are_shown_in_each_readers_language(
        admin_client: Client, chinese_client: Client, admin_user: Any, test_host: Host) -> None:
    make_volume(test_host, "src.img")
    job = _clone_job(test_host, admin_user)
    runner.execute(job.pk)  # the worker: no request, no language
    job.refresh_from_db()
    assert job.state == JobState.DONE, job.result
    assert job.result == "Volume copy.img made, a copy of src.img."  # the English, for the audit record
    assert AuditEvent.objects.get(action="volume.clone").detail.startswith(
        "copy of images/src.img (raw): Volume copy.img made, a copy of src.img. (")

    english, chinese = _status(admin_client, job), _status(chinese_client, job)
    assert english["result"] == "Volume copy.img made, a copy of src.img."
    assert english["summary"] == "copy of images/src.img (raw)" and english["state_label"] == "done"
    assert chinese["result"] == "已创建卷 copy.img，它是 src.img 的副本。"  # noqa: RUF001
    assert chinese["state_label"] == "已完成" and chinese["label"] == "克隆卷"
    assert chinese["summary"] == "克隆卷"  # a plain English summary: its kind's name in Chinese
    for url in (job.get_absolute_url(), reverse("jobs:list")):
        page = chinese_client.get(url).content.decode()
        assert "已创建卷 copy.img，它是 src.img 的副本。" in page and "已完成" in page  # noqa: RUF001
        assert "made, a copy of" not in page
        assert "Volume copy.img made, a copy of src.img." in admin_client.get(url).content.decode()


def test_libvirts_own_words_stay_as_libvirt_said_them(admin_client: Client, chinese_client: Client,
                                                       admin_user: Any, test_host: Host) -> None:
    job = _clone_job(test_host, admin_user)
    error = Unreachable(gettext_noop("{host} does not answer: {reason}"), host="testhost",
                        reason="Connection refused")
    runner.finish(job.pk, (JobState.QUEUED,), JobState.FAILED, error)
    job.refresh_from_db()
    assert job.result == "testhost does not answer: Connection refused"
    assert _status(chinese_client, job)["state_label"] == "失败"
    assert "Connection refused" in _status(chinese_client, job)["result"]  # a parameter: never translated


def test_words_read_back_the_same_and_a_job_without_them_shows_its_text(admin_user: Any, test_host: Host) -> None:
    said = Message(gettext_noop("Interrupted: {why} ({done})."), why=Message(gettext_noop("the worker running it "
                                                                                          "stopped")),
                   done=Message(gettext_noop("{done} of {total} done"), done="1 MiB", total="2 MiB"))
    with translation.override("en"):
        assert shown(stored(said)) == str(said) == "Interrupted: the worker running it stopped (1 MiB of 2 MiB done)."
    with translation.override("zh-hans"):
        assert shown(stored(said)) == "已中断：运行它的工作进程已停止（已完成 1 MiB / 2 MiB）。"  # noqa: RUF001
    assert shown("libvirt's words") == "libvirt's words" and shown(None, "English") == "English"
    old = Job.objects.create(kind="volume.wipe", host=test_host, owner=admin_user, state=JobState.DONE,
                             target_type="volume", target_name="images/w.img", summary="wipe w.img", result="done")
    with translation.override("en"):  # written before jobs kept their words: their English, or their kind
        assert (old.shown_summary, old.shown_result_for(admin_user)) == ("wipe w.img", "done")
    with translation.override("zh-hans"):
        assert old.shown_summary == "擦除卷"
