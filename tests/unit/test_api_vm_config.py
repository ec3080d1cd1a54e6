"""A VM's configuration through the API (api/vm_config.py), with personal tokens: each operation once, with
libvirt as the witness where the test driver can do it (definitions: resize, boot, VNC, rename, title, XML);
device hot-plug it cannot do, so those answer a clear 409 and change nothing, and then run against the
recorders of tests/unit/test_vm_devices.py. The pages' bad-input tables run again through the API."""

from __future__ import annotations

from typing import Any

import libvirt
import pytest

from hosts import services
from hosts.models import Host
from instances.models import DomainDefinition
from tests.conftest import DB_01_UUID, WEB_01_UUID
from tests.unit import test_api_access, test_vm_devices
from tests.unit.test_api_access import TokenClient
from tests.unit.test_vm_config import BAD_BOOT, BAD_RESIZE, BAD_VNC, config_xml, define_vm, live_xml, vnc_of
from tests.unit.test_vm_devices import (
    BAD_ATTACH,
    BAD_NIC,
    BOX_UUID,
    GOOD_ATTACH,
    GOOD_NIC,
    Recorder,
    add_volume,
    define_box,
    volumes,
    xml_of,
)
from virt.errors import Busy
from virt.xml import Disk, Domain, Interface
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db
callers = test_api_access.callers  # a token per persona (fixture)
recorded = test_vm_devices.recorded  # recorders in place of the device calls the test driver lacks (fixture)
Callers = dict[str, TokenClient]
BOX_MAC = "52:54:00:aa:bb:cc"


def api(uuid: str = WEB_01_UUID) -> str:
    return f"/api/v1/vms/testhost/{uuid}/"


def record(action: str) -> AuditEvent:
    """The one audit record of an operation, made through the API with the caller's token."""
    found = AuditEvent.objects.get(action=action)
    assert "through the API, token " in found.detail, found.detail
    return found


