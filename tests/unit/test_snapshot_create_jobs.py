"""A running VM's snapshot and a VM creation that allocates its disk, as durable jobs, on libvirt's test
driver: the job is started by the page, ends done (libvirt is asked afterwards), holds the VM's lock while
it runs, writes one audit record, and is tidied up truthfully when its worker died or it never ran.
What the test driver cannot do (writing a real memory image) is in tests/integration/test_snapshot_jobs_lab.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hosts import services
from hosts.models import Host
from instances import snapshot_jobs
from jobs import liveness
from jobs.models import Job, JobState
from jobs.reconcile import reconcile
from tests.conftest import WEB_01_UUID
from virt import snapshots
from virt.create import NIC, NewVM, NewVolume, PoolVolume, spec_from_params, spec_params
from virt.xml import Domain
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)  # jobs run and audit outside the test's transaction
CREATE_URL = reverse("instances:create") + "?host=testhost"
GOOD_FORM = {
    "name": "app-01", "vcpus": "2", "size": "custom", "memory": "512M", "firmware": "bios", "machine": "",
    "cpu_mode": "host-model",
    "disk_source": "new", "disk_pool": "images", "disk_size": "2G", "disk_format": "raw",
    "existing_volume": "", "iso": "", "nic1_source": "network:lan", "nic1_model": "virtio",
    "nic2_source": "", "nic2_model": "virtio", "nic3_source": "", "nic3_model": "virtio",
}
GIB = 1 << 30


# --- helpers --------------------------------------------------------------------------------------


def running_vm(host: Host, name: str) -> str:
    """A running VM with a qcow2 disk (a volume of the pool images): its snapshot includes its memory."""

    def make(conn: libvirt.virConnect) -> str:
        vol = conn.storagePoolLookupByName("images").createXML(
            f"<volume><name>{name}.qcow2</name><capacity unit='MiB'>16</capacity>"
            "<target><format type='qcow2'/></target></volume>", 0)
        dom = Domain.new(type="test", name=name)
        dom.memory = dom.current_memory = 256 * 1024
        dom.vcpus = 1
        dom.os.type, dom.os.arch = "hvm", "x86_64"
        xml = dom.to_xml().replace("</domain>", f"""<devices>
          <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{vol.path()}'/>
            <target dev='vda' bus='virtio'/></disk></devices></domain>""")
        made = conn.defineXML(xml)
        made.create()
        return str(made.UUIDString())

    return services.call(host, make)


def snapshot_names(host: Host, vm: str) -> list[str]:
    return sorted(services.call(host, lambda conn: [s.getName() for s in conn.lookupByUUIDString(vm)
                                                    .listAllSnapshots(0)]))


def job_of(response: Any) -> Job:
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"].startswith("/jobs/"), response["Location"]
    return Job.objects.get(pk=int(response["Location"].strip("/").split("/")[-1]))


def wait_until(job: Job, check: Any = lambda job: not job.active, seconds: float = 10) -> Job:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if check(job):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job.pk}: {job.state} {job.phase} {job.result}")


def events(action: str) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(action=action).order_by("id").values_list("object_name", "result"))


def held(host: Host, vm: str) -> bool:
    return services.vm_locks.held(str(host.pk), vm)


def snapshot_url(name: str, vm: str) -> str:
    return reverse(f"instances:{name}", args=["testhost", vm])


# --- a running VM's snapshot ----------------------------------------------------------------------


def test_a_running_vms_snapshot_is_a_job_that_ends_done(admin_client: Client, admin_user: Any,
                                                        test_host: Host) -> None:
    vm = running_vm(test_host, "live")
    job = job_of(admin_client.post(snapshot_url("snapshot_create", vm), {"name": "s1", "description": "good"}))
    job = wait_until(job)
    assert job.state == JobState.DONE, job.result
    assert (job.kind, job.target_type, job.target_name, job.owner) == ("vm.snapshot.create", "vm", "live", admin_user)
    assert job.result == f"Snapshot s1 of live taken with its memory (uuid {vm})."
    assert job.summary == "snapshot s1 of live with its memory" and "lock" in job.params

    assert snapshot_names(test_host, vm) == ["s1"]  # libvirt has it, with the memory of the running VM
    xml = services.call(test_host, lambda conn: conn.lookupByUUIDString(vm).snapshotLookupByName("s1", 0)
                        .getXMLDesc(0))
    assert "<state>running</state>" in xml and "<memory snapshot='internal'/>" in xml and "good" in xml
    assert not held(test_host, vm)
    [event] = AuditEvent.objects.filter(action="vm.snapshot.create")
    assert (event.result, event.object_name, event.username) == ("ok", "live", "root-admin")
    assert job.audit == event and event.duration_ms is not None

    status = admin_client.get(reverse("jobs:status", args=[job.pk])).json()
    assert status["link"] == snapshot_url("snapshots", vm) and status["label"] == "Take snapshot with memory"
    assert "Show the snapshots" in admin_client.get(job.get_absolute_url()).content.decode()
    listing = admin_client.get(snapshot_url("snapshots", vm)).content.decode()
    assert 'data-snapshot="s1"' in listing and "(with memory)" in listing and 'id="snapshot-jobs"' not in listing


def test_a_shut_off_vms_snapshot_stays_in_the_request(admin_client: Client, test_host: Host) -> None:
    vm = running_vm(test_host, "quiet")
    services.call(test_host, lambda conn: conn.lookupByUUIDString(vm).destroy())
    response = admin_client.post(snapshot_url("snapshot_create", vm), {"name": "s1"})
    assert response.status_code == 302 and response["Location"] == snapshot_url("snapshots", vm)
    assert "quiet: snapshot s1 taken." in admin_client.get(response["Location"]).content.decode()
    assert snapshot_names(test_host, vm) == ["s1"] and not Job.objects.exists()
    assert events("vm.snapshot.create") == [("quiet", "ok")]


@pytest.fixture
def slow_snapshot(monkeypatch: pytest.MonkeyPatch) -> Any:
    """libvirt "writes the memory" until the test lets it go on; it reports 1 GiB of 4 done meanwhile."""
    writing, go_on = threading.Event(), threading.Event()
    real = snapshots.create

    def slow(dom: libvirt.virDomain, name: str, description: str = "") -> snapshots.SnapshotInfo:
        writing.set()
        assert go_on.wait(20)
        return real(dom, name, description)

    monkeypatch.setattr(snapshots, "create", slow)
    monkeypatch.setattr(snapshots, "memory_progress", lambda dom: (GIB, 4 * GIB))
    yield writing, go_on
    go_on.set()


def test_the_vm_stays_locked_while_its_memory_is_written(admin_client: Client, test_host: Host,
                                                         slow_snapshot: Any) -> None:
    writing, go_on = slow_snapshot
    vm = running_vm(test_host, "busy")
    job = job_of(admin_client.post(snapshot_url("snapshot_create", vm), {"name": "s1"}))
    assert writing.wait(10)
    job = wait_until(job, lambda job: job.total == 4 * GIB and job.done == GIB)  # libvirt's memory figures
    assert job.state == JobState.RUNNING and job.phase == "writing memory and disks" and held(test_host, vm)
    status = admin_client.get(reverse("jobs:status", args=[job.pk])).json()
    assert (status["percent"], status["unit"], status["can_cancel"]) == (25.0, "bytes", False)
    assert "Being taken:" in admin_client.get(snapshot_url("snapshots", vm)).content.decode()

    # Any other change of the VM meanwhile is "busy", and audited once as failed.
    again = admin_client.post(snapshot_url("snapshot_create", vm), {"name": "s2"}, follow=True)
    assert "Take snapshot: not started: Another action on this VM is still running" in again.content.decode()
    renamed = admin_client.post(reverse("instances:rename", args=["testhost", vm]), {"name": "other"}, follow=True)
    assert "Another action on this VM is still running" in renamed.content.decode()
    assert events("vm.rename") == [(vm, "failed")]
    assert Job.objects.count() == 1

    go_on.set()
    assert wait_until(job).state == JobState.DONE
    assert not held(test_host, vm) and snapshot_names(test_host, vm) == ["s1"]
    assert events("vm.snapshot.create") == [("busy", "failed"), ("busy", "ok")]
    assert AuditEvent.objects.filter(action="vm.snapshot.create", result="failed").get().detail.startswith(
        f"refused: uuid {vm}: Another action on this VM is still running")


def _alive(job: Job, request: pytest.FixtureRequest) -> None:
    """Its worker (in another process) renews its lease until the test ends: the start is refused, not let in
    by reconciling the job (jobs/runner.start)."""
    heartbeat = liveness.Heartbeat(job.pk)
    assert heartbeat.start()
    request.addfinalizer(heartbeat.stop)


def test_refusals_are_audited_once_and_leave_the_vm_unlocked(admin_client: Client, admin_user: Any,
                                                             test_host: Host, request: pytest.FixtureRequest) -> None:
    vm = running_vm(test_host, "refused")
    # Another job works on the VM (e.g. in another panel process): the runner refuses the start.
    other = Job.objects.create(kind="vm.clone", host=test_host, owner=admin_user, target_type="vm",
                               target_name="refused", state=JobState.RUNNING, started=timezone.now(), rq_id="elsewhere")
    _alive(other, request)
    page = admin_client.post(snapshot_url("snapshot_create", vm), {"name": "s1"}, follow=True).content.decode()
    assert "Take snapshot: not started: Vm refused is already being worked on." in page
    assert not held(test_host, vm) and snapshot_names(test_host, vm) == []
    assert events("vm.snapshot.create") == [("refused", "failed")]
    # A disk that cannot hold a snapshot: refused before libvirt is asked, audited once.
    page = admin_client.post(snapshot_url("snapshot_create", WEB_01_UUID), {"name": "s1"}, follow=True)
    assert "No snapshot was taken: web-01 cannot be snapshotted: a running VM" in page.content.decode()
    assert events("vm.snapshot.create") == [("refused", "failed"), ("web-01", "failed")]
    assert Job.objects.count() == 1 and not held(test_host, WEB_01_UUID)


def test_a_failed_snapshot_job_says_why_and_unlocks(admin_client: Client, test_host: Host,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: libvirt.virDomain, xml: str, flags: int = 0) -> None:
        raise libvirt.libvirtError("internal error: no space left for the memory (this test)")

    monkeypatch.setattr(libvirt.virDomain, "snapshotCreateXML", refuse)
    vm = running_vm(test_host, "full")
    job = wait_until(job_of(admin_client.post(snapshot_url("snapshot_create", vm), {"name": "s1"})))
    assert job.state == JobState.FAILED and "no space left for the memory (this test)" in job.result
    assert not held(test_host, vm) and events("vm.snapshot.create") == [("full", "failed")]


def dead_snapshot_job(host: Host, owner: Any, vm: str, vm_name: str, state: str = JobState.RUNNING) -> Job:
    """The Job row of a snapshot whose worker died (or that never ran), holding the VM's lock."""
    lock = services.vm_locks.acquire(str(host.pk), vm)
    return Job.objects.create(
        kind="vm.snapshot.create", host=host, owner=owner, state=state, target_type="vm", target_name=vm_name,
        started=timezone.now() if state == JobState.RUNNING else None, phase="writing memory and disks",
        summary=f"snapshot s1 of {vm_name} with its memory", rq_id="gone",
        params={"host_key": str(host.pk), "vm": vm, "vm_name": vm_name, "lock": lock, "name": "s1",
                "description": ""})


