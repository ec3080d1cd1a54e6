"""Pools and volumes through the API with tokens, on libvirt's test driver (the witness): each operation runs the
page's own function (one audit record, "through the API, token NAME"), the pages' bad-input tables answer 400
with the same field errors and create nothing, users who are not admins reach no pool, and a volume's content
goes through the pages' streaming path, where a refused caller's body is never read. Bytes that really stream
(the test driver has no streams): tests/integration/test_storage_lab.py."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from hosts.models import Host
from jobs.models import Job
from tests.unit.test_api_access import TokenClient, callers  # noqa: F401  # callers: the personas' tokens
from tests.unit.test_body_limit import Counted
from tests.unit.test_storage_asgi import asgi, body_of, csrf_token, headers_for
from tests.unit.test_storage_views import (
    BAD_POOLS,
    BAD_VOLUMES,
    GIB,
    audited,
    fill,
    lv,
    make_volume,
    pool_names,
    volume_names,
)
from virt.xml import StorageVolume
from webkvm.models import AuditEvent, SharedKind, SharedResource

pytestmark = pytest.mark.django_db
POOLS = "/api/v1/pools/testhost/"
IMAGES = POOLS + "images/"
VOLUMES = IMAGES + "volumes/"
THROUGH = "through the API, token admin-token"


def pool_state(host: Host, name: str) -> tuple[int, int]:
    return lv(host, lambda c: (c.storagePoolLookupByName(name).isActive(), c.storagePoolLookupByName(name).autostart()))


def volume_xml(host: Host, name: str) -> StorageVolume:
    return StorageVolume.from_xml(lv(host, lambda c: c.storagePoolLookupByName("images").storageVolLookupByName(
        name).XMLDesc(0)))


def followed(caller: TokenClient, url: str) -> dict[str, Any]:
    """A job's API URL, asked until it has ended and written its audit record."""
    for _ in range(200):
        state: dict[str, Any] = caller.get(url.removeprefix("http://testserver")).json()
        if not state["active"] and Job.objects.filter(pk=state["id"], audit__isnull=False).exists():
            return state
        time.sleep(0.05)
    raise AssertionError("the job did not end")


# --- pools --------------------------------------------------------------------------------------

def test_pools_through_the_api(callers: dict[str, TokenClient], test_host: Host) -> None:  # noqa: F811
    admin = callers["admin"]
    listed = admin.get(POOLS).json()
    assert listed["count"] == 1 and listed["results"][0]["name"] == "images"
    assert listed["results"][0]["state"] == "active" and listed["results"][0]["capacity"] > 0
    made = admin.post(POOLS, {"kind": "dir", "name": "t-api", "target_path": "/var/lib/libvirt/images/t-api"})
    assert made.status_code == 201, made.content
    assert made.json()["url"] == "http://testserver/api/v1/pools/testhost/t-api/"
    assert pool_state(test_host, "t-api") == (1, 1), "start and autostart: preselected on the page"
    record = AuditEvent.objects.get(action="pool.create", result="ok")
    assert record.object_name == "t-api" and "type dir" in record.detail and THROUGH in record.detail
    for action, witness in [("stop", (0, 1)), ("build", (0, 1)), ("start", (1, 1)), ("no-autostart", (1, 0)),
                            ("autostart", (1, 1)), ("refresh", (1, 1))]:
        done = admin.post(f"{POOLS}t-api/actions/{action}/")
        assert done.status_code == 200 and done.json()["message"], (action, done.content)
        assert pool_state(test_host, "t-api") == witness, action
    again = admin.post(f"{POOLS}t-api/actions/start/")
    assert again.status_code == 409 and again.json()["code"] in ("invalid_state", "not_done"), again.content
    assert admin.post(f"{POOLS}t-api/actions/explode/").status_code == 404
    assert admin.post(f"{POOLS}nope/actions/stop/").json()["code"] == "not_found"
    detail = admin.get(f"{POOLS}t-api/").json()
    assert detail["pool"]["name"] == "t-api" and detail["count"] == 0 and detail["users"] == []
    assert admin.get(f"{POOLS}nope/").status_code == 404
    gone = admin.call("DELETE", f"{POOLS}t-api/?delete_storage=true")
    assert gone.status_code == 200, gone.content
    assert pool_names(test_host) == {"images"}
    assert [e.action for e in AuditEvent.objects.filter(result="ok").order_by("id")] == [
        "pool.create", "pool.stop", "pool.build", "pool.start", "pool.no-autostart", "pool.autostart",
        "pool.refresh", "pool.delete"]
    assert all(THROUGH in e.detail for e in AuditEvent.objects.filter(result="ok"))