def refused_with(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def field_error(response: Any, field: str) -> None:
    body = refused_with(response, 400, "invalid")
    wanted = "non_field_errors" if field == "__all__" else field
    assert wanted in body["fields"], body


def halt(host: Host, uuid: str) -> None:
    services.call(host, lambda conn: conn.lookupByUUIDString(uuid).destroy())


# ---- CD-ROM drives and NICs: hot-plug the test driver lacks ------------------------------------------

# (operation, method, path under the VM, body, recorder call, box running)
DEVICE_OPS = [
    ("vm.cdrom.insert", "PUT", "cdroms/hdc/media/", {"iso": "images/debian-12.iso"}, "updateDeviceFlags", True),
    ("vm.cdrom.eject", "DELETE", "cdroms/hdc/media/", None, "updateDeviceFlags", True),
    ("vm.cdrom.add", "POST", "cdroms/", {"iso": "images/debian-12.iso"}, "attachDeviceFlags", False),
    ("vm.cdrom.remove", "DELETE", "cdroms/hdc/", None, "detachDeviceFlags", False),
    ("vm.nic.add", "POST", "nics/", {"source": "network:lan", "model": "e1000"}, "attachDeviceFlags", True),
    ("vm.nic.remove", "DELETE", f"nics/{BOX_MAC}/", None, "detachDeviceFlags", True),
    ("vm.nic.source", "PATCH", f"nics/{BOX_MAC}/", {"source": "network:lan"}, "updateDeviceFlags", True),
    ("vm.nic.link", "PUT", f"nics/{BOX_MAC}/link/", {"up": False}, "updateDeviceFlags", True),
]


def _box(host: Host, running: bool) -> None:
    add_volume(host, "debian-12.iso")
    define_box(host, running=running)


@pytest.mark.parametrize(("op", "method", "path", "body", "call", "running"), DEVICE_OPS,
                         ids=[op[0] for op in DEVICE_OPS])
def test_device_changes_the_test_driver_cannot_make_are_a_409(callers: Callers, test_host: Host, op: str,
                                                              method: str, path: str, body: Any, call: str,
                                                              running: bool) -> None:
    _box(test_host, running)
    before = xml_of(test_host, BOX_UUID), xml_of(test_host, BOX_UUID, libvirt.VIR_DOMAIN_XML_INACTIVE)
    answer = refused_with(callers["admin"].call(method, api(BOX_UUID) + path, body), 409, "not_done")
    assert "not supported" in answer["message"]  # libvirt's words: the caller is an admin
    assert (xml_of(test_host, BOX_UUID), xml_of(test_host, BOX_UUID, libvirt.VIR_DOMAIN_XML_INACTIVE)) == before
    assert record(op).result == "failed"


@pytest.mark.parametrize(("op", "method", "path", "body", "call", "running"), DEVICE_OPS,
                         ids=[op[0] for op in DEVICE_OPS])
def test_device_changes_reach_libvirt_as_the_pages_make_them(callers: Callers, test_host: Host,
                                                             recorded: dict[str, Recorder], op: str, method: str,
                                                             path: str, body: Any, call: str,
                                                             running: bool) -> None:
    _box(test_host, running)
    response = callers["admin"].call(method, api(BOX_UUID) + path, body)
    assert response.status_code == 200, response.content
    assert response.json()["message"].startswith("box: ")
    xml, _flags = recorded[call].calls[-1]
    if op.startswith("vm.cdrom"):
        assert Disk.from_xml(xml).target_dev in ("hdc", "hda")
    else:
        nic = Interface.from_xml(xml)
        assert (nic.source_network, nic.model if op == "vm.nic.add" else "") == (
            "lan", "e1000" if op == "vm.nic.add" else "")
        assert op != "vm.nic.link" or nic.link_state == "down"
    event = record(op)
    assert event.result == "ok" and event.object_name == "box" and "token admin-token" in event.detail


def test_device_lists_and_states_the_page_refuses(callers: Callers, test_host: Host) -> None:
    _box(test_host, running=True)
    nics = callers["admin"].get(api(BOX_UUID) + "nics/")
    assert nics.status_code == 200
    assert [(n["mac"], n["source"], n["link"]) for n in nics.json()] == [(BOX_MAC, "lan", "up")]
    added = callers["admin"].post(api(BOX_UUID) + "cdroms/", {})
    assert "box is running: shut it off to" in refused_with(added, 409, "invalid_state")["message"]
    link = callers["admin"].call("PUT", api(BOX_UUID) + f"nics/{BOX_MAC}/link/", {"up": "sideways"})
    field_error(link, "up")
    field_error(callers["admin"].call("PUT", api(BOX_UUID) + "cdroms/hdc/media/", {"iso": "../../etc/passwd"}),
                "iso")
    assert list(AuditEvent.objects.filter(action="vm.cdrom.add").values_list("result", flat=True)) == ["failed"]
    assert not AuditEvent.objects.exclude(action="vm.cdrom.add").filter(action__startswith="vm.").exists()


# ---- the forms' bad-input tables ---------------------------------------------------------------------

@pytest.mark.parametrize(("field", "change"), BAD_ATTACH, ids=[f"{f}={next(iter(c.values()))[:12]}"
                                                               for f, c in BAD_ATTACH])
def test_bad_attach_input_is_a_400_on_its_field(callers: Callers, test_host: Host, recorded: dict[str, Recorder],
                                                field: str, change: dict[str, str]) -> None:
    add_volume(test_host, "taken.qcow2")
    before = xml_of(test_host), volumes(test_host)
    field_error(callers["admin"].post(api() + "disks/", {**GOOD_ATTACH, **change}), field)
    assert (xml_of(test_host), volumes(test_host)) == before
    assert not recorded["attachDeviceFlags"].calls and not AuditEvent.objects.exists()


@pytest.mark.parametrize(("field", "change"), BAD_NIC, ids=[f"{f}={next(iter(c.values()))[:12]}"
                                                            for f, c in BAD_NIC])
def test_bad_nic_input_is_a_400_on_its_field(callers: Callers, test_host: Host, recorded: dict[str, Recorder],
                                             field: str, change: dict[str, str]) -> None:
    field_error(callers["admin"].post(api() + "nics/", {**GOOD_NIC, **change}), field)
    assert not recorded["attachDeviceFlags"].calls and not AuditEvent.objects.exists()


@pytest.mark.parametrize(("field", "data"), BAD_RESIZE)
def test_bad_resize_input_is_a_400_on_its_field(callers: Callers, test_host: Host, field: str,
                                                data: dict[str, str]) -> None:
    before = config_xml(test_host, WEB_01_UUID), live_xml(test_host, WEB_01_UUID)
    body = {"vcpus": "2", "max_vcpus": "2", "memory_mib": "1024", "max_memory_mib": "1024", **data}
    field_error(callers["user-change"].call("PUT", api() + "resize/", body), field)
    assert (config_xml(test_host, WEB_01_UUID), live_xml(test_host, WEB_01_UUID)) == before
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(("field", "data"), BAD_BOOT)
def test_bad_boot_input_is_a_400_on_its_field(callers: Callers, test_host: Host, field: str,
                                              data: dict[str, str]) -> None:
    vm = define_vm(test_host, "bootbad")
    before = config_xml(test_host, vm)
    field_error(callers["admin"].call("PUT", api(vm) + "boot/", {**data, "order_disk-x/../y": "1"}), field)
    assert config_xml(test_host, vm) == before and not AuditEvent.objects.exists()


@pytest.mark.parametrize(("field", "data"), BAD_VNC)
def test_bad_vnc_input_is_a_400_on_its_field(callers: Callers, test_host: Host, field: str,
                                             data: dict[str, str]) -> None:
    before = config_xml(test_host, WEB_01_UUID)
    response = callers["admin"].call("PUT", api() + "vnc/",
                                     {"password_action": "keep", "keymap": "", "listen": "127.0.0.1", **data})
    field_error(response, field)
    if data.get("password"):
        assert data["password"] not in response.content.decode()  # never echoed back
    assert config_xml(test_host, WEB_01_UUID) == before and not AuditEvent.objects.exists()


# ---- resize, boot, VNC: libvirt's definitions as the witness -----------------------------------------

def test_resize_reads_and_changes_the_sizes(callers: Callers, test_host: Host) -> None:
    shown = callers["user-change"].get(api() + "resize/").json()
    assert (shown["vcpus"], shown["memory_mib"], shown["running"]["memory_mib"]) == (2, 1024, 1024)
    # Fields left out keep their values: only the memory changes.
    done = callers["user-change"].call("PUT", api() + "resize/", {"memory_mib": 512, "max_memory_mib": 2048})
    assert done.status_code == 200, done.content
    assert "Waits for the next boot: maximum memory." in done.json()["message"]
    assert done.json()["next_boot"] == ["maximum memory"]
    config = Domain.from_xml(config_xml(test_host, WEB_01_UUID))
    assert (config.vcpus, config.current_memory, config.memory) == (2, 512 * 1024, 2048 * 1024)
    event = record("vm.resize")
    assert event.result == "ok" and "memory 1024/1024 MiB -> 512/2048 MiB" in event.detail
    assert event.username == "api-change" and "token user-change-token" in event.detail


def test_a_busy_vm_answers_409_and_changes_nothing(callers: Callers, test_host: Host,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(*args: Any, **kwargs: Any) -> Any:
        raise Busy("web-01 is busy with another action.")

    before = config_xml(test_host, WEB_01_UUID)
    monkeypatch.setattr(services, "call_locked", busy)
    for path, body in (("resize/", {"vcpus": 1}), ("vnc/", {"keymap": "de"}), ("name/", {"name": "x"})):
        refused_with(callers["user-change"].call("PUT", api() + path, body), 409, "vm_busy")
    assert config_xml(test_host, WEB_01_UUID) == before


def test_boot_reads_and_sets_order_menu_and_autostart(callers: Callers, test_host: Host) -> None:
    vm = define_vm(test_host, "bootvm")
    shown = callers["admin"].get(api(vm) + "boot/").json()
    assert [(d["field"], d["order"]) for d in shown["devices"]] == [
        ("order_disk-vda", 1), ("order_disk-hdc", None), ("order_nic-525400123456", None)]
    done = callers["admin"].call("PUT", api(vm) + "boot/", {"order_nic-525400123456": 1, "order_disk-hdc": 2,
                                                            "bootmenu": True, "autostart": True})
    assert done.status_code == 200 and done.json()["message"].endswith("boot order and menu saved. Autostart changed.")
    config = Domain.from_xml(config_xml(test_host, vm))
    assert [d.boot_order for d in config.disks] == [None, 2] and config.interfaces[0].boot_order == 1
    assert config.os.bootmenu is True
    assert services.call(test_host, lambda conn: conn.lookupByUUIDString(vm).autostart()) == 1
    assert record("vm.boot").result == "ok"


def test_vnc_settings_and_the_rule_that_users_set_only_the_keymap(callers: Callers, test_host: Host) -> None:
    url = api() + "vnc/"
    done = callers["admin"].call("PUT", url, {"password_action": "set", "password": "Zq7#pw!x", "keymap": "de"})
    assert done.status_code == 200 and "Zq7" not in done.content.decode()
    saved = vnc_of(config_xml(test_host, WEB_01_UUID))
    assert (saved.passwd, saved.keymap, saved.listen) == ("Zq7#pw!x", "de", "127.0.0.1")
    event = record("vm.vnc")
    assert "password changed" in event.detail and "Zq7" not in event.detail
    shown = callers["user-change"].get(url).json()
    assert (shown["has_password"], shown["keymap"], shown["listen"]) == (True, "de", "127.0.0.1")
    assert "Zq7" not in str(shown)

    before = config_xml(test_host, WEB_01_UUID)
    for body in ({"keymap": "fr", "listen": "0.0.0.0"}, {"keymap": "fr", "password_action": "clear"},
                 {"password": "x"}):
        refused = callers["user-change"].call("PUT", url, body)
        field_error(refused, "__all__")
        assert "Only admins set the VNC password and listen address." in str(refused.json()["fields"])
    assert config_xml(test_host, WEB_01_UUID) == before
    keymap = callers["user-change"].call("PUT", url, {"keymap": "fr"})
    assert keymap.status_code == 200, keymap.content
    saved = vnc_of(config_xml(test_host, WEB_01_UUID))
    assert (saved.passwd, saved.keymap, saved.listen) == ("Zq7#pw!x", "fr", "127.0.0.1")
    assert list(AuditEvent.objects.filter(action="vm.vnc").order_by("id").values_list("username", flat=True)) == [
        "api-admin", "api-change"]
    refused_with(callers["admin"].call("PUT", api(DB_01_UUID) + "vnc/", {"keymap": "de"}), 409,
                 "invalid_state")  # db-01 has no VNC display


# ---- name, title and description ----------------------------------------------------------------------

def test_rename_and_describe(callers: Callers, test_host: Host) -> None:
    vm = define_vm(test_host, "oldname")
    field_error(callers["admin"].call("PUT", api(vm) + "name/", {"name": "bad name/"}), "name")
    field_error(callers["admin"].call("PUT", api(vm) + "name/", {"name": 7}), "name")
    done = callers["admin"].call("PUT", api(vm) + "name/", {"name": "newname"})
    assert done.status_code == 200 and done.json()["message"] == "oldname: renamed to newname."
    assert services.call(test_host, lambda conn: conn.lookupByUUIDString(vm).name()) == "newname"
    renames = AuditEvent.objects.filter(action="vm.rename").order_by("id")
    assert list(renames.values_list("result", flat=True)) == ["failed", "ok"]
    running = callers["user-change"].call("PUT", api() + "name/", {"name": "web-02"})
    refused_with(running, 409, "invalid_state")

    field_error(callers["user-change"].call("PUT", api() + "description/", {"title": "two\nlines"}), "title")
    done = callers["user-change"].call("PUT", api() + "description/", {"title": "Web", "description": "front end"})
    assert done.status_code == 200, done.content
    meta = services.call(test_host, lambda conn: (
        conn.lookupByUUIDString(WEB_01_UUID).metadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None, 0),
        conn.lookupByUUIDString(WEB_01_UUID).metadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None, 0)))
    assert meta == ("Web", "front end")
    assert AuditEvent.objects.filter(action="vm.describe", result="ok", username="api-change").count() == 1


