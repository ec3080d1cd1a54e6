"""A VM's life through the API (api/vm_life.py) with tokens: create, delete, clone, snapshots, the console
ticket and cancelling a job. libvirt's test driver is the witness; jobs run in threads of this process and are
followed to their end through /api/v1/jobs/ID/."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from console import tickets
from hosts import services
from hosts.models import Host
from jobs import runner
from jobs.models import Job, JobState
from tests.conftest import WEB_01_UUID
from tests.unit.test_api_access import TokenClient, callers  # noqa: F401  (the fixture)
from tests.unit.test_instance_create import BAD_INPUT, GOOD_FORM, make_vm, vm_events, world
from tests.unit.test_jobs import a_job
from tests.unit.test_routes import JOB_ID
from tests.unit.test_snapshot_create_jobs import running_vm
from tests.unit.test_vm_config import define_vm, snapshot_names
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db
API = "/api/v1"
VMS = f"{API}/vms/testhost"
JOB_TEST = pytest.mark.django_db(transaction=True)  # the job's thread writes the job and its audit record


@pytest.fixture
def tokens(request: pytest.FixtureRequest) -> dict[str, TokenClient]:
    """One token per persona (tests/unit/test_api_access.py callers)."""
    found: dict[str, TokenClient] = request.getfixturevalue("callers")
    return found


def follow(caller: TokenClient, response: Any, seconds: float = 15) -> dict[str, Any]:
    """A 202's job, asked through the API until it is no longer active."""
    assert response.status_code == 202, response.content
    url = response.json()["url"].removeprefix("http://testserver")
    assert response["Location"].endswith(url)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state: dict[str, Any] = caller.get(url).json()
        if not state["active"]:
            job = Job.objects.get(pk=state["id"])
            while job.audit_id is None and time.monotonic() < deadline:  # written just after it ends
                time.sleep(0.05)
                job.refresh_from_db()
            return state
        time.sleep(0.1)
    raise AssertionError(f"the job at {url} did not end")


def record(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).latest("id")


def through(token: str) -> str:
    return f"through the API, token {token}"


# --- create ---------------------------------------------------------------------------------------


def test_create_in_the_request_answers_201_with_the_vms_url(tokens: dict[str, TokenClient],
                                                              test_host: Host) -> None:
    response = tokens["admin"].post(f"{VMS}/", {**GOOD_FORM, "start": False})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["message"] == "VM app-01 created on testhost." and body["name"] == "app-01"
    assert response["Location"] == body["url"] == f"http://testserver{VMS}/{body['uuid']}/"
    assert tokens["admin"].get(body["url"].removeprefix("http://testserver")).json()["state"] == "shut off"
    running = services.call(test_host, lambda conn: conn.lookupByUUIDString(body["uuid"]).isActive())
    assert not running and "app-01.qcow2" in world(test_host)[1]
    event = record("vm.create")
    assert (event.result, event.object_name, event.username) == ("ok", "app-01", "api-admin")
    assert through("admin-token") in event.detail
    # A field left out takes what the page shows: start ticked, the first pool, the OS's sizes.
    shown = tokens["admin"].post(f"{VMS}/", {"name": "app-02", "nic1_source": ""})
    assert shown.status_code == 201, shown.content
    assert services.call(test_host, lambda conn: conn.lookupByName("app-02").isActive())
    assert tokens["user-change"].post(f"{VMS}/", {**GOOD_FORM, "name": "nope"}).status_code == 404  # admins' host
    assert "nope" not in world(test_host)[0]


def test_sizes_given_without_a_size_choice_are_meant_and_os_takes_a_short_id(tokens: dict[str, TokenClient],
                                                                            test_host: Host) -> None:
    """What a script sends is what it gets: vCPUs, memory and disk without `size` are the custom sizes (the
    page's preselected size would silently replace them); `os` accepts osinfo's short id."""
    response = tokens["admin"].post(f"{VMS}/", {"name": "sized", "vcpus": 2, "memory": "96M", "disk_size": "3M",
                                                "os": "debian11", "nic1_source": "", "start": False})
    assert response.status_code == 201, response.content

    def facts(conn: Any) -> tuple[int, int]:
        info = conn.lookupByName("sized").info()
        return info[3], info[1]

    vcpus, memory_kib = services.call(test_host, facts)
    assert (vcpus, memory_kib) == (2, 96 * 1024)
    assert "sized.qcow2" in world(test_host)[1]
    unknown = tokens["admin"].post(f"{VMS}/", {"name": "unsized", "os": "debian0", "start": False})
    assert unknown.status_code == 400 and list(unknown.json()["fields"]) == ["os"]


