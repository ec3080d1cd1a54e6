"""Hosts through the API with an admin's token: each operation, with the host records, the audit log and libvirt
as witnesses; the host form's bad-input table and the hostile-path rows (test_hostile_admin_paths.py) run again
through the API; secrets never come back; a dead host's detail answers quickly with the reason."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model

from api.models import ApiToken
from hosts import services
from hosts.models import Host
from tests.conftest import BASIC_WORLD
from tests.unit import test_hostile_admin_paths as hostile
from tests.unit.test_api_access import TokenClient
from tests.unit.test_hosts_views import BAD_INPUTS
from virt.ssh import HostKey
from webkvm.models import AuditEvent, SharedResource

pytestmark = pytest.mark.django_db

places = hostile.places  # the fixture: a folder of test worlds and PKI roots, with links pointing out
PASSWORD = "Pl41n-S3cret-api"
HOSTS = "/api/v1/hosts/"
SSH_KEY = HostKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")


@pytest.fixture
def admin_api(db: None) -> TokenClient:
    user = get_user_model().objects.create_superuser("api-root", "", "x")
    return TokenClient(ApiToken.make(user, "ops-token")[1])


def _record(action: str, name: str) -> AuditEvent:
    event: AuditEvent = AuditEvent.objects.get(action=action, object_name=name)
    assert event.result == "ok" and event.username == "api-root", event
    assert "through the API, token ops-token" in event.detail, event.detail
    return event


def test_add_edit_test_and_remove_a_host(admin_api: TokenClient) -> None:
    added = admin_api.post(HOSTS, {"name": "lab", "transport": "test", "path": str(BASIC_WORLD)})
    assert added.status_code == 201, added.content
    assert added.json()["uri"].startswith("test:///") and Host.objects.filter(name="lab").exists()
    _record("host.create", "lab")
    detail = admin_api.get(HOSTS + "lab/").json()
    assert detail["status"]["reachable"] and detail["summary"]["domains_total"] == 3  # libvirt's own count
    assert detail["summary"]["cpus"] == 8 and detail["usage"]["memory_total"] == 16 * 1024**3

    tested = admin_api.post(HOSTS + "lab/test/")
    assert tested.status_code == 200 and "connected to TEST" in tested.json()["message"]
    assert "connected to TEST" in _record("host.test", "lab").detail

    renamed = admin_api.call("PATCH", HOSTS + "lab/", {"name": "lab2"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "lab2", renamed.content
    assert renamed.json()["message"] == "Host lab2 saved."
    assert Host.objects.get(name="lab2").path == str(BASIC_WORLD)  # what was not sent stays
    _record("host.update", "lab2")

    assert admin_api.call("DELETE", HOSTS + "lab2/").status_code == 200
    assert not Host.objects.filter(name="lab2").exists()
    _record("host.delete", "lab2")
    assert admin_api.get(HOSTS + "lab2/").json()["code"] == "not_found"


def test_sasl_password_is_stored_encrypted_and_never_answered(admin_api: TokenClient) -> None:
    added = admin_api.post(HOSTS, {"name": "sasl", "transport": "tcp", "hostname": "127.0.0.1", "port": 16510,
                                   "sasl_username": "ops", "sasl_password": PASSWORD})
    assert added.status_code == 201, added.content
    host = Host.objects.get(name="sasl")
    assert PASSWORD not in host.sasl_password_encrypted and host.spec().sasl_password == PASSWORD
    edited = admin_api.call("PATCH", HOSTS + "sasl/", {"port": 16511})  # no password: the stored one stays
    assert edited.status_code == 200, edited.content
    assert Host.objects.get(name="sasl").spec().sasl_password == PASSWORD
    answers = [added, edited, admin_api.get(HOSTS + "sasl/"), admin_api.get(HOSTS)]
    for answer in answers:
        text = answer.content.decode()
        assert PASSWORD not in text and host.sasl_password_encrypted not in text
    assert answers[2].json()["sasl_password_set"] is True
    assert PASSWORD not in " ".join(e.detail for e in AuditEvent.objects.all())


def test_ssh_host_keys_are_shown_then_accepted(admin_api: TokenClient, monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[str] = []

    def keyscan(hostname: str, port: int | None) -> list[HostKey]:
        scans.append(hostname)
        return [SSH_KEY]

    monkeypatch.setattr("hosts.views.keyscan", keyscan)
    form = {"name": "kvm-ssh", "transport": "ssh", "hostname": "kvm1.example", "username": "root"}
    first = admin_api.post(HOSTS, form)
    assert first.status_code == 400 and first.json()["code"] == "invalid"
    assert first.json()["ssh_host_keys"] == [{"type": "ssh-ed25519", "fingerprint": SSH_KEY.fingerprint}]
    assert not Host.objects.filter(name="kvm-ssh").exists()
    token = first.json()["host_keys_token"]
    tampered = admin_api.post(HOSTS, {**form, "host_keys_token": token[:-2] + "xx", "accept_host_key": True})
    assert tampered.status_code == 400 and not Host.objects.filter(name="kvm-ssh").exists()
    saved = admin_api.post(HOSTS, {**form, "host_keys_token": token, "accept_host_key": True})
    assert saved.status_code == 201, saved.content
    assert saved.json()["ssh_host_keys"] == [SSH_KEY.fingerprint]
    assert SSH_KEY.fingerprint in _record("host.create", "kvm-ssh").detail
    # Another address is another machine's keys: scanned again, nothing saved before they are accepted.
    moved = admin_api.call("PATCH", HOSTS + "kvm-ssh/", {"hostname": "kvm2.example"})
    assert moved.status_code == 400 and "host_keys_token" in moved.json(), moved.content
    assert Host.objects.get(name="kvm-ssh").hostname == "kvm1.example"
    assert scans == ["kvm1.example", "kvm1.example", "kvm2.example"]


@pytest.mark.parametrize(("field", "values"), BAD_INPUTS, ids=[f"{f}:{str(v)[:40]}" for f, v in BAD_INPUTS])
def test_bad_host_input_is_a_field_error(admin_api: TokenClient, libvirt_opens: list[str], field: str,
                                         values: dict[str, str]) -> None:
    Host.objects.create(name="keep", transport="test", path="default")
    if "sasl_password" in values:
        values = {**values, "sasl_password": PASSWORD}
    response = admin_api.post(HOSTS, {"name": "new-host", "path": "system", **values})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid" and field in body["fields"], body
    assert PASSWORD not in response.content.decode()
    assert list(Host.objects.values_list("name", flat=True)) == ["keep"]
    assert libvirt_opens == []


HOST_ROWS = [row for row in hostile.PATH_ROWS if row.form == "host"]


@pytest.mark.parametrize("row", HOST_ROWS, ids=[f"{r.field}-{r.value[:40]!r}" for r in HOST_ROWS])
def test_a_hostile_path_is_a_field_error(admin_api: TokenClient, places: dict[str, str],
                                         libvirt_opens: list[str], row: Any) -> None:
    response = admin_api.post(HOSTS, {**hostile.VALID[f"host-{row.field}"], row.field: row.value.format(**places)})
    assert response.status_code == 400, response.content
    assert any(row.error in message for message in response.json()["fields"].get(row.field, [])), response.content
    assert hostile.SECRET not in response.content.decode()
    assert not Host.objects.exists() and libvirt_opens == []


def test_the_test_driver_only_with_its_setting_and_only_its_worlds(admin_api: TokenClient, places: dict[str, str],
                                                                  settings: Any, libvirt_opens: list[str]) -> None:
    world = f"{places['worlds']}/basic.xml"
    assert admin_api.post(HOSTS, {"name": "demo", "transport": "test", "path": world}).status_code == 201
    # A row changed behind the form's back is never opened: the detail says why, quickly.
    Host.objects.filter(name="demo").update(path=places["secret"])
    detail = admin_api.get(HOSTS + "demo/")
    assert detail.status_code == 200 and not detail.json()["status"]["reachable"]
    assert "folder of test worlds" in detail.json()["status"]["reason"]
    tested = admin_api.post(HOSTS + "demo/test/")
    assert tested.status_code in (409, 503) and hostile.SECRET not in tested.content.decode()
    settings.WEBKVM_TEST_DRIVER = False
    refused = admin_api.post(HOSTS, {"name": "demo2", "transport": "test", "path": world})
    assert refused.status_code == 400 and "WEBKVM_TEST_DRIVER" in refused.json()["fields"]["transport"][0]
    assert not Host.objects.filter(name="demo2").exists() and libvirt_opens == []


def test_an_unreachable_host_answers_quickly_with_the_reason(admin_api: TokenClient, test_host: Host) -> None:
    Host.objects.create(name="dead", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    began = time.monotonic()
    detail = admin_api.get(HOSTS + "dead/")
    assert time.monotonic() - began < 5
    assert detail.status_code == 200, detail.content
    status = detail.json()["status"]
    assert not status["reachable"] and "connection refused" in status["reason"], status
    assert detail.json()["summary"] is None and detail.json()["name"] == "dead"
    tested = admin_api.post(HOSTS + "dead/test/")
    assert tested.status_code == 503 and tested.json()["code"] == "host_unavailable"
    assert AuditEvent.objects.get(action="host.test").result == "failed"
    assert admin_api.get(HOSTS + "dead/capabilities/").status_code == 503


def test_capabilities_are_the_create_forms_offer(admin_api: TokenClient, test_host: Host) -> None:
    offer = admin_api.get(HOSTS + "testhost/capabilities/").json()
    assert offer["networks"] == ["lan"] and [p["name"] for p in offer["pools"]] == ["images"]
    assert offer["cpu_modes"] and offer["max_vcpus"] > 0 and offer["memory_mib"] == 16384
    names = services.call(test_host, lambda conn: [n.name() for n in conn.listAllNetworks(0)])
    assert offer["networks"] == names


def test_open_and_close_to_users(admin_api: TokenClient, test_host: Host) -> None:
    shares = HOSTS + "testhost/shares/"
    missing = admin_api.post(shares, {"kind": "network", "name": "no-such-net"})
    assert missing.status_code == 400 and "name" in missing.json()["fields"]
    opened = admin_api.post(shares, {"kind": "network", "name": "lan"})
    assert opened.status_code == 201, opened.content
    assert SharedResource.objects.filter(host=test_host, kind="network", name="lan").exists()
    _record("host.share", "network lan")
    again = admin_api.post(shares, {"kind": "network", "name": "lan"})
    assert again.status_code == 400 and "already open" in again.json()["fields"]["name"][0]
    listed = admin_api.get(shares).json()
    assert [(s["kind"], s["name"]) for s in listed] == [("network", "lan")]
    closed = admin_api.call("DELETE", listed[0]["url"].removeprefix("http://testserver"))
    assert closed.status_code == 200 and not SharedResource.objects.exists()
    assert closed.json()["message"].startswith("lan (virtual network) is closed to users of testhost")
    _record("host.unshare", "network lan")


def test_confirm_a_new_machine(admin_api: TokenClient, test_host: Host) -> None:
    new = "99999999-9999-4999-8999-999999999999"
    Host.objects.filter(pk=test_host.pk).update(hypervisor_uuid="old-machine", unconfirmed_uuid=new)
    assert admin_api.get(HOSTS).json()["results"][0]["grants_suspended"] is True  # the list asks no host
    url = HOSTS + "testhost/machine/confirm/"
    done = admin_api.post(url)
    assert done.status_code == 200 and done.json()["confirmed"] and done.json()["hypervisor_uuid"] == new
    assert Host.objects.filter(pk=test_host.pk, hypervisor_uuid=new, unconfirmed_uuid="").exists()
    _record("host.confirm_machine", "testhost")
    nothing = admin_api.post(url).json()
    assert nothing["confirmed"] is False and "nothing to confirm" in nothing["message"]
    assert AuditEvent.objects.filter(action="host.confirm_machine").count() == 1


# --- the transports not proven above: local (the unix socket) and tls (a PKI folder) -------------------------

@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The URIs the panel opens. qemu:///system is sent to a socket nobody listens on (libvirt's `socket=`): a unit
    test must not reach the lab's daemon on the real one."""
    uris: list[str] = []
    real = libvirt.open

    def open_(uri: str) -> Any:
        uris.append(uri)
        return real(uri + f"?socket={tmp_path}/libvirt-sock" if uri == "qemu:///system" else uri)

    monkeypatch.setattr(libvirt, "open", open_)
    return uris