# ---- the raw XML (admins) -------------------------------------------------------------------------------

def test_xml_edit_stale_invalid_history_and_rollback(callers: Callers, test_host: Host) -> None:
    admin, url = callers["admin"], api() + "xml/"
    opened = admin.get(url).json()
    assert opened["name"] == "web-01" and opened["active"] and opened["history_count"] == 0
    edited = opened["xml"].replace("<vcpu placement='static'>2</vcpu>", "<vcpu placement='static'>3</vcpu>")
    done = admin.call("PUT", url, {"xml": edited, "version": opened["version"]})
    assert done.status_code == 200, done.content
    saved = done.json()
    assert "web-01: definition saved" in saved["message"] and saved["version"] != opened["version"]
    assert "<vcpu placement='static'>3</vcpu>" in config_xml(test_host, WEB_01_UUID)
    event = record("vm.xml.edit")
    assert event.result == "ok" and "token admin-token" in event.detail

    # The version it was opened at is stale now: 409, and libvirt's definition stays as it is.
    before = config_xml(test_host, WEB_01_UUID)
    again = edited.replace(">3</vcpu>", ">4</vcpu>")
    refused_with(admin.call("PUT", url, {"xml": again, "version": opened["version"]}), 409, "stale")
    assert config_xml(test_host, WEB_01_UUID) == before
    broken = admin.call("PUT", url, {"xml": again.replace("</vcpu>", "</vcpux>", 1), "version": saved["version"]})
    field_error(broken, "xml")
    assert "(line " in broken.json()["fields"]["xml"][0]
    field_error(admin.call("PUT", url, {"xml": again}), "version")
    assert config_xml(test_host, WEB_01_UUID) == before
    assert list(AuditEvent.objects.filter(action="vm.xml.edit").order_by("id").values_list("result", flat=True)) == [
        "ok", "failed", "failed"]  # the stale and the invalid edits: refused, audited

    history = admin.get(url + "history/").json()
    assert history["count"] == 1 and history["version"] == saved["version"]
    entry = history["results"][0]
    assert entry["id"] == saved["history_id"] and "+  <vcpu placement='static'>3</vcpu>" in entry["diff"]
    rollback = url + "rollback/"
    refused_with(admin.post(rollback, {"history_id": entry["id"], "version": opened["version"]}), 409, "stale")
    field_error(admin.post(rollback, {"history_id": 999, "version": saved["version"]}), "history_id")
    back = admin.post(rollback, {"history_id": entry["id"], "version": saved["version"]})
    assert back.status_code == 200 and "Rolled back to the version of" in back.json()["message"]
    assert "<vcpu placement='static'>2</vcpu>" in config_xml(test_host, WEB_01_UUID)
    assert list(AuditEvent.objects.filter(action="vm.xml.rollback").order_by("id").values_list("result", flat=True)) \
        == ["failed", "ok"]  # the stale one refused
    assert DomainDefinition.objects.count() == 2


