"""The API's permission table, generated from the same declarations and personas as the pages'
(tests/unit/test_routes.py), run again with personal API tokens instead of sessions; libvirt is the witness
of whether a power action happened."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from hosts import services
from hosts.models import Host
from jobs.models import Job
from tests.conftest import DB_01_UUID, WEB_01_UUID
from tests.unit.test_routes import CASE_IDS, CASES, GRANTS, JOB_ID, JOB_OWNER, Route, _allowed, _url, _world
from webkvm.models import AuditEvent, VMGrant, VMPermission
from webkvm.operations import ADMIN, OWNER, PUBLIC

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


# Tokens that carry an admin's user but do less: read-only (GET as the admin, anything else refused), expired
# and revoked (refused on every route that reads a token).
TOKEN_PERSONAS = ("admin-read-only", "admin-expired", "admin-revoked")


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
    reader = users.create_superuser("api-admin-ro", "", "x")  # its own user: its own request counts
    out["admin-read-only"] = TokenClient(ApiToken.make(reader, "read-only-token", read_only=True)[1])
    past = timezone.now() - timedelta(minutes=1)
    out["admin-expired"] = TokenClient(ApiToken.make(people["admin"], "expired-token", expires=past)[1])
    revoked, text = ApiToken.make(people["admin"], "revoked-token")
    ApiToken.objects.filter(pk=revoked.pk).update(revoked=past)
    out["admin-revoked"] = TokenClient(text)
    return out


def _ask(caller: TokenClient, url: str, method: str | None = None) -> Any:
    if method:
        return caller.call(method, url)
    response = caller.get(url)
    if response.status_code == 405:
        response = caller.post(url)
    return response


def _sees(persona: str, vm: str) -> bool:
    """Whether the persona's user may see the VM (a grant on it: every user-* persona holds one on web-01)."""
    return persona.startswith("user-") and vm == WEB_01_UUID


def _expected(route: Route, access: Any, persona: str, method: str, vm: str = WEB_01_UUID) -> tuple[int, str] | None:
    """What the API answers a persona (status and code), or None when it lets the persona through.

    An object the caller may not see answers as one that does not exist: 404 not_found for a VM without a grant,
    any object on a host (the host, its pools, volumes, networks) a non-admin asks for, another user's job;
    the admins' resources that name no object (hosts/, users/, audit/...) and a VM the caller sees but may not
    do this with answer 403."""
    if access.permission == PUBLIC:
        return None
    if persona == "anonymous":
        return 401, "not_authenticated"
    if persona == "admin-expired":
        return 401, "token_expired"
    if persona == "admin-revoked":
        return 401, "token_revoked"
    if persona == "admin-read-only":
        return None if method in ("GET", "HEAD", "OPTIONS") else (403, "read_only_token")
    if _allowed(access, persona):
        return None
    names = {argument for argument, _ in route.arguments}
    if access.permission == OWNER or ("host" in names and not ("vm" in names and _sees(persona, vm))):
        return 404, "not_found"
    return 403, "permission_denied"


def _active(host: Host, vm: str = WEB_01_UUID) -> bool:
    return bool(services.call(host, lambda conn: conn.lookupByUUIDString(vm).isActive()))


@pytest.mark.parametrize(("route", "chosen", "access", "method"), [c for c, _ in API_CASES],
                         ids=[name for _, name in API_CASES])
def test_api_permission_table(callers: dict[str, TokenClient], test_host: Host, route: Route, chosen: str | None,
                              access: Any, method: str | None) -> None:
    url = _url(route, chosen, method=method)
    verb = method or ("POST" if chosen else "GET")  # a route choosing its operation by an argument runs it
    before = _world(test_host)
    for persona, caller in callers.items():
        expected = _expected(route, access, persona, verb)
        if expected is None:
            continue
        response = _ask(caller, url, method)
        assert (response.status_code, response.json().get("code")) == expected, \
            f"{persona} got {response.status_code} {response.content[:200]!r} at {verb} {url}"
        body = response.json()
        assert set(body) == {"code", "message"} and body["message"], body
    assert _world(test_host) == before, "a refused request changed something"
    if access.target == "vm" and access.permission != ADMIN:
        other = _url(route, chosen, vm=DB_01_UUID, method=method)
        for persona, caller in callers.items():
            if persona.startswith("user-"):
                response = _ask(caller, other, method)
                assert response.status_code == 404 and response.json()["code"] == "not_found", \
                    f"{persona} reached db-01 at {other}: {response.status_code}"
    for persona, caller in callers.items():
        if _expected(route, access, persona, verb) is not None:
            continue
        response = _ask(caller, url, method)
        assert response.status_code not in (401, 403), f"{persona} was refused {url}: {response.status_code}"
        assert response.status_code < 500, f"{persona} got {response.status_code} at {url}"
        if route.name != "api:docs":  # the reference page is HTML; everything else answers JSON
            assert response["Content-Type"].startswith(("application/json", "application/vnd.oai.openapi"))


def test_the_table_holds_every_kind_of_token(callers: dict[str, TokenClient]) -> None:
    """The personas cover what a token may be (read-only, expired, revoked), and the table expects of each
    what the API's check says."""
    assert set(TOKEN_PERSONAS) <= set(callers)
    route, _chosen, access, _method = next(c for c, name in API_CASES if name == "api:vm-action start")
    assert _expected(route, access, "admin-read-only", "POST") == (403, "read_only_token")
    assert _expected(route, access, "admin-expired", "POST") == (401, "token_expired")
    assert _expected(route, access, "admin-revoked", "POST") == (401, "token_revoked")
    assert _expected(route, access, "outsider", "POST") == (404, "not_found")
    assert _expected(route, access, "user-view", "POST") == (403, "permission_denied")


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
    """What a user may not see answers as what does not exist, word for word (404 not_found), so names cannot
    be probed; admins hear 404 for what does not exist."""
    missing = f"/api/v1/vms/no-such-host/{WEB_01_UUID}/"
    hidden = [f"/api/v1/vms/testhost/{DB_01_UUID}/", missing,
              "/api/v1/vms/testhost/99999999-9999-4999-8999-999999999999/"]
    answers = [callers["user-view"].get(url) for url in hidden]
    assert {(r.status_code, r.content) for r in answers} == {(404, answers[0].content)}, [r.content for r in answers]
    assert answers[0].json()["code"] == "not_found"
    for persona in ("user-view", "outsider"):
        seen = callers[persona].get("/api/v1/networks/testhost/lan/")
        unknown = callers[persona].get("/api/v1/networks/no-such-host/lan/")
        assert seen.status_code == unknown.status_code == 404 and seen.content == unknown.content == answers[0].content
    assert callers["user-view"].get("/api/v1/hosts/").status_code == 403, "an admins' list stays 403"
    refusals = AuditEvent.objects.filter(result="denied", username="api-view")
    assert refusals.count() >= 5, "each hidden object is still an audited refusal"
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
    theirs = callers["user-power"].get(f"/api/v1/jobs/{JOB_ID}/")
    nobodys = callers["user-power"].get("/api/v1/jobs/999999/")
    assert theirs.status_code == nobodys.status_code == 404 and theirs.content == nobodys.content, "another user's job"
    assert callers["admin"].get("/api/v1/jobs/999999/").status_code == 404
