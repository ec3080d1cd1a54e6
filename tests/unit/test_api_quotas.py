"""Quotas through the API (api/quotas.py): admins create, change and delete them with a token (the database
and the audit record as witnesses), bad input is refused with the page form's own field errors and nothing
made; a user reads only their own usage and choices."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from hosts.models import Host
from instances import quotas
from instances.forms_quota import QuotaForm
from instances.models import Quota
from instances.quotas import GIB
from tests.unit import test_api_access
from tests.unit.test_api_access import TokenClient
from tests.unit.test_quotas import BAD, _image
from webkvm.models import AuditEvent, SharedKind, SharedResource

pytestmark = pytest.mark.django_db
callers = test_api_access.callers  # the fixture: a token per persona

LIMITS = {"max_vms": 2, "max_vcpus": 4, "max_memory_mib": 4096, "max_disk_gib": 20}


def _setup(test_host: Host) -> Any:
    Group.objects.create(name="devs")
    _image(test_host, "debian-12")
    return get_user_model().objects.create_user("carol")


@pytest.mark.parametrize(("case", "data", "field", "words"), BAD, ids=[row[0] for row in BAD])
def test_the_api_refuses_what_the_form_refuses(callers: dict[str, TokenClient], test_host: Host, case: str,
                                               data: dict[str, str], field: str, words: str) -> None:
    _setup(test_host)
    image_pk = str(test_host.cloud_images.get().pk)
    body: dict[str, Any] = {**{k: str(v) for k, v in LIMITS.items()},
                            **{k: ([image_pk] if v == "IMAGE" else v) for k, v in data.items()}}
    response = callers["admin"].post("/api/v1/quotas/", body)
    assert response.status_code == 400, response.content
    form = QuotaForm({**body, "images": body.get("images", [])})
    assert not form.is_valid()
    assert response.json()["fields"][field] == form.errors[field], "the page's own words"
    assert words in " ".join(response.json()["fields"][field])
    assert not Quota.objects.exists() and not AuditEvent.objects.filter(action="quota.set").exists()


def test_admin_crud_and_usage_through_the_api(callers: dict[str, TokenClient], test_host: Host) -> None:
    carol = _setup(test_host)
    admin = callers["admin"]
    image = test_host.cloud_images.get()
    made = admin.post("/api/v1/quotas/", {**LIMITS, "user": "carol", "hosts": ["testhost"], "images": [image.pk]})
    assert made.status_code == 201, made.content
    body = made.json()
    assert (body["user"], body["hosts"], body["images"]) == ("carol", ["testhost"], [image.pk])
    quota = Quota.objects.get(user=carol)
    assert AuditEvent.objects.get(action="quota.set").object_name == "user carol"
    quotas.reserve(carol, test_host, "x", vcpus=3, memory_mib=1024, disk_bytes=GIB)
    got = admin.get(f"/api/v1/quotas/{quota.pk}/").json()
    assert got["usage"][0]["words"] == "1 of 2 VMs, 3 of 4 vCPUs, 1024 of 4096 MiB memory, 1 of 20 GiB disk"
    patched = admin.call("PATCH", f"/api/v1/quotas/{quota.pk}/", {"max_vcpus": 8})
    assert patched.status_code == 200, patched.content
    quota.refresh_from_db()
    assert quota.max_vcpus == 8 and quota.max_vms == 2 and list(quota.images.all()) == [image], "the rest kept"
    bad = admin.call("PATCH", f"/api/v1/quotas/{quota.pk}/", {"max_vcpus": -1})
    assert bad.status_code == 400 and "max_vcpus" in bad.json()["fields"]
    quota.refresh_from_db()
    assert quota.max_vcpus == 8
    usage = admin.get("/api/v1/usage/?user=carol").json()["results"]
    assert [u["user"] for u in usage] == ["carol"] and usage[0]["usage"]["vcpus"] == 3
    assert admin.call("DELETE", f"/api/v1/quotas/{quota.pk}/").status_code == 200
    assert not Quota.objects.exists()
    assert AuditEvent.objects.filter(action="quota.delete", result="ok").exists()


def test_a_user_reads_only_their_own_usage_and_choices(callers: dict[str, TokenClient], test_host: Host) -> None:
    users = get_user_model().objects
    viewer, outsider = users.get(username="api-view"), users.get(username="api-outsider")
    mine = _image(test_host, "debian-12")
    _image(test_host, "not-for-you")
    pool = SharedResource.objects.create(host=test_host, kind=SharedKind.POOL, name="images")
    SharedResource.objects.create(host=test_host, kind=SharedKind.NETWORK, name="secret-net")
    quota = Quota.objects.create(user=viewer, **LIMITS)
    quota.hosts.add(test_host)
    quota.images.add(mine)
    quota.shared.add(pool)
    other = Quota.objects.create(user=outsider, max_vms=7)
    other.hosts.add(test_host)
    quotas.reserve(outsider, test_host, "outsiders-vm", vcpus=0, memory_mib=0, disk_bytes=0)
    body = callers["user-view"].get("/api/v1/usage/").json()
    assert [r["user"] for r in body["results"]] == ["api-view"]
    allowed = body["results"][0]["allowed"]
    assert [i["name"] for i in allowed["images"]] == ["debian-12"]
    assert allowed["pools"] == [{"name": "images", "host": "testhost"}] and allowed["networks"] == []
    text = str(body)
    assert "outsiders-vm" not in text and "api-outsider" not in text and "not-for-you" not in text
    assert callers["user-view"].get(f"/api/v1/quotas/{quota.pk}/").status_code == 403
    nobody = callers["user-power"].get("/api/v1/usage/").json()["results"]
    assert nobody[0]["limits"] is None and nobody[0]["left"].startswith("You have no quota")