def test_deleting_a_pool_in_use_needs_the_confirmation(callers: dict[str, TokenClient],  # noqa: F811
                                                       test_host: Host) -> None:
    path = make_volume(test_host, "disk.img")
    xml = (f"<domain type='test'><name>vm-on-pool</name><memory>65536</memory><os><type>hvm</type></os><devices>"
           f"<disk type='file' device='disk'><source file='{path}'/><target dev='vda'/></disk></devices></domain>")
    lv(test_host, lambda c: c.defineXML(xml))
    refused = callers["admin"].call("DELETE", IMAGES, {})
    assert refused.status_code == 400 and "vm-on-pool" in refused.json()["fields"]["confirm_in_use"][0]
    assert pool_names(test_host) == {"images"}
    assert callers["admin"].call("DELETE", IMAGES, {"confirm_in_use": True}).status_code == 200
    assert pool_names(test_host) == set()
    assert "vm-on-pool (confirmed)" in AuditEvent.objects.get(action="pool.delete", result="ok").detail


@pytest.mark.parametrize(("kind", "data", "field"), BAD_POOLS,
                         ids=[f"{k}-{f}-{i}" for i, (k, _, f) in enumerate(BAD_POOLS)])
def test_bad_pool_input_is_a_field_error_and_creates_nothing(callers: dict[str, TokenClient],  # noqa: F811
                                                             test_host: Host, kind: str, data: dict[str, str],
                                                             field: str) -> None:
    response = callers["admin"].post(POOLS, {"kind": kind, **data})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid" and body["fields"].get(field), body
    assert pool_names(test_host) == {"images"}
    assert len(audited("pool.create", "failed")) == 1 and not audited("pool.create")


def test_an_unknown_pool_type_is_a_field_error(callers: dict[str, TokenClient], test_host: Host) -> None:  # noqa: F811
    response = callers["admin"].post(POOLS, {"kind": "zfs", "name": "t-z"})
    assert response.status_code == 400 and "kind" in response.json()["fields"]
    assert pool_names(test_host) == {"images"}