@pytest.mark.parametrize(("field", "change"), BAD_INPUT, ids=[f"{f}={list(c.values())[-1][:20]}" for f, c in BAD_INPUT])
def test_create_bad_input_is_400_with_the_field_and_creates_nothing(tokens: dict[str, TokenClient], test_host: Host,
                                                                  field: str, change: dict[str, str]) -> None:
    before = world(test_host)
    response = tokens["admin"].post(f"{VMS}/", {**GOOD_FORM, **change})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid" and field in body["fields"], body
    assert world(test_host) == before and vm_events() == []


def test_create_on_another_host_than_the_urls_is_refused(tokens: dict[str, TokenClient], test_host: Host) -> None:
    Host.objects.create(name="second", transport="test", path=test_host.path)
    response = tokens["admin"].post(f"{VMS}/", {**GOOD_FORM, "host": "second"})
    assert response.status_code == 400 and "host" in response.json()["fields"]
    assert tokens["admin"].post(f"{API}/vms/no-such-host/", GOOD_FORM).status_code == 404


@JOB_TEST
def test_a_creation_that_allocates_its_disk_is_a_job_followed_to_its_end(tokens: dict[str, TokenClient],
                                                                          test_host: Host) -> None:
    response = tokens["admin"].post(f"{VMS}/", {**GOOD_FORM, "disk_allocate": True, "disk_format": "raw"})
    state = follow(tokens["admin"], response)
    assert (state["state"], state["kind"]) == ("done", "vm.create"), state
    made = tokens["admin"].get(response.json()["vm_url"].removeprefix("http://testserver")).json()
    assert (made["uuid"], made["name"], made["state"]) == (response.json()["uuid"], "app-01", "running")
    assert "app-01" in world(test_host)[0] and "app-01.img" in world(test_host)[1]
    event = record("vm.create")
    assert event.result == "ok" and through("admin-token") in event.detail


# --- delete ---------------------------------------------------------------------------------------


def test_delete_keeps_or_deletes_volumes_as_asked(tokens: dict[str, TokenClient], test_host: Host) -> None:
    admin = tokens["admin"]
    gone, kept = make_vm(test_host, "gone"), make_vm(test_host, "kept")
    plan = admin.get(f"{VMS}/{gone}/delete-plan/").json()
    assert plan["name"] == "gone" and not plan["running"]
    [volume] = plan["volumes"]
    assert volume["deletable"] and volume["key"] == "/var/lib/libvirt/images/gone.qcow2"
    foreign = admin.call("DELETE", f"{VMS}/{gone}/?volume=/var/lib/libvirt/images/kept.qcow2")
    assert foreign.status_code == 400 and "volume" in foreign.json()["fields"]
    assert "gone" in world(test_host)[0]

    deleted = admin.call("DELETE", f"{VMS}/{gone}/?volume={volume['key']}")
    assert deleted.status_code == 200, deleted.content
    assert deleted.json() == {"message": "VM gone deleted with its volumes images/gone.qcow2.",
                              "deleted": ["images/gone.qcow2"],
                              "failed": [], "forced_off": False}
    assert "gone" not in world(test_host)[0] and "gone.qcow2" not in world(test_host)[1]
    assert admin.call("DELETE", f"{VMS}/{kept}/").status_code == 200
    assert "kept" not in world(test_host)[0] and "kept.qcow2" in world(test_host)[1]
    assert [e.result for e in AuditEvent.objects.filter(action="vm.delete").order_by("id")] == ["failed", "ok", "ok"]
    assert through("admin-token") in record("vm.delete").detail


def test_a_running_vm_is_deleted_only_when_forced_off(tokens: dict[str, TokenClient], test_host: Host) -> None:
    deleter = tokens["user-delete"]
    refused = deleter.call("DELETE", f"{VMS}/{WEB_01_UUID}/")
    assert refused.status_code == 409 and refused.json()["code"] == "invalid_state"
    assert "web-01" in world(test_host)[0]
    done = deleter.call("DELETE", f"{VMS}/{WEB_01_UUID}/?force_off=true")
    assert done.status_code == 200 and done.json()["forced_off"]
    assert "web-01" not in world(test_host)[0]
    event = record("vm.delete")
    assert (event.result, event.username) == ("ok", "api-delete") and through("user-delete-token") in event.detail


