"""Migration without a hypervisor that migrates: the pre-flight rules on plain facts, the evacuation
plan, the form, who may open which page, and the jobs (vm.migrate, host.evacuate, vm.migrate-many):
started, refused and audited, the VM's locks, cancel, and the reconciliation of a migration whose
worker died. libvirt's test driver has no migration: its jobs fail with libvirt's words, and a
stand-in for virt.migrate.Migration plays the successful and the cancelled ones. The real thing is
tested in tests/integration/test_migrate_lab.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hosts import services
from hosts.models import Host
from instances import migrate_jobs
from instances.views.migrate import MigrateForm
from jobs import liveness
from jobs.models import ACTIVE, Job, JobState
from jobs.reconcile import reconcile
from tests.conftest import WEB_01_UUID
from virt.migrate import Progress, Report, spread
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


def jobs_ended(timeout: float = 20) -> None:
    """Wait for every job the test started (their threads write the audit records as they end)."""
    end = time.monotonic() + timeout
    while Job.objects.filter(state__in=ACTIVE).exists():
        assert time.monotonic() < end, list(Job.objects.filter(state__in=ACTIVE))
        time.sleep(0.05)


def job_of(response: Any) -> Job:
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"].startswith("/jobs/"), response["Location"]
    return Job.objects.get(pk=int(response["Location"].strip("/").split("/")[-1]))


def ended(job: Job, timeout: float = 20) -> Job:
    end = time.monotonic() + timeout
    while True:
        job.refresh_from_db()
        if not job.active:
            return job
        assert time.monotonic() < end, (job.state, job.phase)
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


# The migration form's bad input ("b" is the one other host); run again through the API (test_api_migration.py).
BAD_MIGRATE = [
    ({"target": "b", "migration_address": "127.0.0.1"}, "migration_address"),
    ({"target": "b", "migration_address": "localhost"}, "migration_address"),
    ({"target": "b", "migration_address": "evil/system?command=x"}, "migration_address"),
    ({"target": "b", "tunnelled": "on", "migration_address": "10.0.0.2"}, "migration_address"),
    ({"target": "b", "bandwidth_mib": "-1"}, "bandwidth_mib"),
    ({"target": "b", "max_downtime_ms": "99999999"}, "max_downtime_ms"),
    ({"target": "nope"}, "target"),
]


@pytest.mark.parametrize(("data", "error_field"), BAD_MIGRATE)
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


def migrate_url(host: str = "testhost", vm: str = WEB_01_UUID) -> str:
    return reverse("instances:migrate", args=[host, vm])


def held(host: Host, vm: str = WEB_01_UUID) -> bool:
    return services.vm_locks.held(str(host.pk), vm)


# --- pages and who may use them -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # admins start real jobs: their threads write audit records
def test_permission_table(personas: dict[str, Client], test_host: Host, granted_user: Any, tmp_path: Path) -> None:
    """Migration and evacuation are admins' (they change two hosts): a grant on the VM is not enough."""
    world_host(tmp_path, "testhost2")
    VMGrant.objects.filter(user=granted_user).update(can_change=True)
    page = migrate_url()
    evacuate = reverse("instances:evacuate", args=["testhost"])
    expected = {"admin": 200, "user": 403, "outsider": 403, "anonymous": 302}
    for who, client in personas.items():
        assert client.get(page).status_code == expected[who], who
        assert client.get(page, {"target": "testhost2"}).status_code == expected[who], who
        assert client.post(page, {"target": "testhost2"}).status_code == {**expected, "admin": 302}[who], who
        jobs_ended()
        assert client.get(evacuate).status_code == expected[who], who
        assert client.post(evacuate, {"target": "testhost2"}).status_code == {**expected, "admin": 302}[who], who
        many = client.post(reverse("instances:migrate_many"), {"vm": f"testhost/{WEB_01_UUID}"})
        assert many.status_code == expected[who], who
        jobs_ended()
    assert AuditEvent.objects.filter(result="denied", username="alice").exists()
    assert not AuditEvent.objects.filter(action__in=["vm.migrate", "host.evacuate"]).exclude(username="root-admin")
    assert set(Job.objects.values_list("owner__username", flat=True)) == {"root-admin"}
    # The pages of the old in-process registry are gone: a migration's page is its job's.
    assert personas["admin"].get("/instances/migrations/" + "0" * 24 + "/").status_code == 404