def test_a_snapshot_whose_worker_died_is_done_when_libvirt_has_it(admin_user: Any, test_host: Host) -> None:
    vm = running_vm(test_host, "found")
    services.call(test_host, lambda conn: conn.lookupByUUIDString(vm).snapshotCreateXML(
        "<domainsnapshot><name>s1</name></domainsnapshot>", 0))  # libvirt finished after the worker died
    job = dead_snapshot_job(test_host, admin_user, vm, "found")
    reconcile()
    job.refresh_from_db()
    assert job.state == JobState.DONE and "snapshot s1 of found was taken" in job.result
    assert not held(test_host, vm) and events("vm.snapshot.create") == [("found", "ok")]


def test_a_snapshot_whose_worker_died_waits_while_libvirt_works(admin_user: Any, test_host: Host,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    vm = running_vm(test_host, "still")
    job = dead_snapshot_job(test_host, admin_user, vm, "still")
    monkeypatch.setattr(snapshots, "has_active_job", lambda dom: True)
    assert reconcile() == 0
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and "libvirt is still working on still" in job.result
    assert held(test_host, vm) and not events("vm.snapshot.create")
    monkeypatch.setattr(snapshots, "has_active_job", lambda dom: False)  # it ended without a snapshot
    assert reconcile() == 1
    job.refresh_from_db()
    assert job.state == JobState.INTERRUPTED and job.result == (
        "Interrupted: the worker running it stopped (writing memory and disks). Snapshot s1 was not taken.")
    assert not held(test_host, vm) and events("vm.snapshot.create") == [("still", "failed")]


def test_a_snapshot_cancelled_before_it_ran_unlocks_the_vm(admin_client: Client, admin_user: Any,
                                                           test_host: Host) -> None:
    vm = running_vm(test_host, "queued")
    job = dead_snapshot_job(test_host, admin_user, vm, "queued", state=JobState.QUEUED)
    admin_client.post(reverse("jobs:cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and not held(test_host, vm)


def test_memory_figures_from_libvirt_job_statistics() -> None:
    class Dom:
        def __init__(self, stats: dict[str, int] | None) -> None:
            self.stats = stats

        def jobStats(self, flags: int = 0) -> dict[str, int]:
            if self.stats is None:
                raise libvirt.libvirtError("this function is not supported by the connection driver")
            return self.stats

    assert snapshots.memory_progress(Dom({"type": 2, "memory_total": 400, "memory_processed": 100})) == (100, 400)
    assert snapshots.memory_progress(Dom({"type": 2})) is None  # a job without memory figures: phase only
    assert snapshot_jobs.WRITING == "writing memory and disks"


def test_the_test_driver_has_no_job_statistics(test_host: Host) -> None:
    ask = lambda fn: services.call(test_host, lambda conn: fn(conn.lookupByUUIDString(WEB_01_UUID)))  # noqa: E731
    assert ask(snapshots.memory_progress) is None and ask(snapshots.has_active_job) is False


# --- a creation that allocates its disk -----------------------------------------------------------


def volume_info(host: Host, name: str) -> tuple[int, int] | None:
    def look(conn: libvirt.virConnect) -> tuple[int, int] | None:
        pool = conn.storagePoolLookupByName("images")
        if name not in pool.listVolumes():
            return None
        info = pool.storageVolLookupByName(name).info()
        return int(info[1]), int(info[2])

    return services.call(host, look)


def domain_names(host: Host) -> list[str]:
    return sorted(services.call(host, lambda conn: [d.name() for d in conn.listAllDomains(0)]))


def test_a_creation_that_allocates_its_disk_is_a_job(admin_client: Client, admin_user: Any, test_host: Host) -> None:
    job = job_of(admin_client.post(CREATE_URL, {**GOOD_FORM, "disk_allocate": "on", "start": "on"}))
    job = wait_until(job)
    assert job.state == JobState.DONE, job.result
    new_uuid = job.params["uuid"]
    assert (job.kind, job.target_type, job.target_name, job.owner) == ("vm.create", "vm", "app-01", admin_user)
    assert job.result == (f"app-01 created (uuid {new_uuid}) and started; boot disk: new raw volume "
                          "images/app-01.img of 2048 MiB, allocated in full.")
    assert (job.done, job.total) == (2 * GIB, 2 * GIB)

    def facts(conn: libvirt.virConnect) -> tuple[bool, Domain]:
        dom = conn.lookupByUUIDString(new_uuid)
        return bool(dom.isActive()), Domain.from_xml(dom.XMLDesc(0))

    running, dom = services.call(test_host, facts)
    assert running and dom.name == "app-01" and dom.uuid == new_uuid and dom.vcpus == 2
    assert dom.disks[0].source_file == "/var/lib/libvirt/images/app-01.img"
    assert volume_info(test_host, "app-01.img") == (2 * GIB, 2 * GIB)  # capacity, allocation: all of it
    [event] = AuditEvent.objects.filter(action="vm.create")
    assert (event.result, event.object_name, job.audit) == ("ok", "app-01", event)
    status = admin_client.get(reverse("jobs:status", args=[job.pk])).json()
    assert status["link"] == reverse("instances:detail", args=["testhost", new_uuid])
    assert "Open the VM" in admin_client.get(job.get_absolute_url()).content.decode()


def test_a_creation_without_allocation_stays_in_the_request(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post(CREATE_URL, GOOD_FORM)
    assert response.status_code == 302 and response["Location"].startswith("/instances/testhost/")
    assert not Job.objects.exists() and volume_info(test_host, "app-01.img") == (2 * GIB, 0)
    assert events("vm.create") == [("app-01", "ok")]


def test_a_refused_creation_job_is_audited_once(admin_client: Client, admin_user: Any, test_host: Host,
                                                request: pytest.FixtureRequest) -> None:
    other = Job.objects.create(kind="vm.create", host=test_host, owner=admin_user, target_type="vm",
                               target_name="app-01", state=JobState.RUNNING, started=timezone.now(), rq_id="elsewhere")
    _alive(other, request)
    before = domain_names(test_host)
    response = admin_client.post(CREATE_URL, {**GOOD_FORM, "disk_allocate": "on"})
    assert response.status_code == 200
    assert "Create VM: not started: Vm app-01 is already being worked on." in str(response.context["form"].errors)
    assert events("vm.create") == [("app-01", "failed")]
    assert domain_names(test_host) == before and volume_info(test_host, "app-01.img") is None
    assert Job.objects.count() == 1


def test_a_failed_creation_job_removes_its_volume(admin_client: Client, test_host: Host,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: libvirt.virConnect, xml: str, flags: int = 0) -> None:
        raise libvirt.libvirtError("XML error: refused by this test")

    monkeypatch.setattr(libvirt.virConnect, "defineXMLFlags", refuse)
    job = wait_until(job_of(admin_client.post(CREATE_URL, {**GOOD_FORM, "disk_allocate": "on"})))
    assert job.state == JobState.FAILED and "refused by this test" in job.result
    assert volume_info(test_host, "app-01.img") is None and "app-01" not in domain_names(test_host)
    assert events("vm.create") == [("app-01", "failed")]
    assert admin_client.get(reverse("jobs:status", args=[job.pk])).json()["link"] is None


def dead_create_job(host: Host, owner: Any, phase: str, new_uuid: str = "77777777-7777-4777-8777-777777777777",
                    started: bool = True) -> Job:
    spec = NewVM(name="half", vcpus=1, memory_mib=64, disk=NewVolume("images", 16, "raw", allocate=True,
                                                                     name="half.img"),
                 domain_type="test", uuid=new_uuid)
    return Job.objects.create(
        kind="vm.create", host=host, owner=owner, state=JobState.RUNNING if started else JobState.QUEUED,
        started=timezone.now() if started else None, target_type="vm", target_name="half", phase=phase,
        summary="create half (16 MiB allocated now)", rq_id="gone",
        params={"spec": spec_params(spec), "start": False, "uuid": new_uuid})


def test_a_creation_whose_worker_died_removes_its_half_made_volume(admin_user: Any, test_host: Host) -> None:
    services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").createXML(
        "<volume><name>half.img</name><capacity unit='MiB'>16</capacity></volume>", 0).name())
    job = dead_create_job(test_host, admin_user, "allocating disk")
    assert reconcile() == 1
    job.refresh_from_db()
    assert job.state == JobState.INTERRUPTED and job.result.endswith("Removed the half-made volume images/half.img.")
    assert volume_info(test_host, "half.img") is None and events("vm.create") == [("half", "failed")]


def test_a_creation_whose_worker_died_keeps_a_defined_vm(client: Client, admin_client: Client, admin_user: Any,
                                                         test_host: Host) -> None:
    job = dead_create_job(test_host, admin_user, "defining")
    spec = spec_from_params(job.params["spec"])
    services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").createXML(
        "<volume><name>half.img</name><capacity unit='MiB'>16</capacity></volume>", 0).name())
    services.call(test_host, lambda conn: conn.defineXML(Domain.new(type="test", name="half").to_xml().replace(
        "<name>half</name>", f"<name>half</name><uuid>{spec.uuid}</uuid><memory>65536</memory>"
                             "<os><type arch='x86_64'>hvm</type></os>")).name())
    assert reconcile() == 1
    job.refresh_from_db()
    assert job.state == JobState.INTERRUPTED
    assert job.result.endswith(f"half was defined (uuid {spec.uuid}); it is kept.")
    assert volume_info(test_host, "half.img") is not None and "half" in domain_names(test_host)
    link = admin_client.get(reverse("jobs:status", args=[job.pk])).json()["link"]
    assert link == reverse("instances:detail", args=["testhost", spec.uuid])