def test_a_view_grant_neither_deletes_nor_snapshots(tokens: dict[str, TokenClient], test_host: Host) -> None:
    viewer, vm = tokens["user-view"], f"{VMS}/{WEB_01_UUID}/"
    services.call(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).snapshotCreateXML(
        "<domainsnapshot><name>s0</name></domainsnapshot>", 0))
    assert [s["name"] for s in viewer.get(vm + "snapshots/").json()["results"]] == ["s0"]
    for method, url in (("DELETE", vm + "?force_off=1"), ("POST", vm + "snapshots/"),
                        ("POST", vm + "snapshots/s0/revert/"), ("DELETE", vm + "snapshots/s0/"),
                        ("POST", vm + "clone/"), ("GET", vm + "delete-plan/")):
        response = viewer.call(method, url, {"name": "s1"})
        assert response.status_code == 403 and response.json()["code"] == "permission_denied", (method, url)
    assert "web-01" in world(test_host)[0] and snapshot_names(test_host, WEB_01_UUID) == ["s0"]


# --- snapshots ------------------------------------------------------------------------------------


def test_snapshots_of_a_shut_off_vm_in_the_request(tokens: dict[str, TokenClient], test_host: Host) -> None:
    changer = tokens["user-change"]
    vm = define_vm(test_host, "snapvm")
    VMGrant.objects.create(user=get_user_model().objects.get(username="api-change"), host=test_host, vm_uuid=vm,
                           vm_name="snapvm", can_change=True)
    url = f"{VMS}/{vm}/snapshots/"
    taken = changer.post(url, {"name": "s1", "description": "known"})
    assert taken.status_code == 201, taken.content
    assert taken.json()["message"] == "snapvm: snapshot s1 taken." and taken.json()["description"] == "known"
    assert snapshot_names(test_host, vm) == ["s1"]
    for bad in ("", "a b", "<b>", "x" * 64, "s1"):
        refused = changer.post(url, {"name": bad})
        assert refused.status_code == 400 and "name" in refused.json()["fields"], bad
    listed = changer.get(url).json()
    assert listed["count"] == 1 and listed["results"][0]["name"] == "s1" and listed["results"][0]["current"]
    reverted = changer.post(url + "s1/revert/")
    assert reverted.status_code == 200 and reverted.json() == {"message": "snapvm: back to snapshot s1.",
                                                               "state": "shutoff"}
    assert changer.call("DELETE", url + "s1/").json()["message"] == "snapvm: snapshot s1 deleted."
    assert snapshot_names(test_host, vm) == [] and not Job.objects.filter(kind="vm.snapshot.create").exists()
    actions = list(AuditEvent.objects.filter(action__startswith="vm.snapshot").order_by("id")
                   .values_list("action", "result"))
    assert actions == [("vm.snapshot.create", "ok"), ("vm.snapshot.revert", "ok"), ("vm.snapshot.delete", "ok")]
    assert all(through("user-change-token") in e.detail for e in AuditEvent.objects.filter(action__startswith="vm.s"))
    for missing in (changer.call("DELETE", url + "s1/"), changer.post(url + "s1/revert/")):  # gone: 404
        assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.content


def test_a_raw_disk_is_refused_409_and_audited(tokens: dict[str, TokenClient], test_host: Host) -> None:
    vm = define_vm(test_host, "rawvm", disk_format="raw")
    refused = tokens["admin"].post(f"{VMS}/{vm}/snapshots/", {"name": "s1"})
    assert refused.status_code == 409 and refused.json()["code"] == "invalid_state"
    assert "rawvm cannot be snapshotted: disk vda" in refused.json()["message"]
    assert snapshot_names(test_host, vm) == [] and record("vm.snapshot.create").result == "failed"


@JOB_TEST
def test_a_running_vms_snapshot_is_a_job(tokens: dict[str, TokenClient], test_host: Host) -> None:
    vm = running_vm(test_host, "live")
    state = follow(tokens["admin"], tokens["admin"].post(f"{VMS}/{vm}/snapshots/", {"name": "s1"}))
    assert (state["state"], state["kind"]) == ("done", "vm.snapshot.create"), state
    assert snapshot_names(test_host, vm) == ["s1"]
    assert not services.vm_locks.held(str(test_host.pk), vm)
    assert through("admin-token") in record("vm.snapshot.create").detail


# --- clone ----------------------------------------------------------------------------------------


