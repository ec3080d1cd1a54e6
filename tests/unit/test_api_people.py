"""Users, grants and the audit log through the API (admins): each operation with a token, the database as the
witness and its one audit record; the user pages' forms refusing the same bad input, nothing made; the audit
page's own filters; and a token of a user without grants, which sees and does nothing anywhere in the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from tests.conftest import DB_01_UUID, PASSWORD, WEB_01_UUID
from tests.unit import test_api_access
from tests.unit.test_api_access import API_CASES, TokenClient, _ask
from tests.unit.test_routes import _url, _world
from tests.unit.test_users_views import UNKNOWN_VMS
from webkvm.models import AuditEvent, VMGrant
from webkvm.operations import LOGIN, PUBLIC
from webkvm.views import AuditFilters

pytestmark = pytest.mark.django_db
callers = test_api_access.callers  # the fixture: a token per persona

User = get_user_model()
NEW = "Plum-Tree-4711-x"


def _record(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).get()


def _through_admin_token(record: AuditEvent) -> None:
    assert record.result == "ok" and record.username == "api-admin", record
    assert "through the API, token admin-token" in record.detail, record.detail


def _no_secret(body: Any) -> None:
    assert "password" not in json.dumps(body), "a password (hash) left the panel"


# --- users --------------------------------------------------------------------------------------------

def test_create_update_and_set_a_password_through_the_api(callers: dict[str, TokenClient]) -> None:
    admin = callers["admin"]
    made = admin.post("/api/v1/users/", {"username": "eve", "password1": PASSWORD, "password2": PASSWORD})
    assert made.status_code == 201, made.content
    eve = User.objects.get(username="eve")
    assert eve.check_password(PASSWORD) and eve.is_active and not eve.is_superuser
    assert made.json()["id"] == eve.pk and made.json()["message"] == "User eve created."
    _through_admin_token(_record("user.create"))
    _no_secret(made.json())
    _no_secret(admin.get("/api/v1/users/").json())

    url = f"/api/v1/users/{eve.pk}/"
    changed = admin.call("PATCH", url, {"is_active": False, "email": "eve@example.org"})
    assert changed.status_code == 200, changed.content
    eve.refresh_from_db()
    assert (eve.is_active, eve.is_superuser, eve.email) == (False, False, "eve@example.org")
    assert "active=False admin=False" in _record("user.update").detail
    _through_admin_token(_record("user.update"))
    # PATCH leaves what it does not name as it was.
    assert admin.call("PATCH", url, {"is_superuser": True}).status_code == 200
    eve.refresh_from_db()
    assert (eve.is_active, eve.is_superuser, eve.email) == (False, True, "eve@example.org")

    done = admin.call("PUT", url + "password/", {"new_password1": NEW, "new_password2": NEW})
    assert done.status_code == 200 and done.json()["message"] == "Password of eve changed.", done.content
    eve.refresh_from_db()
    assert eve.check_password(NEW)
    _through_admin_token(_record("user.set_password"))


def test_a_user_with_their_grants(callers: dict[str, TokenClient]) -> None:
    viewer = User.objects.get(username="api-view")
    seen = callers["admin"].get(f"/api/v1/users/{viewer.pk}/").json()
    assert (seen["username"], seen["is_superuser"]) == ("api-view", False)
    assert [(g["host"], g["vm"], g["vm_name"], g["permissions"]) for g in seen["grants"]] == [
        ("testhost", WEB_01_UUID, "web-01", ["view"])]
    _no_secret(seen)
    everybody = callers["admin"].get("/api/v1/users/?limit=2").json()
    assert everybody["count"] == User.objects.count() and len(everybody["results"]) == 2 and everybody["next"]
    assert callers["admin"].get("/api/v1/users/999999/").status_code == 404


def _user_count_and_records() -> tuple[int, int]:
    return User.objects.count(), AuditEvent.objects.exclude(result="denied").count()


# The user pages' forms refuse these (Django's own forms and the panel's password rules, settings.py).
BAD_NEW_USERS = [
    ({"username": "", "password1": PASSWORD, "password2": PASSWORD}, "username"),
    ({"username": "bad name!", "password1": PASSWORD, "password2": PASSWORD}, "username"),
    ({"username": "api-view", "password1": PASSWORD, "password2": PASSWORD}, "username"),  # taken
    ({"username": "eve", "password1": PASSWORD, "password2": PASSWORD + "x"}, "password2"),  # mismatch
    ({"username": "eve", "password1": "Short-1", "password2": "Short-1"}, "password2"),  # under 10
    ({"username": "eve", "password1": "password123", "password2": "password123"}, "password2"),  # common
    ({"username": "eve"}, "password1"),
]
BAD_PASSWORDS = [({"new_password1": NEW, "new_password2": NEW + "x"}, "new_password2"),
                 ({"new_password1": "Short-1", "new_password2": "Short-1"}, "new_password2"),
                 ({}, "new_password1")]
BAD_CHANGES = [({"email": "not an address"}, "email"),
               ({"username": "renamed"}, "username"),  # the page does not offer it: refused, not ignored
               ({"password": "x"}, "password")]


def _invalid(response: Any, field: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid" and body["fields"].get(field), body


@pytest.mark.parametrize(("data", "field"), BAD_NEW_USERS)
def test_bad_new_users_are_refused_nothing_made(callers: dict[str, TokenClient], data: dict[str, str],
                                                field: str) -> None:
    before = _user_count_and_records()
    _invalid(callers["admin"].post("/api/v1/users/", data), field)
    assert _user_count_and_records() == before


def test_bad_changes_and_passwords_are_refused_nothing_changed(callers: dict[str, TokenClient]) -> None:
    admin = callers["admin"]
    target = User.objects.get(username="api-view")
    hashed, before = target.password, _user_count_and_records()
    for data, field in BAD_PASSWORDS:
        _invalid(admin.call("PUT", f"/api/v1/users/{target.pk}/password/", data), field)
    for data, field in BAD_CHANGES:
        _invalid(admin.call("PATCH", f"/api/v1/users/{target.pk}/", data), field)
    me = User.objects.get(username="api-admin")
    refused = admin.call("PATCH", f"/api/v1/users/{me.pk}/", {"is_superuser": False})
    _invalid(refused, "is_superuser")
    assert refused.json()["fields"]["is_superuser"] == ["You cannot take away your own admin rights."]
    target.refresh_from_db()
    me.refresh_from_db()
    assert target.password == hashed and target.username == "api-view" and me.is_superuser
    assert _user_count_and_records() == before


# --- grants -------------------------------------------------------------------------------------------

def test_set_list_and_revoke_a_grant_through_the_api(callers: dict[str, TokenClient], test_host: Host) -> None:
    admin = callers["admin"]
    outsider = User.objects.get(username="api-outsider")
    given = admin.post("/api/v1/grants/", {"user": outsider.pk, "host": "testhost", "vm": "db-01",
                                           "can_power": True})
    assert given.status_code == 200, given.content
    grant = VMGrant.objects.get(user=outsider)
    assert (str(grant.vm_uuid), grant.vm_name, grant.permissions()) == (DB_01_UUID, "db-01", ["view", "power"])
    assert given.json()["id"] == grant.pk and given.json()["permissions"] == ["view", "power"]
    record = _record("grant.set")
    _through_admin_token(record)
    assert (record.object_name, record.host_name) == ("db-01", "testhost") and "user=api-outsider" in record.detail
    # The same grant again, by UUID: changed, never a second one (the pages' give_grant).
    again = admin.post("/api/v1/grants/", {"user": outsider.pk, "host": "testhost", "vm": DB_01_UUID,
                                           "can_console": True})
    assert again.status_code == 200 and VMGrant.objects.get(user=outsider).permissions() == ["view", "console"]
    # The outsider's token now reaches db-01, and only it.
    seen = callers["outsider"].get("/api/v1/vms/").json()
    assert [vm["uuid"] for vm in seen["results"]] == [DB_01_UUID]

    def listed(query: str) -> list[str]:
        return [f"{g['username']}@{g['vm_name']}" for g in admin.get("/api/v1/grants/" + query).json()["results"]]

    assert listed(f"?user={outsider.pk}") == listed("?user=api-outsider") == ["api-outsider@db-01"]
    assert listed("?vm=db-01") == listed(f"?vm={DB_01_UUID}&host=testhost") == ["api-outsider@db-01"]
    assert len(listed(f"?vm={WEB_01_UUID}")) == 5 and listed("?host=no-such-host") == []

    url = f"/api/v1/grants/{grant.pk}/"
    assert admin.get(url).json()["vm"] == DB_01_UUID
    gone = admin.call("DELETE", url)
    assert gone.status_code == 200 and gone.json()["message"] == "Grant removed.", gone.content
    assert not VMGrant.objects.filter(user=outsider).exists()
    _through_admin_token(_record("grant.revoke"))
    assert admin.call("DELETE", url).status_code == 404


def _grant_bad_input() -> list[tuple[dict[str, Any], str]]:
    table: list[tuple[dict[str, Any], str]] = [({"host": "testhost", "vm": vm}, "vm") for vm, _ in UNKNOWN_VMS]
    return [*table, ({"host": "no-such-host", "vm": "web-01"}, "host"), ({"host": "testhost"}, "vm"),
            ({"host": "testhost", "vm": "web-01", "user": 999999}, "user"),
            ({"host": "testhost", "vm": "web-01", "user": None}, "user")]


def test_bad_grants_are_refused_nothing_made(callers: dict[str, TokenClient], test_host: Host) -> None:
    outsider = User.objects.get(username="api-outsider")
    words = dict(UNKNOWN_VMS)
    before = list(VMGrant.objects.values()), _user_count_and_records()
    for data, field in _grant_bad_input():
        response = callers["admin"].post("/api/v1/grants/", {"user": outsider.pk, "can_power": True, **data})
        _invalid(response, field)
        if data.get("vm") in words:  # the page's own words, and nothing of libvirt's
            assert response.json()["fields"]["vm"] == [words[data["vm"]]]
    assert (list(VMGrant.objects.values()), _user_count_and_records()) == before


# --- the audit log ------------------------------------------------------------------------------------

def _event(key: str, when: str, **fields: str) -> tuple[str, int]:
    event = AuditEvent.objects.create(object_type="vm", **fields)
    AuditEvent.objects.filter(pk=event.pk).update(time=datetime.fromisoformat(when).replace(tzinfo=UTC))
    return key, event.pk


@pytest.fixture
def events(db: None) -> dict[str, int]:
    return dict([
        _event("a", "2026-01-01T10:00", username="alice", action="vm.start", result="ok", host_name="testhost",
               object_name="web-01"),
        _event("b", "2026-01-02T12:00", username="bob", action="vm.destroy", result="failed", host_name="other",
               object_name="db-01"),
        _event("c", "2026-01-03T09:00", username="alice", action="grant.set", result="denied", host_name="testhost",
               object_name="db-01", detail="user=mallory"),
    ])


AUDIT_FILTERS = [
    ("user=alice", "ac"), ("action=vm.", "ab"), ("action=vm.start", "a"), ("result=failed", "b"),
    ("host=testhost", "ac"), ("object=db-01", "bc"), ("q=mallory", "c"), ("q=other", "b"),
    ("since=2026-01-02T00:00:00Z", "bc"), ("until=2026-01-02", "a"),
    ("since=2026-01-01T11:00:00%2B00:00&until=2026-01-03T08:00:00Z", "b"), ("user=alice&result=denied", "c"),
    ("", "abc"),
]


@pytest.mark.parametrize(("query", "expected"), AUDIT_FILTERS)
def test_the_audit_log_is_filtered_as_on_its_page(callers: dict[str, TokenClient], admin_client: Client,
                                                  events: dict[str, int], query: str, expected: str) -> None:
    ours = {pk: key for key, pk in events.items()}
    answer = callers["admin"].get(f"/api/v1/audit/?{query}")
    assert answer.status_code == 200, answer.content
    found = [ours[e["id"]] for e in answer.json()["results"] if e["id"] in ours]
    assert found == sorted(expected, reverse=True), "newest first"
    page = admin_client.get(reverse("audit") + f"?{query}")
    assert [ours[e.pk] for e in page.context["page"] if e.pk in ours] == found, "the page filters the same way"


def test_the_audit_log_pages_and_refuses_bad_filters(callers: dict[str, TokenClient], admin_client: Client,
                                                     events: dict[str, int]) -> None:
    admin = callers["admin"]
    first = admin.get("/api/v1/audit/?limit=1&user=alice").json()
    assert first["count"] == 2 and first["next"] and first["results"][0]["id"] == events["c"]
    assert first["results"][0] == {**first["results"][0], "user": "alice", "action": "grant.set",
                                   "result": "denied", "host": "testhost", "object_name": "db-01"}
    for query, field in [("result=maybe", "result"), ("since=yesterday", "since"), ("until=2026-13-01", "until")]:
        _invalid(admin.get(f"/api/v1/audit/?{query}"), field)
        assert admin_client.get(reverse("audit") + f"?{query}").status_code == 200, "the page leaves it out"


# --- a user without grants ------------------------------------------------------------------------------

def _nothing_listed(body: Any) -> bool:
    """An empty list, or (their usage) only the caller's own record saying they have no quota."""
    if isinstance(body, list):
        return body == []
    results = body.get("results")
    if results and all(row.get("user") == "api-outsider" and row.get("limits") is None for row in results):
        return True
    return body.get("count") == 0 and results == [] and not body.get("unreachable")