# --- volumes ------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)  # the clone and wipe jobs run (and audit) in their own threads
def test_volumes_through_the_api(callers: dict[str, TokenClient], test_host: Host) -> None:  # noqa: F811
    admin = callers["admin"]
    made = admin.post(VOLUMES, {"name": "api.qcow2", "size": "2G"})
    assert made.status_code == 201, made.content
    assert (volume_xml(test_host, "api.qcow2").capacity, volume_xml(test_host, "api.qcow2").format) == (
        2 * GIB, "qcow2"), "the format the page preselects"
    one = admin.get(made.json()["url"].removeprefix("http://testserver")).json()
    assert one["name"] == "api.qcow2" and one["capacity"] == 2 * GIB and one["content"].endswith("/content")
    make_volume(test_host, "other.img")
    page = admin.get(IMAGES + "?limit=1&offset=1").json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["previous"] and page["pool"]["name"] == "images"
    shrink = admin.call("PATCH", VOLUMES + "api.qcow2/", {"size": "1G"})
    assert shrink.status_code == 400 and "only grow" in shrink.json()["fields"]["size"][0]
    grow = admin.call("PATCH", VOLUMES + "api.qcow2/", {"size": "3G"})  # the test driver cannot resize
    assert grow.status_code == 409 and grow.json()["code"] == "not_done" and "not supported" in grow.json()["message"]
    assert volume_xml(test_host, "api.qcow2").capacity == 2 * GIB
    clone = admin.post(VOLUMES + "api.qcow2/clone/", {})
    assert clone.status_code == 202 and clone["Location"] == clone.json()["url"], clone.content
    assert followed(admin, clone.json()["url"])["state"] == "done"
    assert volume_names(test_host) == {"api.qcow2", "api-copy.qcow2", "other.img"}, "the name the page preselects"
    wipe = admin.post(VOLUMES + "other.img/wipe/")
    assert wipe.status_code == 202 and followed(admin, wipe.json()["url"])["state"] == "failed"  # no wipe here
    assert admin.post(VOLUMES + "nope.img/wipe/").status_code == 404
    assert admin.call("DELETE", VOLUMES + "api-copy.qcow2/").status_code == 200
    assert admin.call("DELETE", VOLUMES + "api-copy.qcow2/").json()["code"] == "not_found"
    assert volume_names(test_host) == {"api.qcow2", "other.img"}
    for action in ("volume.create", "volume.clone", "volume.delete"):
        record = AuditEvent.objects.get(action=action, result="ok")
        assert THROUGH in record.detail, (action, record.detail)
    assert AuditEvent.objects.filter(action="volume.resize", result="failed", detail__contains=THROUGH).exists()


@pytest.mark.parametrize(("data", "field"), BAD_VOLUMES, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_VOLUMES)])
def test_bad_volume_input_is_a_field_error_and_creates_nothing(callers: dict[str, TokenClient],  # noqa: F811
                                                               test_host: Host, data: dict[str, str],
                                                               field: str) -> None:
    fill(test_host)
    make_volume(test_host, "base.img")
    response = callers["admin"].post(VOLUMES, data)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid" and response.json()["fields"].get(field), response.json()
    assert volume_names(test_host) == {"base.img", "filler.img"}
    assert len(audited("volume.create", "failed")) == 1


def test_users_who_are_not_admins_reach_no_pool_not_even_an_opened_one(callers: dict[str, TokenClient],  # noqa: F811
                                                                       test_host: Host) -> None:
    """Pools are the admins' matter, as on the pages: what an admin opened (webkvm/sharing.py) a user chooses
    from where a VM offers it, never here."""
    SharedResource.objects.create(host=test_host, kind=SharedKind.POOL, name="images")
    SharedResource.objects.create(host=test_host, kind=SharedKind.ISO_LIBRARY, name="images")
    make_volume(test_host, "open.iso")
    asks = [("GET", POOLS), ("GET", IMAGES), ("GET", VOLUMES + "open.iso/"), ("GET", VOLUMES + "open.iso/content"),
            ("POST", VOLUMES), ("POST", POOLS), ("POST", IMAGES + "actions/stop/"), ("DELETE", IMAGES)]
    for persona in ("user-view", "user-power", "outsider"):
        for method, url in asks:
            response = callers[persona].call(method, url, {"name": "mine.img", "size": "1G"})
            # A pool on a host they may not see answers as one that does not exist.
            assert response.status_code == 404, (persona, method, url, response.status_code)
            assert "open.iso" not in response.content.decode()
    assert volume_names(test_host) == {"open.iso"} and pool_state(test_host, "images")[0] == 1


# --- a volume's content, through the streaming path ------------------------------------------------

CONTENT = VOLUMES + "up.iso/content"


def token_of(username: str, name: str, **made: Any) -> str:
    user = get_user_model().objects.get(username=username)
    return ApiToken.make(user, name, **made)[1]


def bearer(text: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"testserver"), (b"authorization", f"Bearer {text}".encode())]


def answer_of(content: bytes) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(content)
    return found