def test_check_page_shows_findings_on_the_test_driver(admin_client: Client, test_host: Host, tmp_path: Path) -> None:
    world_host(tmp_path, "empty")
    world_host(tmp_path, "twin", TWIN)
    url = migrate_url()
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
    assert not Job.objects.exists()


def test_entry_points_on_the_pages(personas: dict[str, Client], test_host: Host) -> None:
    """Admins get Migrate on a VM's page, checkboxes and "Migrate…" on the fleet view and Evacuate on a host's
    page; users with grants see none of them (their checkboxes serve the other bulk actions)."""
    admin, user = personas["admin"], personas["user"]
    detail = reverse("instances:detail", args=["testhost", WEB_01_UUID])
    assert f'href="/instances/testhost/{WEB_01_UUID}/migrate/"' in admin.get(detail).content.decode()
    assert 'id="migrate"' not in user.get(detail).content.decode()
    fleet = admin.get(reverse("instances:list")).content.decode()
    assert f'value="testhost/{WEB_01_UUID}" form="bulk"' in fleet
    assert 'id="migrate-selected-button"' in fleet
    fleet = user.get(reverse("instances:list")).content.decode()
    assert "migrate-selected-button" not in fleet
    host_page = admin.get(reverse("hosts:detail", args=["testhost"])).content.decode()
    assert 'href="/instances/host/testhost/evacuate/"' in host_page
    # The fleet form lists what was ticked, with names and modes, before anything starts.
    chosen = admin.post(reverse("instances:migrate_many"), {"vm": [f"testhost/{WEB_01_UUID}", "testhost/junk",
                                                                   "nohost/" + WEB_01_UUID]})
    text = chosen.content.decode()
    assert chosen.status_code == 200 and "web-01" in text and text.count('name="vm"') == 1


# --- one VM: the job --------------------------------------------------------------------------------------


JOBS = pytest.mark.django_db(transaction=True)  # jobs run and audit outside the test's transaction


@JOBS
def test_a_migration_is_a_job_that_says_what_libvirt_said(admin_client: Client, test_host: Host,
                                                          tmp_path: Path) -> None:
    empty = world_host(tmp_path, "empty")
    job = ended(job_of(admin_client.post(migrate_url(), {"target": "empty", "bandwidth_mib": "50"})))
    assert (job.kind, job.host, job.target_type, job.target_name) == ("vm.migrate", test_host, "vm", "web-01")
    assert job.summary == "migration of web-01 from testhost to empty (live, bandwidth 50 MiB/s)"
    # The test driver cannot migrate: libvirt's words, and where the VM is.
    assert job.state == JobState.FAILED and "not supported" in job.result, job.result
    assert "web-01 is still running on testhost with its definition intact" in job.result
    assert not held(test_host) and not held(empty)
    event = AuditEvent.objects.get(action="vm.migrate")
    assert job.audit == event and event.result == "failed" and event.object_name == "web-01"
    assert event.detail.startswith(job.summary + ": The migration failed: ")
    status = admin_client.get(reverse("jobs:status", args=[job.pk])).json()
    assert status["label"] == "Migrate VM" and status["unit"] == "bytes" and status["can_cancel"] is False
    assert status["link"] == reverse("instances:detail", args=["testhost", WEB_01_UUID])
    assert "Open the VM" in admin_client.get(job.get_absolute_url()).content.decode()


@JOBS
def test_refusals_start_nothing_and_are_audited(admin_client: Client, test_host: Host, tmp_path: Path) -> None:
    world_host(tmp_path, "twin", TWIN)
    empty = world_host(tmp_path, "empty")
    # The pre-flight checks run again on POST: a problem refuses it at once.
    refused = admin_client.post(migrate_url(), {"target": "twin"})
    text = refused.content.decode()
    assert refused.status_code == 200 and 'data-code="name"' in text and "Nothing was moved" in text
    # Another action on the VM holds its lock.
    services.vm_locks.acquire(str(test_host.pk), WEB_01_UUID)
    try:
        busy = admin_client.post(migrate_url(), {"target": "empty"})
        assert "Migrate: not started: Another action on this VM is still running" in busy.content.decode()
    finally:
        services.vm_locks.release(str(test_host.pk), WEB_01_UUID)
    assert not held(empty)  # the target's lock, taken first, was let go of
    # Storage is copied only live.
    services.call(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).destroy())
    offline = admin_client.post(migrate_url(), {"target": "empty", "copy_storage": "on"})
    assert "Storage is copied during a live migration" in offline.content.decode()
    # Bad input is the form's, not audited.
    assert admin_client.post(migrate_url(), {"target": "nowhere"}).status_code == 200
    assert not Job.objects.exists()
    details = list(AuditEvent.objects.filter(action="vm.migrate").order_by("id").values_list("result", "detail"))
    assert [result for result, _ in details] == ["failed"] * 3
    assert details[0][1].startswith("refused: to twin: pre-flight: twin already has a different VM named web-01")
    assert details[1][1] == "refused: Another action on this VM is still running; try again in a moment."
    assert details[2][1] == "refused: copy storage of a shut-off VM"