@JOB_TEST
def test_clone_is_a_job(tokens: dict[str, TokenClient], test_host: Host) -> None:
    vm = define_vm(test_host, "srcvm")
    url = f"{VMS}/{vm}/clone/"
    refused = tokens["admin"].post(url, {"name": "web-01"})
    assert refused.status_code == 400 and "name" in refused.json()["fields"]
    state = follow(tokens["admin"], tokens["admin"].post(url, {"name": "srcvm-copy"}))
    assert (state["state"], state["kind"]) == ("done", "vm.clone"), state
    assert "srcvm-copy" in world(test_host)[0] and "srcvm-copy.qcow2" in world(test_host)[1]
    event = record("vm.clone")
    assert event.result == "ok" and through("admin-token") in event.detail
    running = tokens["admin"].post(f"{VMS}/{WEB_01_UUID}/clone/", {"name": "web-02"})
    assert running.status_code == 409 and "web-02" not in world(test_host)[0]


# --- the console ticket ---------------------------------------------------------------------------


def test_a_console_ticket_for_a_token_or_a_session(tokens: dict[str, TokenClient], test_host: Host,
                                                   granted_user: Any) -> None:
    """A token's ticket is bound to that token (the WebSocket sends it as Bearer: tests/unit/
    test_console_token_tickets.py), a session's to the session."""
    url = f"{VMS}/{WEB_01_UUID}/console/ticket/"
    caller = tokens["user-console"]
    token = caller.post(url)
    assert token.status_code == 200, token.content
    body = token.json()
    assert body["bound_to"] == "token" and body["ws_headers"] == {"Authorization": "Bearer <this same API token>"}
    assert through("user-console-token") in record("console.ticket").detail
    text = caller.headers["HTTP_AUTHORIZATION"].split()[1]
    with pytest.raises(tickets.Refused, match="made for an API token"):  # the session's way does not open it
        tickets.consume(body["ticket"], host_name="testhost", vm_uuid=WEB_01_UUID, session_key="",
                        remote_addr="127.0.0.1")
    again = caller.post(url).json()["ticket"]
    spent = tickets.consume(again, host_name="testhost", vm_uuid=WEB_01_UUID, session_key="", presented=text,
                            remote_addr="127.0.0.1")
    assert spent.user.username == "api-console"
    assert tokens["user-view"].post(url).status_code == 403
    session = Client()
    session.force_login(granted_user)  # may use web-01's console
    for kind, path in (("vnc", "/console/ws/"), ("serial", "/console/serial/ws/")):
        answer = session.post(url, {"console": kind}, content_type="application/json")
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert body["ws_path"] == f"{path}testhost/{WEB_01_UUID}/" and body["ws_url"] == "ws://testserver" + body[
            "ws_path"]
        assert body["protocols"] == tickets.protocols(body["ticket"]) and body["expires_in"] == 30
        assert body["bound_to"] == "session" and body["ws_headers"] == {}
        spent = tickets.consume(body["ticket"], host_name="testhost", vm_uuid=WEB_01_UUID, kind=kind,
                                session_key=session.session.session_key, remote_addr="127.0.0.1")
        assert spent.user == granted_user
    assert session.post(url, {"console": "spice"}, content_type="application/json").json()["fields"]["console"]


# --- cancelling a job -----------------------------------------------------------------------------


def test_cancel_a_queued_job_but_not_an_ended_one(tokens: dict[str, TokenClient], test_host: Host) -> None:
    owner = tokens["user-view"]  # the owner of the sample job JOB_ID (done)
    ended = owner.post(f"{API}/jobs/{JOB_ID}/cancel/")
    assert ended.status_code == 409 and ended.json()["code"] == "invalid_state"
    assert "already ended (done)" in ended.json()["message"]
    queued = a_job(test_host, Job.objects.get(pk=JOB_ID).owner, state=JobState.QUEUED)
    theirs = tokens["user-power"].post(f"{API}/jobs/{queued.pk}/cancel/")
    nobodys = tokens["user-power"].post(f"{API}/jobs/999999/cancel/")
    assert theirs.status_code == 404 and theirs.content == nobodys.content, "another user's job: as no job"
    runner.running_here.add(queued.pk)  # as if this process were about to run it
    try:
        cancelled = owner.post(f"{API}/jobs/{queued.pk}/cancel/")
    finally:
        runner.running_here.discard(queued.pk)
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["message"] == "Cancelled before it started." and cancelled.json()["state"] == "cancelled"
    assert Job.objects.get(pk=queued.pk).state == JobState.CANCELLED