@pytest.mark.django_db(transaction=True)  # the ASGI path uses the database from its own threads
@pytest.mark.parametrize(("who", "status", "code"), [
    ("anonymous", 401, "not_authenticated"),
    ("a wrong token", 401, "bad_token"),
    ("a revoked token", 401, "token_revoked"),
    ("an expired token", 401, "token_expired"),
    ("a read-only token", 403, "read_only_token"),
    ("a user's token", 404, "not_found"),  # a pool it may not see: as one that does not exist
    ("a session without CSRF", 403, "csrf_failed"),
])
def test_a_refused_api_upload_reads_no_byte(callers: dict[str, TokenClient], admin_client: Client,  # noqa: F811
                                            test_host: Host, who: str, status: int, code: str) -> None:
    headers = [(b"host", b"testserver")]
    if who == "a wrong token":
        headers = bearer("wkvm_00000000_nothing")
    elif who == "a revoked token":
        headers = bearer(token_of("api-admin", "gone", expires=None))
        ApiToken.objects.filter(name="gone").update(revoked=timezone.now())
    elif who == "an expired token":
        headers = bearer(token_of("api-admin", "old", expires=timezone.now() - timedelta(seconds=1)))
    elif who == "a read-only token":
        headers = bearer(token_of("api-admin", "reader", read_only=True))
    elif who == "a user's token":
        headers = bearer(token_of("api-power", "power"))
    elif who == "a session without CSRF":
        token = csrf_token(admin_client, test_host, "images")
        headers = [h for h in headers_for(admin_client, token) if h[0] != b"x-csrftoken"]
    body = Counted(b"x" * (8 << 20))
    got, answered, content = asgi("PUT", CONTENT, [*headers, (b"content-length", b"%d" % (8 << 20))], body.messages())
    assert (got, answer_of(content)["code"]) == (status, code), content
    assert body.read == 0, f"read {body.read} bytes"
    assert answered[b"content-type"] == b"application/json"
    if status == 401:
        assert answered[b"www-authenticate"] == b"Bearer"
    assert volume_names(test_host) == set()
    assert not AuditEvent.objects.filter(action__startswith="volume.").exists()
    if who == "a user's token":
        assert AuditEvent.objects.filter(action="denied:admin", username="api-power").exists()


@pytest.mark.django_db(transaction=True)
def test_api_transfers_go_through_the_streaming_path(callers: dict[str, TokenClient],  # noqa: F811
                                                     admin_client: Client, test_host: Host) -> None:
    """The test driver cannot stream: the upload and the download reach libvirt, which says so, in the API's
    JSON; what the panel checks first answers as the API does; every record says which token."""
    admin = bearer(token_of("api-admin", "streamer"))
    length = [(b"content-length", b"3")]
    got, _h, content = asgi("PUT", CONTENT, admin, body_of(b"abc"))
    assert got == 411 and answer_of(content)["code"] == "invalid" and "file" in answer_of(content)["fields"]
    got, _h, content = asgi("PUT", VOLUMES + "a..b/content", [*admin, *length], body_of(b"abc"))
    assert got == 400 and "name" in answer_of(content)["fields"]
    got, _h, content = asgi("PUT", CONTENT, [*admin, *length], body_of(b"abc"))
    assert got == 409 and answer_of(content)["code"] == "not_done" and "not supported" in answer_of(content)["message"]
    got, _h, content = asgi("PUT", CONTENT.replace("testhost", "nohost"), [*admin, *length], body_of(b"abc"))
    assert got == 404 and answer_of(content)["code"] == "not_found"
    assert volume_names(test_host) == set(), "the volume made for the upload is gone again"
    make_volume(test_host, "v.img")
    got, _h, content = asgi("GET", VOLUMES + "v.img/content", bearer(token_of("api-admin", "reader", read_only=True)))
    assert got == 409 and "did not start the download" in answer_of(content)["message"], "a read-only token reads"
    got, _h, content = asgi("GET", VOLUMES + "nope.img/content", admin)
    assert got == 404 and answer_of(content)["code"] == "not_found"
    records = AuditEvent.objects.filter(action__in=["volume.upload", "volume.download"]).order_by("id")
    assert [(e.action, e.result) for e in records] == [("volume.upload", "failed")] * 3 + [("volume.download",
                                                                                            "failed")]
    assert [e.detail.rsplit("token ", 1)[1].rstrip(")") for e in records] == ["streamer"] * 3 + ["reader"]
    # The panel's own JavaScript: the session with its CSRF token.
    session = headers_for(admin_client, csrf_token(admin_client, test_host, "images"))
    got, _h, content = asgi("PUT", CONTENT, [*session, *length], body_of(b"abc"))
    assert got == 409 and answer_of(content)["code"] == "not_done", content
    assert AuditEvent.objects.filter(action="volume.upload", username="root-admin").get().detail.endswith(
        "(through the API, session)")