@dataclass
class Stand:
    """What the stand-in for virt.migrate.Migration does: end with `outcome`, after `hold` is set (if
    given) unless a stop is asked first; `running` is set once it runs."""

    outcome: str = "done"
    hold: threading.Event | None = None
    running: threading.Event = field(default_factory=threading.Event)
    runs: list[str] = field(default_factory=list)  # VM uuids, in the order they ran


@pytest.fixture
def stand(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stand]:
    control = Stand()

    class Migration:
        def __init__(self, vm_uuid: str, source: Any, target: Any, options: Any, *,
                     report: Callable[[Progress, str], None], stop: Callable[[], bool]) -> None:
            self.vm_uuid, self.source, self.target = vm_uuid, source, target
            self.vm_name, self.live, self.findings, self.stop_requested = "web-01", True, [], False
            self.progress = Progress()
            self._report, self._stop = report, stop

        def run(self) -> Report:
            control.runs.append(self.vm_uuid)
            progress = self.progress
            progress.total, progress.done = GiB, GiB // 4
            self._report(progress, "copying memory at 100 MiB/s")
            control.running.set()
            while control.hold is not None and not control.hold.wait(0.02):
                if self._stop():
                    self.stop_requested = True
                    return Report("cancelled", f"Cancelled. {self.vm_name} is still running on {self.source.name} "
                                  "with its definition intact.", self.source.name)
            progress.finished()
            progress.downtime_ms = 5
            self._report(progress, "done")
            return Report("done", f"{self.vm_name} now runs on {self.target.name} (downtime 5 ms).",
                          self.target.name, 1.0, [f"Autostart is on for {self.vm_name} on {self.target.name}."])

    monkeypatch.setattr(migrate_jobs, "Migration", Migration)
    yield control
    if control.hold is not None:
        control.hold.set()


