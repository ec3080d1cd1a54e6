"""Migration without a hypervisor that migrates: the pre-flight rules on plain facts, the evacuation
plan, the form, and who may open which page (libvirt's test driver has no migration; the real thing is
tested in tests/integration/test_migrate_lab.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from instances.views.migrate import MigrateForm
from tests.conftest import PASSWORD, WEB_01_UUID
from virt.migrate import spread
from virt.migrate_checks import DiskFact, Endpoint, Options, TargetFacts, VMFacts, judge
from virt.uri import ConnectionSpec, Transport
from webkvm.models import AuditEvent, VMGrant

GiB = 1 << 30
WORLD = """<?xml version="1.0"?>
<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active>
<mhz>2000</mhz><model>x86_64</model></cpu><memory>8388608</memory>{domains}</node>
"""
# A different VM that has web-01's name.
TWIN = """<domain type="test"><name>web-01</name><uuid>99999999-9999-4999-8999-999999999999</uuid>
<memory unit="MiB">64</memory><vcpu>1</vcpu><os><type arch="x86_64">hvm</type></os></domain>"""


def jobs_finished(timeout: float = 20) -> None:
    """Wait for the migration threads a test started (they write audit records as they end)."""
    end = time.monotonic() + timeout
    while any(t.name.startswith("migrate") for t in threading.enumerate()):
        assert time.monotonic() < end, "a migration thread is still running"
        time.sleep(0.05)


def vm(**changes: Any) -> VMFacts:
    values: dict[str, Any] = dict(
        uuid="11111111-1111-4111-8111-111111111111", name="web-01", active=True, paused=False, persistent=True,
        autostart=False, memory_kib=1024 * 1024, arch="x86_64", virt_type="kvm", cpu_xml=None,
        host_passthrough=False, host_cpu_xml=None, host_uuid="aaaaaaaa-0000-4000-8000-000000000001", disks=(),
        networks=(), bridges=(), snapshots=0, managed_save=False, nvram=False)
    values.update(changes)
    return VMFacts(**values)


def target(**changes: Any) -> TargetFacts:
    values: dict[str, Any] = dict(
        host_uuid="bbbbbbbb-0000-4000-8000-000000000002", free_memory=8 * GiB, same_name_uuid=None,
        same_uuid_active=None, networks={}, bridges={}, cpu_problem=None, cpu_unknown=None, visible=frozenset(),
        pools_by_path={}, pools=frozenset())
    values.update(changes)
    return TargetFacts(**values)


def codes(findings: list, blocking: bool = True) -> list[str]:
    return [f.code for f in findings if f.blocking == blocking]


DISK = DiskFact(dev="vda", device="disk", path="/var/lib/libvirt/images/web.qcow2", format="qcow2", readonly=False,
                capacity=GiB)
ISO = DiskFact(dev="sda", device="cdrom", path="/isos/debian.iso", format="raw", readonly=True, capacity=None)


@pytest.mark.parametrize(("facts", "tgt", "opts", "expected"), [
    (vm(), target(), Options(), []),
    (vm(), target(host_uuid="aaaaaaaa-0000-4000-8000-000000000001"), Options(), ["same-host"]),
    (vm(), target(cpu_problem="Host CPU does not provide required features: avx512f"), Options(), ["cpu"]),
    (vm(networks=("lan",)), target(), Options(), ["network"]),
    (vm(networks=("lan",)), target(networks={"lan": False}), Options(), ["network"]),
    (vm(networks=("lan",)), target(networks={"lan": True}), Options(), []),
    (vm(bridges=("br0",)), target(bridges={"br0": False}), Options(), ["bridge"]),
    (vm(disks=(DISK,)), target(), Options(), ["storage"]),
    (vm(disks=(DISK,)), target(visible=frozenset({DISK.path})), Options(), []),
    (vm(disks=(DISK,)), target(), Options(copy_storage=True), ["pool"]),
    (vm(disks=(DISK,)), target(pools_by_path={"/var/lib/libvirt/images": "default"}), Options(copy_storage=True), []),
    (vm(disks=(DISK,)), target(pools_by_path={"/var/lib/libvirt/images": "default"}, visible=frozenset({DISK.path})),
     Options(copy_storage=True), ["storage"]),
    (vm(disks=(ISO,)), target(), Options(copy_storage=True), ["storage"]),  # read-only media are never copied
    (vm(), target(free_memory=512 << 20), Options(), ["memory"]),
    (vm(), target(same_name_uuid="cccccccc-0000-4000-8000-000000000003"), Options(), ["name"]),
    (vm(), target(same_uuid_active=True), Options(), ["name"]),
    (vm(snapshots=2), target(), Options(), ["state"]),
    (vm(active=False, managed_save=True), target(), Options(), ["state"]),
    (vm(), target(), Options(peer_to_peer=True), []),
])
def test_preflight_rules(facts: VMFacts, tgt: TargetFacts, opts: Options, expected: list[str]) -> None:
    found = judge(facts, tgt, "kvm-01", "kvm-02", opts, "qemu+tcp://kvm-02/system")
    assert codes(found) == expected
    assert all(f.problem and (f.advice or not f.blocking) for f in found)  # every problem says what to do


def test_preflight_notes_and_offline_leniency() -> None:
    # Offline: memory and a stopped network do not block (it is not started now).
    found = judge(vm(active=False, networks=("lan",)), target(free_memory=1, networks={"lan": False}), "a", "b",
                  Options())
    assert codes(found) == [] and set(codes(found, blocking=False)) == {"network", "memory"}
    # Peer-to-peer to a target the panel reaches on loopback would connect the source to itself.
    assert codes(judge(vm(), target(), "a", "b", Options(peer_to_peer=True), None)) == ["p2p"]
    assert codes(judge(vm(), target(), "a", "b", Options(tunnelled=True), None)) == ["p2p"]
    # Unknown identities and an inactive copy on the target are said, not blocking.
    found = judge(vm(host_uuid=None), target(same_uuid_active=False), "a", "b", Options())
    assert codes(found) == [] and codes(found, blocking=False) == ["same-host", "name"]
    found = judge(vm(snapshots=1, active=False), target(), "a", "b", Options(keep_source=True))
    assert codes(found) == []


def test_peer_uri_and_descriptions() -> None:
    def peer(transport: Transport, hostname: str = "", **extra: Any) -> str | None:
        return Endpoint("h", ConnectionSpec(transport=transport, hostname=hostname, **extra)).peer_uri

    assert peer(Transport.LOCAL) is None
    assert peer(Transport.TCP, "127.0.0.1") is None and peer(Transport.TCP, "localhost") is None
    assert peer(Transport.TCP, "10.0.0.2", port=16509) == "qemu+tcp://10.0.0.2:16509/system"
    # Panel-side files never reach the other host's libvirtd.
    assert peer(Transport.SSH, "kvm2.example", username="root", ssh_keyfile="/srv/key") == \
        "qemu+ssh://root@kvm2.example/system"
    text = Options(copy_storage=True, tunnelled=True, max_downtime_ms=300, bandwidth_mib=50).describe(True)
    assert text == "live, copy storage, peer-to-peer, tunnelled, max downtime 300 ms, bandwidth 50 MiB/s"
    assert Options(keep_source=True).describe(False) == "offline, keep definition on source"


def test_spread_fills_the_host_with_most_free_memory_first() -> None:
    plan = spread([("a", 4 * GiB), ("b", 1 * GiB), ("c", 3 * GiB)], {"kvm-02": 6 * GiB, "kvm-03": 11 * GiB // 2})
    assert plan == {"a": "kvm-02", "c": "kvm-03", "b": "kvm-03"}
    assert spread([("a", GiB)], {}) == {}


@pytest.mark.parametrize(("data", "error_field"), [
    ({"target": "b", "migration_address": "127.0.0.1"}, "migration_address"),
    ({"target": "b", "migration_address": "localhost"}, "migration_address"),
    ({"target": "b", "migration_address": "evil/system?command=x"}, "migration_address"),
    ({"target": "b", "tunnelled": "on", "migration_address": "10.0.0.2"}, "migration_address"),
    ({"target": "b", "bandwidth_mib": "-1"}, "bandwidth_mib"),
    ({"target": "b", "max_downtime_ms": "99999999"}, "max_downtime_ms"),
    ({"target": "nope"}, "target"),
])
def test_form_refuses_bad_input(data: dict[str, str], error_field: str) -> None:
    form = MigrateForm(["b"], data)
    assert not form.is_valid() and error_field in form.errors


def test_form_tunnelled_means_peer_to_peer() -> None:
    form = MigrateForm(["b"], {"target": "b", "tunnelled": "on", "bandwidth_mib": "10"})
    assert form.is_valid(), form.errors
    assert form.options() == Options(peer_to_peer=True, tunnelled=True, bandwidth_mib=10)


def world_host(tmp_path: Path, name: str, domains: str = "") -> Host:
    world = tmp_path / f"{name}.xml"
    world.write_text(WORLD.format(domains=domains))
    return Host.objects.create(name=name, transport="test", path=str(world))


@pytest.mark.django_db(transaction=True)  # admins start real jobs: their threads write audit records
def test_permission_table(personas: dict[str, Client], test_host: Host, granted_user: Any, tmp_path: Path) -> None:
    """Migration needs the change grant on the VM and admin rights on both hosts: only admins pass."""
    world_host(tmp_path, "testhost2", TWIN)  # every job an admin starts here is refused by its checks
    VMGrant.objects.filter(user=granted_user).update(can_change=True)  # a change grant is not enough
    page = reverse("instances:migrate", args=["testhost", WEB_01_UUID])
    evacuate = reverse("instances:evacuate", args=["testhost"])
    expected = {"admin": 200, "user": 403, "outsider": 403, "anonymous": 302}
    for who, client in personas.items():
        assert client.get(page).status_code == expected[who], who
        assert client.get(page, {"target": "testhost2"}).status_code == expected[who], who
        assert client.post(page, {"target": "testhost2"}).status_code == {**expected, "admin": 302}[who], who
        assert client.get(evacuate).status_code == expected[who], who
        assert client.post(evacuate, {"target": "testhost2"}).status_code == {**expected, "admin": 302}[who], who
        many = client.post(reverse("instances:migrate_many"), {"vm": f"testhost/{WEB_01_UUID}"})
        assert many.status_code == expected[who], who
        jobs_finished()
    assert AuditEvent.objects.filter(result="denied", username="alice").exists()
    assert not AuditEvent.objects.filter(action="vm.migrate").exclude(username="root-admin").exists()
    # Actions are POST only; a job nobody started is not found.
    assert personas["admin"].get(reverse("instances:migration_cancel", args=["0" * 24])).status_code == 405
    assert personas["admin"].get(reverse("instances:migration_status", args=["0" * 24])).status_code == 404


def test_check_page_shows_findings_on_the_test_driver(admin_client: Client, test_host: Host, tmp_path: Path) -> None:
    world_host(tmp_path, "empty")
    world_host(tmp_path, "twin", TWIN)
    url = reverse("instances:migrate", args=["testhost", WEB_01_UUID])
    page = admin_client.get(url)
    assert page.status_code == 200 and b'id="migrate-form"' in page.content and b"live" in page.content
    # The test driver reports neither a host UUID nor free memory: notes, not problems.
    text = admin_client.get(url, {"target": "empty"}).content.decode()
    assert 'data-code="same-host"' in text and "could not be compared" in text and "Problem:" not in text
    assert 'data-code="memory"' in text and 'id="migrate-now"' in text
    # A different VM with the same name on the target: a problem, and no button to start.
    text = admin_client.get(url, {"target": "twin"}).content.decode()
    assert 'data-code="name"' in text and "already has a different VM named web-01" in text
    assert "Problem:" in text and 'id="migrate-now"' not in text and "Nothing was moved" in text
    bad = admin_client.get(url, {"target": "empty", "migration_address": "127.0.0.1"})
    assert bad.status_code == 200 and "loopback" in bad.content.decode() and b'id="preflight"' not in bad.content


def start_and_wait(client: Client, target: str) -> dict[str, Any]:
    response = client.post(reverse("instances:migrate", args=["testhost", WEB_01_UUID]), {"target": target})
    assert response.status_code == 302
    job = response.url.rstrip("/").rsplit("/", 1)[-1]
    jobs_finished()
    data = client.get(reverse("instances:migration_status", args=[job])).json()
    assert data["finished"]
    data["page"] = client.get(reverse("instances:migration", args=[job])).content.decode()
    return data


@pytest.mark.django_db(transaction=True)
def test_jobs_that_move_nothing_say_so_and_are_audited(tmp_path: Path) -> None:
    from tests.conftest import BASIC_WORLD

    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root-admin", "", PASSWORD))
    Host.objects.create(name="testhost", transport="test", path=str(BASIC_WORLD))
    world_host(tmp_path, "twin", TWIN)
    world_host(tmp_path, "empty")

    refused = start_and_wait(client, "twin")
    assert refused["report"]["outcome"] == "refused" and refused["report"]["vm_host"] == "testhost"
    assert [f["code"] for f in refused["findings"] if f["blocking"]] == ["name"]
    assert refused["vm_url"] == f"/instances/testhost/{WEB_01_UUID}/" and "Nothing was moved" in refused["page"]
    # The test driver cannot migrate: libvirt's words, and where the VM is.
    failed = start_and_wait(client, "empty")
    assert failed["report"]["outcome"] == "failed" and "not supported" in failed["report"]["message"]
    assert "web-01 is still running on testhost with its definition intact" in failed["report"]["message"]
    records = list(AuditEvent.objects.filter(action="vm.migrate").order_by("id"))
    assert [r.result for r in records] == ["failed", "failed"]
    assert "from testhost to twin" in records[0].detail and "pre-flight" in records[0].detail
    assert "duration" in records[1].detail and "result: failed" in records[1].detail


def test_entry_points_on_the_pages(personas: dict[str, Client], test_host: Host) -> None:
    """Admins get Migrate on a VM's page, checkboxes and "Migrate selected" on the fleet view and Evacuate
    on a host's page; users with grants see none of them."""
    admin, user = personas["admin"], personas["user"]
    detail = reverse("instances:detail", args=["testhost", WEB_01_UUID])
    assert f'href="/instances/testhost/{WEB_01_UUID}/migrate/"' in admin.get(detail).content.decode()
    assert 'id="migrate"' not in user.get(detail).content.decode()
    fleet = admin.get(reverse("instances:list")).content.decode()
    assert f'value="testhost/{WEB_01_UUID}" form="migrate-selected"' in fleet
    assert 'id="migrate-selected-button"' in fleet
    fleet = user.get(reverse("instances:list")).content.decode()
    assert 'form="migrate-selected"' not in fleet and "migrate-selected-button" not in fleet
    host_page = admin.get(reverse("hosts:detail", args=["testhost"])).content.decode()
    assert 'href="/instances/host/testhost/evacuate/"' in host_page
    # The fleet form lists what was ticked, with names and modes, before anything starts.
    chosen = admin.post(reverse("instances:migrate_many"), {"vm": [f"testhost/{WEB_01_UUID}", "testhost/junk",
                                                                   "nohost/" + WEB_01_UUID]})
    text = chosen.content.decode()
    assert chosen.status_code == 200 and "web-01" in text and text.count('name="vm"') == 1
