"""The API's permission table, generated from the same declarations and personas as the pages'
(tests/unit/test_routes.py), run again with personal API tokens instead of sessions; libvirt is the witness
of whether a power action happened."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from api.models import ApiToken
from hosts import services
from hosts.models import Host
from jobs.models import Job
from tests.conftest import DB_01_UUID, WEB_01_UUID
from tests.unit.test_routes import CASE_IDS, CASES, GRANTS, JOB_ID, JOB_OWNER, Route, _allowed, _url, _world
from webkvm.models import AuditEvent, VMGrant, VMPermission
from webkvm.operations import ADMIN

pytestmark = pytest.mark.django_db

API_CASES = [(case, name) for case, name in zip(CASES, CASE_IDS, strict=True) if case[0].name.startswith("api:")]


class TokenClient:
    """A client that authenticates with a token only (no session, no CSRF exemption needed)."""

    def __init__(self, text: str = "") -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {text}"} if text else {}

    def get(self, url: str) -> Any:
        return self.client.get(url, **self.headers)

    def post(self, url: str, data: Any = None) -> Any:
        return self.client.post(url, data or {}, content_type="application/json", **self.headers)

    def call(self, method: str, url: str, data: Any = None) -> Any:
        body = json.dumps(data if data is not None else {}) if method != "GET" else ""
        return self.client.generic(method, url, body, content_type="application/json", **self.headers)


@pytest.fixture
def callers(test_host: Host) -> dict[str, TokenClient]:
    users = get_user_model().objects
    people = {"admin": users.create_superuser("api-admin", "", "x"), "outsider": users.create_user("api-outsider")}
    for grant in GRANTS:
        user = users.create_user(f"api-{grant}")
        VMGrant.objects.create(user=user, host=test_host, vm_uuid=WEB_01_UUID, vm_name="web-01",
                               **({f"can_{grant}": True} if grant != VMPermission.VIEW else {}))
        people[f"user-{grant}"] = user
    Job.objects.create(pk=JOB_ID, kind="volume.wipe", host=test_host, owner=people[JOB_OWNER], state="done",
                       target_type="volume", target_name="images/w.img", summary="a job of the view persona",
                       params={"pool": "images", "name": "w.img"})
    out = {"anonymous": TokenClient()}
    for persona, user in people.items():
        out[persona] = TokenClient(ApiToken.make(user, f"{persona}-token")[1])
    return out


def _ask(caller: TokenClient, url: str, method: str | None = None) -> Any:
    if method:
        return caller.call(method, url)
    response = caller.get(url)
    if response.status_code == 405:
        response = caller.post(url)
    return response


def _active(host: Host, vm: str = WEB_01_UUID) -> bool:
    return bool(services.call(host, lambda conn: conn.lookupByUUIDString(vm).isActive()))


@pytest.mark.parametrize(("route", "chosen", "access", "method"), [c for c, _ in API_CASES],
                         ids=[name for _, name in API_CASES])
def test_api_permission_table(callers: dict[str, TokenClient], test_host: Host, route: Route, chosen: str | None,
                              access: Any, method: str | None) -> None:
    url = _url(route, chosen, method=method)
    before = _world(test_host)
    for persona, caller in callers.items():
        if _allowed(access, persona):
            continue
        response = _ask(caller, url, method)
        expected = 401 if persona == "anonymous" else 403
        assert response.status_code == expected, f"{persona} got {response.status_code} at {url}"
        body = response.json()
        assert set(body) == {"code", "message"} and body["message"], body
    assert _world(test_host) == before, "a refused request changed something"
    if access.target == "vm" and access.permission != ADMIN:
        other = _url(route, chosen, vm=DB_01_UUID, method=method)
        for persona, caller in callers.items():
            if persona.startswith("user-"):
                assert _ask(caller, other, method).status_code == 403, f"{persona} reached db-01 at {other}"
    for persona, caller in callers.items():
        if not _allowed(access, persona):
            continue
        response = _ask(caller, url, method)
        assert response.status_code not in (401, 403), f"{persona} was refused {url}: {response.status_code}"
        assert response.status_code < 500, f"{persona} got {response.status_code} at {url}"
        if route.name != "api:docs":  # the reference page is HTML; everything else answers JSON
            assert response["Content-Type"].startswith(("application/json", "application/vnd.oai.openapi"))


def test_a_power_action_through_the_api_runs_the_declared_operation(callers: dict[str, TokenClient],
                                                                     test_host: Host) -> None:
    url = f"/api/v1/vms/testhost/{WEB_01_UUID}/actions/"
    assert _active(test_host)
    refused = callers["user-view"].post(url + "destroy/")
    assert refused.status_code == 403 and _active(test_host), "a view grant powers nothing off"
    done = callers["user-power"].post(url + "destroy/")
    assert done.status_code == 200, done.content
    assert done.json()["state"] == "shut off" and not _active(test_host)
    record = AuditEvent.objects.filter(action="vm.destroy", result="ok").get()
    assert record.username == "api-power" and record.object_name == "web-01"
    assert "through the API, token user-power-token" in record.detail
    again = callers["user-power"].post(url + "destroy/")
    assert again.status_code == 409 and again.json()["code"] == "invalid_state"
    started = callers["user-power"].post(url + "start/")
    assert started.status_code == 200 and _active(test_host)
    assert callers["user-power"].post(url + "no-such-action/").status_code == 404
    assert callers["user-power"].get(url + "start/").json()["code"] == "method_not_allowed"


def test_a_busy_vm_answers_409(callers: dict[str, TokenClient], test_host: Host,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from virt.errors import Busy

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise Busy("web-01 is busy with another action.")

    monkeypatch.setattr(services, "call_locked", busy)
    response = callers["user-power"].post(f"/api/v1/vms/testhost/{WEB_01_UUID}/actions/destroy/")
    assert response.status_code == 409 and response.json()["code"] == "vm_busy", response.content
    assert _active(test_host)


def test_the_vm_list_holds_only_granted_vms(callers: dict[str, TokenClient], test_host: Host) -> None:
    seen = callers["user-view"].get("/api/v1/vms/").json()
    assert [vm["uuid"] for vm in seen["results"]] == [WEB_01_UUID] and seen["count"] == 1
    assert seen["results"][0]["permissions"] == ["view"]
    assert callers["outsider"].get("/api/v1/vms/").json()["count"] == 0
    everything = callers["admin"].get("/api/v1/vms/?sort=name").json()
    assert everything["count"] == 3
    page = callers["admin"].get("/api/v1/vms/?limit=1&offset=1").json()
    assert page["count"] == 3 and len(page["results"]) == 1 and page["next"] and page["previous"]
    running = callers["admin"].get("/api/v1/vms/?state=running&q=web").json()
    assert [vm["name"] for vm in running["results"]] == ["web-01"]
    detail = callers["user-view"].get(f"/api/v1/vms/testhost/{WEB_01_UUID}/").json()
    assert detail["name"] == "web-01" and detail["host"] == "testhost"


def test_unknown_hosts_and_vms(callers: dict[str, TokenClient], test_host: Host) -> None:
    """Users cannot tell host names apart (403 for both); admins hear 404."""
    missing = f"/api/v1/vms/no-such-host/{WEB_01_UUID}/"
    assert callers["user-view"].get(missing).status_code == 403
    assert callers["admin"].get(missing).json()["code"] == "not_found"
    gone = callers["admin"].get("/api/v1/vms/testhost/99999999-9999-4999-8999-999999999999/")
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"


def test_a_session_needs_csrf_for_unsafe_methods(granted_user, test_host: Host) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(granted_user)
    assert client.get("/api/v1/vms/").status_code == 200
    refused = client.post(f"/api/v1/vms/testhost/{WEB_01_UUID}/actions/destroy/")
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    assert _active(test_host)


@pytest.fixture(params=["memory", "redis"])
def api_counts(request: pytest.FixtureRequest, settings: Any) -> str:
    """Where the API's request counts live: this process's memory, or Redis (every panel process)."""
    from django.core.cache import caches

    if request.param == "redis":
        settings.CACHES = {**settings.CACHES, "api": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": request.getfixturevalue("redis_url"), "KEY_PREFIX": "webkvm:api-test"}}
    caches["api"].clear()
    return str(request.param)


def test_throttled_callers_get_429(callers: dict[str, TokenClient], api_counts: str) -> None:
    from rest_framework.throttling import UserRateThrottle

    old = UserRateThrottle.THROTTLE_RATES
    UserRateThrottle.THROTTLE_RATES = {**old, "user": "2/min"}
    try:
        codes = [callers["user-view"].get("/api/v1/jobs/").status_code for _ in range(3)]
        refused = callers["user-view"].get("/api/v1/jobs/")
    finally:
        UserRateThrottle.THROTTLE_RATES = old
    assert codes == [200, 200, 429]
    assert refused.json()["code"] == "throttled" and int(refused["Retry-After"]) > 0


def test_a_long_operation_answers_202_with_its_jobs_url(callers: dict[str, TokenClient], test_host: Host) -> None:
    """The helper later endpoints use for operations that run as jobs (none of the first ones does)."""
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from api.base import accepted

    job = Job.objects.get(pk=JOB_ID)
    response = accepted(job, Request(APIRequestFactory().post("/api/v1/anything/")))
    assert response.status_code == 202 and response.data["job"] == JOB_ID
    assert response["Location"] == response.data["url"] == f"http://testserver/api/v1/jobs/{JOB_ID}/"
    followed = callers[JOB_OWNER].get(response.data["url"].removeprefix("http://testserver"))
    assert followed.status_code == 200 and followed.json()["state"] == "done"
    assert callers["user-power"].get(f"/api/v1/jobs/{JOB_ID}/").status_code == 403, "another user's job"