def test_an_oversized_xml_body_is_413_before_it_is_read(callers: Callers, test_host: Host) -> None:
    before = config_xml(test_host, WEB_01_UUID)
    huge = "x" * (3 << 20)
    refused_with(callers["admin"].call("PUT", api() + "xml/", {"xml": huge, "version": "v"}), 413, "too_large")
    assert config_xml(test_host, WEB_01_UUID) == before
    assert "over the limit" in AuditEvent.objects.get(action="vm.xml.edit").detail


# ---- what a grant on a VM does not open: the rules for users who are not admins (issue 14, finding 4) ---------

TYPED_MAC = "52:54:00:de:ad:01"


def _not_used(response: Any, recorded: dict[str, Recorder]) -> None:
    """A typed MAC: refused on its field, or ignored (the panel generates one)."""
    if response.status_code == 400:
        field_error(response, "mac")
        assert not recorded["attachDeviceFlags"].calls
        return
    assert response.status_code == 200, response.content
    nic = Interface.from_xml(recorded["attachDeviceFlags"].calls[-1][0])
    assert nic.source_network == "lan" and nic.mac and nic.mac != TYPED_MAC


# (case, persona, method, path under the VM, VM, body, what it answers: a field with its 400, or a check)
USER_RULES = [
    ("NIC on a closed network", "user-change", "POST", "nics/", BOX_UUID,
     {"source": "network:backnet", "model": "virtio"}, "source"),
    ("NIC on a closed bridge", "user-change", "POST", "nics/", BOX_UUID,
     {"source": "bridge:br-closed", "model": "virtio"}, "source"),
    ("NIC moved to a closed network", "user-change", "PATCH", f"nics/{BOX_MAC}/", BOX_UUID,
     {"source": "network:backnet"}, "source"),
    ("NIC with a typed MAC", "user-change", "POST", "nics/", BOX_UUID,
     {"source": "network:lan", "model": "virtio", "mac": TYPED_MAC}, _not_used),
    ("volume in a closed pool", "user-change", "POST", "disks/", BOX_UUID, {**GOOD_ATTACH, "pool": "vault"}, "pool"),
    ("volume in the ISO library", "user-change", "POST", "disks/", BOX_UUID, {**GOOD_ATTACH, "pool": "isos"}, "pool"),
    ("an existing volume (another tenant's)", "user-change", "POST", "disks/", BOX_UUID,
     {**GOOD_ATTACH, "source": "existing", "volume": "images/tenant-b-data.qcow2"}, "source"),
    ("an .iso outside the ISO library", "user-change", "PUT", "cdroms/hdc/media/", BOX_UUID,
     {"iso": "images/payroll.iso"}, "iso"),
    ("an ISO of a closed pool", "user-change", "PUT", "cdroms/hdc/media/", BOX_UUID,
     {"iso": "vault/vault-installer.iso"}, "iso"),
    ("VNC listen address", "user-change", "PUT", "vnc/", WEB_01_UUID, {"keymap": "fr", "listen": "0.0.0.0"}, "__all__"),
    ("VNC password set", "user-change", "PUT", "vnc/", WEB_01_UUID,
     {"password_action": "set", "password": "Zq7#pw!x"}, "__all__"),
    ("VNC password cleared", "user-change", "PUT", "vnc/", WEB_01_UUID, {"password_action": "clear"}, "__all__"),
]