@JOBS
def test_a_migration_holds_the_vm_on_both_hosts_and_grants_follow(admin_client: Client, test_host: Host,
                                                                   granted_user: Any, tmp_path: Path,
                                                                   stand: Stand) -> None:
    empty = world_host(tmp_path, "empty")
    stand.hold = threading.Event()
    job = job_of(admin_client.post(migrate_url(), {"target": "empty"}))
    assert stand.running.wait(10)
    assert held(test_host) and held(empty)  # the request's locks, handed to the job
    running = admin_client.get(reverse("jobs:status", args=[job.pk])).json()
    assert running["state"] == "running" and running["can_cancel"] is True
    assert (running["done"], running["total"], running["phase"]) == (GiB // 4, GiB, "copying memory at 100 MiB/s")
    again = admin_client.post(migrate_url(), {"target": "empty"})
    assert "Another action on this VM is still running" in again.content.decode()
    stand.hold.set()
    job = ended(job)
    assert job.state == JobState.DONE and not held(test_host) and not held(empty)
    assert job.result == "web-01 now runs on empty (downtime 5 ms). Autostart is on for web-01 on empty."
    assert job.params["where"] == "empty" and job.params["downtime_ms"] == 5 and job.params["locks"]
    status = admin_client.get(reverse("jobs:status", args=[job.pk])).json()
    assert status["percent"] == 100.0 and status["link"] == reverse("instances:detail", args=["empty", WEB_01_UUID])
    assert list(VMGrant.objects.filter(user=granted_user).values_list("host__name", flat=True)) == ["empty"]
    assert [e.result for e in AuditEvent.objects.filter(action="vm.migrate").order_by("id")] == ["failed", "ok"]


@JOBS
def test_cancel_aborts_and_the_vm_stays(admin_client: Client, test_host: Host, tmp_path: Path,
                                        stand: Stand) -> None:
    empty = world_host(tmp_path, "empty")
    stand.hold = threading.Event()
    job = job_of(admin_client.post(migrate_url(), {"target": "empty"}))
    assert stand.running.wait(10)
    assert "Asked to stop" in admin_client.post(reverse("jobs:cancel", args=[job.pk]), follow=True).content.decode()
    job = ended(job)
    assert job.state == JobState.CANCELLED
    assert job.result == ("Cancelled on request (256 MiB of 1.0 GiB done, web-01 is still running on testhost "
                          "with its definition intact).")
    assert not held(test_host) and not held(empty) and job.params["where"] == "testhost"
    assert AuditEvent.objects.get(action="vm.migrate").result == "failed"


@JOBS
def test_a_migration_cancelled_before_it_ran_unlocks_the_vm(admin_client: Client, admin_user: Any,
                                                            test_host: Host, tmp_path: Path) -> None:
    empty = world_host(tmp_path, "empty")
    locks = migrate_jobs.take_locks(test_host, empty, WEB_01_UUID)
    queued = migration_row(test_host, empty, admin_user, locks, state=JobState.QUEUED)
    admin_client.post(reverse("jobs:cancel", args=[queued.pk]))
    queued.refresh_from_db()
    assert queued.state == JobState.CANCELLED and not held(test_host) and not held(empty)


# --- a worker that died while libvirt migrated --------------------------------------------------------------


def migration_row(source: Host, target: Host, owner: Any, locks: list[list[str]], state: str = JobState.RUNNING,
                  **fields: Any) -> Job:
    """A vm.migrate Job row as a worker that has since died would have left it."""
    return Job.objects.create(
        kind="vm.migrate", host=source, owner=owner, state=state, target_type="vm", target_name="web-01",
        summary=f"migration of web-01 from {source.name} to {target.name} (live)",
        started=timezone.now() if state == JobState.RUNNING else None, rq_id="gone",
        params={"vm": WEB_01_UUID, "name": "web-01", "target": target.pk, "options": asdict(Options()), "live": True,
                "locks": locks}, **fields)


WEB_01 = f"""<domain type="test"><name>web-01</name><uuid>{WEB_01_UUID}</uuid>
<memory unit="MiB">64</memory><vcpu>1</vcpu><os><type arch="x86_64">hvm</type></os></domain>"""


@JOBS
def test_a_dead_migration_waits_for_libvirt_then_says_the_vm_stayed(admin_client: Client, admin_user: Any,
                                                                     test_host: Host, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    empty = world_host(tmp_path, "empty")
    locks = migrate_jobs.take_locks(test_host, empty, WEB_01_UUID)
    dead = migration_row(test_host, empty, admin_user, locks, phase="copying memory", done=GiB // 2, total=GiB)
    monkeypatch.setattr(migrate_jobs, "migrating", lambda conn, vm: True)  # libvirt's job on the source goes on
    assert reconcile() == 0
    dead.refresh_from_db()
    assert dead.state == JobState.RUNNING and dead.result == ("libvirt on testhost is still migrating web-01; the "
                                                              "job ends once it has finished.")
    assert held(test_host) and held(empty)
    monkeypatch.undo()  # the test driver has no job to report: nothing migrates any more
    assert "interrupted" in admin_client.get(reverse("jobs:list")).content.decode()
    dead.refresh_from_db()
    assert dead.state == JobState.INTERRUPTED
    assert dead.result == ("Interrupted: the worker running it stopped (512 MiB of 1.0 GiB done, copying memory). "
                           "web-01 is running on testhost; nothing was moved.")
    assert not held(test_host) and not held(empty)
    assert reconcile() == 0 and AuditEvent.objects.get(action="vm.migrate").result == "failed"  # once only


@JOBS
def test_a_dead_migration_that_libvirt_finished_is_done(admin_user: Any, granted_user: Any, tmp_path: Path) -> None:
    source = world_host(tmp_path, "source")  # web-01 has left it
    there = world_host(tmp_path, "there", WEB_01)  # and runs here
    VMGrant.objects.create(user=granted_user, host=source, vm_uuid=WEB_01_UUID, vm_name="web-01", can_power=True)
    locks = migrate_jobs.take_locks(source, there, WEB_01_UUID)
    dead = migration_row(source, there, admin_user, locks, phase="copying memory")
    assert reconcile() == 1
    dead.refresh_from_db()
    assert dead.state == JobState.DONE and dead.params["where"] == "there"
    assert dead.result == "Done, found after the worker running it stopped: web-01 is running on there."
    assert not held(source) and not held(there)
    grants = VMGrant.objects.filter(user=granted_user).exclude(host__name="testhost")  # the fixture's own
    assert list(grants.values_list("host__name", "can_power")) == [("there", True)]
    assert AuditEvent.objects.get(action="vm.migrate").result == "ok"


# --- several VMs: a parent job and its steps ------------------------------------------------------------------


@JOBS
def test_evacuation_is_a_job_with_one_migration_per_vm(admin_client: Client, test_host: Host, granted_user: Any,
                                                       tmp_path: Path, stand: Stand) -> None:
    empty = world_host(tmp_path, "empty")
    parent = ended(job_of(admin_client.post(reverse("instances:evacuate", args=["testhost"]), {"target": "empty"})))
    children = list(parent.children.order_by("pk"))
    assert (parent.kind, parent.host, parent.target_name) == ("host.evacuate", test_host, "testhost")
    assert [c.kind for c in children] == ["vm.migrate"] * 3 and {c.state for c in children} == {JobState.DONE}
    assert len(stand.runs) == 3 and set(stand.runs) == {c.params["vm"] for c in children}  # one at a time
    assert parent.state == JobState.DONE and parent.result.startswith("All 3 VM(s) moved: ")
    assert "web-01" in parent.result and "db-01" in parent.result
    assert (parent.done, parent.total) == (3, 3) and not held(test_host) and not held(empty)
    page = admin_client.get(parent.get_absolute_url()).content.decode()
    assert 'id="job-children"' in page and all(f'href="/jobs/{c.pk}/"' in page for c in children)
    assert f'id="job-parent">job {parent.pk}<' in admin_client.get(children[0].get_absolute_url()).content.decode()
    assert list(VMGrant.objects.filter(user=granted_user).values_list("host__name", flat=True)) == ["empty"]
    assert AuditEvent.objects.get(action="host.evacuate").detail.startswith("evacuation of testhost: 3 VM(s): All 3")
    assert AuditEvent.objects.filter(action="vm.migrate", result="ok").count() == 3


@JOBS
def test_an_evacuation_lists_what_did_not_move(admin_client: Client, test_host: Host, tmp_path: Path) -> None:
    world_host(tmp_path, "empty")
    response = admin_client.post(reverse("instances:evacuate", args=["testhost"]), {"target": "empty"})
    parent = ended(job_of(response), timeout=60)
    assert parent.state == JobState.FAILED
    assert parent.result.startswith("0 of 3 VM(s) moved. Not moved: ")
    assert "web-01 (failed: The migration failed: this function is not supported" in parent.result
    assert "db-01 (failed: " in parent.result
    assert {c.state for c in parent.children.all()} == {JobState.FAILED}
    assert AuditEvent.objects.get(action="host.evacuate").result == "failed"
    # Nothing to move: refused and audited.
    nothing = admin_client.post(reverse("instances:evacuate", args=["empty"]), {"target": "testhost"})
    assert nothing.status_code == 200 and "Nothing to move." in nothing.content.decode()
    assert AuditEvent.objects.filter(action="host.evacuate", detail="refused: Nothing to move.").count() == 1


@JOBS
def test_cancelling_an_evacuation_stops_the_running_step_and_the_rest(admin_client: Client, test_host: Host,
                                                                      tmp_path: Path, stand: Stand) -> None:
    world_host(tmp_path, "empty")
    stand.hold = threading.Event()
    parent = job_of(admin_client.post(reverse("instances:evacuate", args=["testhost"]), {"target": "empty"}))
    assert stand.running.wait(10)
    assert admin_client.get(reverse("jobs:status", args=[parent.pk])).json()["can_cancel"] is True
    admin_client.post(reverse("jobs:cancel", args=[parent.pk]))
    parent = ended(parent)
    states = list(parent.children.order_by("pk").values_list("state", "result"))
    assert parent.state == JobState.CANCELLED and parent.result == "Cancelled on request (0 of 3 done, 3 cancelled)."
    assert states[0][0] == JobState.CANCELLED and "still running on testhost" in states[0][1]
    assert states[1:] == [(JobState.CANCELLED, f"Cancelled with its parent job {parent.pk} before its turn: "
                                               "nothing was moved.")] * 2
    assert len(stand.runs) == 1 and not held(test_host)


@JOBS
def test_migrate_selected_vms_from_the_fleet_view(admin_client: Client, test_host: Host, tmp_path: Path,
                                                  stand: Stand) -> None:
    empty = world_host(tmp_path, "empty")
    response = admin_client.post(reverse("instances:migrate_many"), {
        "vm": [f"testhost/{WEB_01_UUID}", "testhost/22222222-2222-4222-8222-222222222222"], "go": "1",
        "target": "empty"})
    parent = ended(job_of(response))
    assert (parent.kind, parent.host, parent.target_name, parent.state) == ("vm.migrate-many", empty, "empty", "done")
    assert [c.target_name for c in parent.children.order_by("pk")] == ["web-01", "db-01"]
    assert admin_client.get(reverse("jobs:status", args=[parent.pk])).json()["link"] == reverse(
        "instances:host", args=["empty"])
    already = admin_client.post(reverse("instances:migrate_many"), {"vm": [f"testhost/{WEB_01_UUID}"], "go": "1",
                                                                    "target": "testhost"})
    assert "Every ticked VM is already on this host." in already.content.decode()


@JOBS
def test_steps_live_while_their_parent_does(admin_user: Any, test_host: Host, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A step waiting for its turn is its parent's to run: alive while the parent is, ended with it."""
    empty = world_host(tmp_path, "empty")
    old = timezone.now() - timedelta(minutes=5)
    parent = Job.objects.create(kind="host.evacuate", host=test_host, owner=admin_user, state=JobState.RUNNING,
                                started=old, target_type="host", target_name="testhost", rq_id="gone",
                                summary="evacuation of testhost: 2 VM(s)", params={"count": 2})
    running = migration_row(test_host, empty, admin_user, [], parent=parent)
    waiting = migration_row(test_host, empty, admin_user, [], state=JobState.QUEUED, parent=parent)
    Job.objects.filter(pk=waiting.pk).update(created=old)
    heartbeats = [liveness.Heartbeat(job.pk) for job in (parent, running)]
    assert all(h.start() for h in heartbeats)
    try:
        assert reconcile() == 0
    finally:
        for heartbeat in heartbeats:
            heartbeat.stop()
    # The worker died while libvirt migrated: the step waits for libvirt, its parent for the step.
    monkeypatch.setattr(migrate_jobs, "migrating", lambda conn, vm: True)
    assert reconcile() == 0
    parent.refresh_from_db()
    assert parent.state == JobState.RUNNING and parent.result == "Waiting until the migration of web-01 has been ended."
    monkeypatch.undo()
    assert reconcile() == 2
    results = {j.pk: (j.state, j.result) for j in Job.objects.all()}
    assert results[running.pk][0] == JobState.INTERRUPTED
    assert results[waiting.pk] == (JobState.INTERRUPTED, f"Interrupted: its parent job {parent.pk} ended before its "
                                                         "turn; nothing was moved.")
    assert results[parent.pk] == (JobState.INTERRUPTED, "Interrupted: the worker running it stopped. Its migrations: "
                                                        "2 interrupted.")


@JOBS
def test_an_evacuation_cancelled_before_it_began_cancels_its_steps(admin_client: Client, admin_user: Any,
                                                                   test_host: Host, tmp_path: Path) -> None:
    empty = world_host(tmp_path, "empty")
    parent = Job.objects.create(kind="host.evacuate", host=test_host, owner=admin_user, target_type="host",
                                target_name="testhost", rq_id="waiting", summary="evacuation of testhost: 1 VM(s)")
    step = migration_row(test_host, empty, admin_user, [], state=JobState.QUEUED, parent=parent)
    admin_client.post(reverse("jobs:cancel", args=[parent.pk]))
    step.refresh_from_db()
    assert step.state == JobState.CANCELLED and step.result == (f"Cancelled with its parent job {parent.pk} before "
                                                                "it began: nothing was moved.")