def test_a_creation_that_never_began_made_nothing(admin_user: Any, test_host: Host) -> None:
    services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").createXML(
        "<volume><name>half.img</name><capacity unit='MiB'>16</capacity></volume>", 0).name())
    job = dead_create_job(test_host, admin_user, "", started=True)  # died before it began the volume
    reconcile()
    job.refresh_from_db()
    assert job.state == JobState.INTERRUPTED and job.result.endswith("It made nothing.")
    assert volume_info(test_host, "half.img") is not None  # not this job's: left alone


def test_a_spec_survives_the_job_params() -> None:
    spec = NewVM(name="x", vcpus=2, memory_mib=128, disk=NewVolume("images", 10, "raw", allocate=True, name="x.img"),
                 iso=PoolVolume("isos", "d.iso"), nics=(NIC(network="lan"), NIC(bridge="br0", model="e1000")),
                 uuid="88888888-8888-4888-8888-888888888888")
    assert spec_from_params(spec_params(spec)) == spec
    existing = NewVM(name="y", vcpus=1, memory_mib=64, disk=PoolVolume("images", "golden.img"))
    assert spec_from_params(spec_params(existing)) == existing
    assert NewVM(name="z", vcpus=1, memory_mib=64, disk=NewVolume("p", 1, name="../etc"), uuid="nope").problems() == [
        "volume name: letters, digits, '.', '-' and '_'", "uuid: not a UUID"]
