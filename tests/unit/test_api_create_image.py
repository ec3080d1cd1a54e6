"""Creating a VM from a cloud image through the API (api/vm_life.py): the page's own form, so the same bad input
gets the same field errors (400, nothing made); a good request is a job (202); a user within a quota makes their
own VM, and over the quota is told what is left."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from api.models import ApiToken
from hosts.models import Host
from instances.models import OwnedVM
from jobs.models import Job
from storage.models import CloudImage
from tests.unit.test_api_access import TokenClient
from tests.unit.test_create_image import BAD_INPUT, _quota_user, fake_upload, good, image, run_jobs, world  # noqa: F401

pytestmark = pytest.mark.django_db
URL = "/api/v1/vms/testhost/from-image/"
OWN_URL = "/api/v1/self-service/vms/"


def token(user: Any) -> TokenClient:
    return TokenClient(ApiToken.make(user, "t")[1])


@pytest.fixture
def admin_api(test_host: Host) -> TokenClient:
    return token(get_user_model().objects.create_superuser("api-admin", "", "x"))


@pytest.mark.parametrize(("case", "changes", "field"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_the_apis_bad_input_is_the_forms(admin_api: TokenClient, test_host: Host, image: CloudImage,  # noqa: F811
                                         case: str, changes: dict[str, str], field: str) -> None:
    before = world(test_host)
    response = admin_api.post(URL, good(image, **changes))
    assert response.status_code == 400, case
    assert field in response.json()["fields"], f"{case}: {response.json()}"
    assert not Job.objects.exists() and world(test_host) == before


def test_a_good_request_is_a_job_with_the_vms_uuid(admin_api: TokenClient, test_host: Host,
                                                   image: CloudImage, fake_upload: list[bytes]) -> None:  # noqa: F811
    # Only what matters: everything else takes what the page shows.
    response = admin_api.post(URL, {"name": "api-01", "image": str(image.pk), "ssh_keys": good(image)["ssh_keys"],
                                    "vcpus": 1, "memory": "256M", "virt_type": "test"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["vm_url"].endswith(f"/api/v1/vms/testhost/{body['uuid']}/")
    [job] = run_jobs()
    assert job.state == "done" and job.params["uuid"] == body["uuid"], job.result
    assert "api-01" in world(test_host)[0]


def test_a_user_within_a_quota_and_over_it(test_host: Host, image: CloudImage,  # noqa: F811
                                           fake_upload: list[bytes]) -> None:  # noqa: F811
    _quota_user(test_host, image)
    carol = token(get_user_model().objects.get(username="carol"))
    # The admins' endpoint names a host: to others it answers as a host that does not exist.
    assert carol.post(URL, good(image)).status_code == 404
    response = carol.post(OWN_URL, {**good(image), "host": "testhost"})
    assert response.status_code == 202, response.content
    run_jobs()
    assert OwnedVM.objects.get().vm_uuid is not None
    over = carol.post(OWN_URL, good(image, name="app-02"))
    assert over.status_code == 400 and "0 of 1 VMs left" in str(over.json())
    assert carol.post(OWN_URL, {**good(image), "host": "elsewhere"}).json()["fields"] == {
        "host": ["Not a host your quota allows."]}
    nobody = token(get_user_model().objects.create_user("dave"))
    assert nobody.post(OWN_URL, good(image)).status_code == 400
    assert Job.objects.count() == 1