@pytest.fixture
def tenant_world(callers: Callers, test_host: Host) -> None:
    """tests/tenants.py's world (pools images and isos, network lan opened; vault and backnet closed), the VM
    box, bridges br-open (opened) and br-closed, and the change grant on box for the change persona."""
    from django.contrib.auth import get_user_model

    from tests.tenants import furnish
    from tests.unit.test_sharing import host_bridges
    from webkvm.models import SharedKind, SharedResource, VMGrant

    furnish(test_host)
    define_box(test_host)
    host_bridges(test_host, "br-open", "br-closed")
    SharedResource.objects.create(host=test_host, kind=SharedKind.BRIDGE, name="br-open")
    VMGrant.objects.create(user=get_user_model().objects.get(username="api-change"), host=test_host,
                           vm_uuid=BOX_UUID, vm_name="box", can_change=True)


@pytest.mark.parametrize(("case", "persona", "method", "path", "vm", "body", "answer"), USER_RULES,
                         ids=[r[0] for r in USER_RULES])
def test_a_grant_opens_nothing_else_of_the_host_through_the_api(callers: Callers, test_host: Host,
                                                                 recorded: dict[str, Recorder], tenant_world: None,
                                                                 case: str, persona: str, method: str, path: str,
                                                                 vm: str, body: dict[str, Any], answer: Any) -> None:
    before = config_xml(test_host, vm), volumes(test_host)
    response = callers[persona].call(method, api(vm) + path, body)
    if callable(answer):
        answer(response, recorded)
        return
    field_error(response, answer)
    assert not any(r.calls for r in recorded.values())
    assert (config_xml(test_host, vm), volumes(test_host)) == before
    assert "Zq7" not in response.content.decode()


def test_the_same_requests_work_for_admins_and_in_what_was_opened(callers: Callers, test_host: Host,
                                                                 recorded: dict[str, Recorder],
                                                                 tenant_world: None) -> None:
    """The rows above are refused for what they name, not for how they are asked."""
    admin, user = callers["admin"], callers["user-change"]
    for caller, source in ((admin, "network:backnet"), (user, "bridge:br-open"), (user, "network:lan")):
        added = caller.post(api(BOX_UUID) + "nics/", {"source": source, "model": "virtio"})
        assert added.status_code == 200, (source, added.content)
    assert admin.call("PUT", api(BOX_UUID) + "cdroms/hdc/media/", {"iso": "images/payroll.iso"}).status_code == 200
    assert user.call("PUT", api(BOX_UUID) + "cdroms/hdc/media/", {"iso": "isos/debian-12.iso"}).status_code == 200
    assert admin.call("PUT", api() + "vnc/", {"keymap": "fr", "listen": "0.0.0.0"}).status_code == 200
