"""In Chromium: a volume clone answers with its job page, which shows it done with a link to the pool; a
longer job's page follows its progress without reloads (js/job-progress.js), and Cancel stops it."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from playwright.sync_api import expect

from hosts.models import Host
from jobs import runner
from jobs.models import Job
from tests.browser.conftest import log_in
from tests.conftest import BASIC_WORLD
from tests.unit.test_jobs import steps_kind  # noqa: F401 (fixture)
from tests.unit.test_storage_views import make_volume

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "browser-test-pass-1"


def test_clone_lands_on_its_job_page(live_server: Any, page: Any) -> None:
    get_user_model().objects.create_superuser("admin", "", PASSWORD)
    host = Host.objects.create(name="testhost", transport="test", path=str(BASIC_WORLD))
    make_volume(host, "src.img")
    log_in(page, live_server.url)
    page.goto(live_server.url + "/storage/testhost/pool/images/volume/src.img/clone/")
    page.fill("input[name=name]", "copy.img")
    page.click("#volume-submit")
    page.wait_for_url(re.compile(r".*/jobs/\d+/$"))
    expect(page.locator("#job")).to_have_attribute("data-state", "done")
    expect(page.locator("[data-job=result]")).to_have_text("Volume copy.img made, a copy of src.img.")
    page.click("[data-job=link] a")
    expect(page.locator('tr[data-volume="copy.img"]')).to_be_visible()


def test_job_page_follows_progress_and_cancels(live_server: Any, page: Any,
                                               steps_kind: threading.Event) -> None:  # noqa: F811
    admin = get_user_model().objects.create_superuser("admin", "", PASSWORD)
    host = Host.objects.create(name="testhost", transport="test", path=str(BASIC_WORLD))
    request = RequestFactory().post("/")
    request.user = admin
    job = runner.start(request, "test.steps", host, runner.Target("host", "testhost"), {}, summary="ten steps")
    log_in(page, live_server.url)
    page.goto(live_server.url + job.get_absolute_url())
    expect(page.locator("[data-job=phase]")).to_have_text("step 1")
    expect(page.locator("[data-job=amount]")).to_have_text("0 of 10")
    page.click("#job-cancel")
    expect(page.locator(".msg")).to_contain_text("Asked to stop")
    expect(page.locator("#job-cancel")).to_be_hidden()
    steps_kind.set()
    expect(page.locator("#job")).to_have_attribute("data-state", "cancelled")  # seen by polling, not a reload
    expect(page.locator("[data-job=result]")).to_have_text("Cancelled on request (0 of 10 done, step 1).")
    assert Job.objects.get(pk=job.pk).state == "cancelled"