def test_add_a_local_host(admin_api: TokenClient, opened: list[str], tmp_path: Path) -> None:
    added = admin_api.post(HOSTS, {"name": "here", "transport": "local", "path": "system"})
    assert added.status_code == 201, added.content
    assert added.json()["uri"] == "qemu:///system" and added.json()["hostname"] == ""
    assert Host.objects.filter(name="here", transport="local", path="system").exists()
    _record("host.create", "here")
    detail = admin_api.get(HOSTS + "here/")
    assert detail.status_code == 200, detail.content
    status = detail.json()["status"]
    assert not status["reachable"] and f"{tmp_path}/libvirt-sock" in status["reason"], status
    assert detail.json()["summary"] is None
    tested = admin_api.post(HOSTS + "here/test/")
    assert tested.status_code == 503 and tested.json()["code"] == "host_unavailable"
    assert opened and set(opened) == {"qemu:///system"}, "the local socket, and nothing else"


def test_add_a_tls_host_with_its_pki_folder(admin_api: TokenClient, places: dict[str, str],
                                            opened: list[str]) -> None:
    folder = f"{places['pki']}/good"
    added = admin_api.post(HOSTS, {"name": "secure", "transport": "tls", "hostname": "127.0.0.1", "port": 1,
                                   "path": "system", "tls_pkipath": folder})
    assert added.status_code == 201, added.content
    assert added.json()["tls_pkipath"] == folder and added.json()["uri"] == "qemu+tls://127.0.0.1:1/system"
    assert Host.objects.get(name="secure").tls_pkipath == folder
    _record("host.create", "secure")
    detail = admin_api.get(HOSTS + "secure/")
    assert detail.status_code == 200 and not detail.json()["status"]["reachable"], detail.content
    assert detail.json()["status"]["reason"] and hostile.SECRET not in detail.content.decode()
    assert opened == [f"qemu+tls://127.0.0.1:1/system?pkipath={folder}"], "libvirt reads the certificates there"
    outside = admin_api.post(HOSTS, {"name": "leaky", "transport": "tls", "hostname": "127.0.0.1", "path": "system",
                                     "tls_pkipath": places["outside"]})
    assert outside.status_code == 400 and "tls_pkipath" in outside.json()["fields"], outside.content
    assert not Host.objects.filter(name="leaky").exists()


def test_the_panels_ssh_key_as_its_page_shows_it(admin_api: TokenClient, admin_client: Any,
                                                  user_client: Any) -> None:
    answered = admin_api.get(HOSTS + "ssh-key/")
    assert answered.status_code == 200, answered.content
    key = answered.json()["public_key"]
    assert key.startswith("ssh-") and key in admin_client.get("/hosts/ssh-key/").content.decode()
    refused = user_client.get(HOSTS + "ssh-key/")  # an admins' resource naming no object: 403
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