def test_a_token_without_grants_sees_and_does_nothing(callers: dict[str, TokenClient], test_host: Host) -> None:
    """Every API route the route walk finds (tests/unit/test_routes.py), asked with the outsider's token: its
    lists are empty and everything else is refused or not found; nothing changes."""
    outsider = callers["outsider"]
    before = _world(test_host)
    asked = 0
    for (route, chosen, access, method), name in API_CASES:
        if access.permission == PUBLIC:
            continue  # the schema and its reference page describe; they hold no data
        response = _ask(outsider, _url(route, chosen, method=method), method)
        asked += 1
        if access.permission == LOGIN and method in (None, "GET"):
            assert response.status_code == 200, f"{name}: {response.status_code}"
            assert _nothing_listed(response.json()), f"{name} showed the outsider {response.json()}"
        elif access.permission == LOGIN:  # a change anybody may ask for: it must come to nothing
            assert response.status_code in (400, 403, 404), f"{name}: {response.status_code}"
        else:
            assert response.status_code in (403, 404), f"{name}: {response.status_code}"
    assert asked >= 20 and _world(test_host) == before


def test_the_audit_page_has_every_filter_and_says_which_it_left_out(admin_client: Client,
                                                                   events: dict[str, int]) -> None:
    page = admin_client.get(reverse("audit")).content.decode()
    for name in AuditFilters.base_fields:
        assert f'name="{name}"' in page, f"no input for the filter {name}"
    answer = admin_client.get(reverse("audit") + "?since=yesterday&host=testhost")
    said = answer.content.decode()
    assert answer.status_code == 200 and 'id="filter-problems"' in said and "Filter “from” left out" in said
    assert 'name="host" placeholder="host" value="testhost"' in said  # what was asked stays in the form