@pytest.mark.django_db(transaction=True)
def test_the_streaming_path_hides_a_volume_from_who_may_not_see_it(callers: dict[str, TokenClient],  # noqa: F811
                                                                   test_host: Host) -> None:
    """The streamed transfers answer a user who is not an admin as every API route naming a host does: 404, word
    for word what a host that does not exist answers, and nothing is read or made."""
    make_volume(test_host, "v.img")
    user = bearer(token_of("api-change", "mine"))
    length = [(b"content-length", b"3")]
    answers = [asgi("GET", VOLUMES + "v.img/content", user), asgi("GET", VOLUMES.replace("testhost", "nohost") +
                                                                  "v.img/content", user),
               asgi("PUT", CONTENT, [*user, *length], body_of(b"abc"))]
    for got, headers, content in answers:
        assert got == 404 and headers[b"content-type"] == b"application/json", content
        assert content == answers[0][2] and answer_of(content)["code"] == "not_found"
    assert volume_names(test_host) == {"v.img"}
    assert AuditEvent.objects.filter(result="denied", username="api-change").count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_api_s_rate_limits_hold_on_the_streaming_path(callers: dict[str, TokenClient],  # noqa: F811
                                                          test_host: Host) -> None:
    from django.core.cache import caches
    from rest_framework.throttling import UserRateThrottle

    caches["api"].clear()
    old = UserRateThrottle.THROTTLE_RATES
    UserRateThrottle.THROTTLE_RATES = {**old, "user": "1/min"}
    try:
        admin = bearer(token_of("api-admin", "busy"))
        first = asgi("GET", VOLUMES + "nope.img/content", admin)
        second = asgi("GET", VOLUMES + "nope.img/content", admin)
    finally:
        UserRateThrottle.THROTTLE_RATES = old
        caches["api"].clear()
    assert first[0] == 404 and second[0] == 429 and answer_of(second[2])["code"] == "throttled"
    assert int(second[1][b"retry-after"]) > 0


def test_the_content_url_under_wsgi_answers_the_same(callers: dict[str, TokenClient],  # noqa: F811
                                                     test_host: Host) -> None:
    """The API's view serves the URL where there is no ASGI (tests, the development server)."""
    admin = callers["admin"]
    response = admin.client.put(CONTENT, b"abc", content_type="application/octet-stream",
                                HTTP_ACCEPT="application/octet-stream", **admin.headers)
    assert response.status_code == 409 and response.json()["code"] == "not_done", response.content
    make_volume(test_host, "v.img")
    download = admin.client.get(VOLUMES + "v.img/content", HTTP_ACCEPT="application/octet-stream", **admin.headers)
    assert download.status_code == 409 and "not supported" in download.json()["message"]
    assert volume_names(test_host) == {"v.img"}
    assert {e.action for e in AuditEvent.objects.filter(result="failed", detail__contains=THROUGH)} == {
        "volume.upload", "volume.download"}
