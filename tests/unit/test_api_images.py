"""The image library through the API with tokens, on libvirt's test driver: each operation runs the page's own
function (one audit record, through the API), the import table's bad input answers 400 with the very field
errors the page's form shows and stores nothing, and users who are not admins reach nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from hosts.models import Host
from storage.models import CloudImage, ImageLibrary
from tests.unit.test_api_access import TokenClient, callers  # noqa: F401  # callers: the personas' tokens
from tests.unit.test_images import BAD, GIB, form, lib, make_volume, url, volume_names  # noqa: F401  # lib: fixture
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db
LIBRARY = "/api/v1/image-libraries/testhost/images/"
IMPORT = LIBRARY + "images/"
THROUGH = "through the API, token admin-token"


def _json(data: dict[str, str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v != ""}  # API callers leave out what they do not set


def test_mark_import_edit_delete(callers: dict[str, TokenClient], test_host: Host) -> None:  # noqa: F811
    admin = callers["admin"]
    make_volume(test_host, "good.qcow2", "qcow2", 2 * GIB)
    marked = admin.call("PUT", LIBRARY, {"library": True, "linked_clones": True})
    assert marked.status_code == 200, marked.json()
    assert marked.json()["library"] and marked.json()["linked_clones"]
    assert ImageLibrary.objects.get().linked_clones
    made = admin.post(IMPORT, {"volume": "good.qcow2", "name": "deb", "default_user": "debian"})
    assert made.status_code == 201, made.json()
    body = made.json()
    assert (body["format"], body["virtual_bytes"], body["min_disk_bytes"], body["firmware"]) == (
        "qcow2", 2 * GIB, 2 * GIB, "bios")
    assert body["linked_clones"] is True and body["url"].endswith(f"/api/v1/images/{body['id']}/")
    listed = admin.get("/api/v1/images/?host=testhost").json()
    assert [i["name"] for i in listed["results"]] == ["deb"]
    patched = admin.call("PATCH", f"/api/v1/images/{body['id']}/", {"min_disk": "10G"})
    assert patched.status_code == 200 and patched.json()["min_disk_bytes"] == 10 * GIB
    assert CloudImage.objects.get().default_user == "debian"  # fields left out keep their values
    small = admin.call("PATCH", f"/api/v1/images/{body['id']}/", {"min_disk": "1G"})
    assert small.status_code == 400 and "cannot be smaller" in small.json()["fields"]["min_disk"][0]
    assert admin.call("PUT", LIBRARY, {}).status_code == 400  # unmark: refused while it holds an image
    deleted = admin.call("DELETE", f"/api/v1/images/{body['id']}/?delete_volume=true")
    assert deleted.status_code == 200, deleted.json()
    assert not CloudImage.objects.exists() and "good.qcow2" not in volume_names(test_host)
    for action in ("library.set", "image.import", "image.update", "image.delete"):
        event = AuditEvent.objects.filter(action=action, result="ok").first()
        assert event is not None and THROUGH in event.detail, action


@pytest.mark.parametrize(("volume", "changed", "field", "words"), BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD])
def test_bad_input_answers_as_the_form_does(callers: dict[str, TokenClient], admin_client: Client,  # noqa: F811
                                           lib: Host, volume: str, changed: dict[str, str], field: str,  # noqa: F811
                                           words: str) -> None:
    data = form(volume, **changed)
    page = admin_client.post(url("image_import", "testhost", "images"), data).context["form"].errors
    response = callers["admin"].post(IMPORT, _json(data))
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert response.json()["fields"] == {name: list(messages) for name, messages in page.items()}
    assert words in response.json()["fields"][field][0]
    assert not CloudImage.objects.exists()


def test_users_who_are_not_admins_reach_nothing(callers: dict[str, TokenClient], lib: Host) -> None:  # noqa: F811
    CloudImage.objects.create(host=lib, pool="images", volume="good.qcow2", name="deb", min_disk_bytes=GIB,
                              format="qcow2", virtual_bytes=GIB)
    for persona in ("outsider", "user-view", "user-power"):
        caller = callers[persona]
        assert caller.get("/api/v1/images/").status_code == 403
        assert caller.post(IMPORT, {"volume": "plain.img", "name": "x"}).status_code == 404  # a pool they may not see
        assert caller.call("DELETE", f"/api/v1/images/{CloudImage.objects.get().pk}/").status_code == 403
    assert CloudImage.objects.count() == 1
