"""The VM's lock is released after every failure path: generated from the declarations.

Every declared operation with lock=True (webkvm/operations.py and the apps' operations modules) has a row
below that drives it through the API on libvirt's test driver, with the host refusing whatever is asked of
the VM while the panel holds its lock (an injected libvirtError, as the host's own refusals reach the panel).
The row must really reach the lock (the fault has to fire under it), the API must answer the failure (no
500), a job it started must end, and afterwards the VM's lock must be free: the next change of the VM is
not "busy". A new lock=True operation without a row (or a reasoned entry in SKIPPED) fails here.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.urls import resolve

from hosts import services
from hosts.models import Host
from jobs.models import Job
from tests.conftest import WEB_01_UUID
from tests.unit import test_api_access
from tests.unit.test_api_access import TokenClient
from tests.unit.test_migrate import world_host
from tests.unit.test_routes import JOB_ID
from tests.unit.test_snapshot_create_jobs import running_vm
from tests.unit.test_vm_devices import BOX_UUID, GOOD_ATTACH, add_volume, define_box
from webkvm.operations import OPERATIONS, Operation, access_of

pytestmark = pytest.mark.django_db(transaction=True)  # jobs run (and release the lock) in their own threads
callers = test_api_access.callers  # a token per persona (fixture)
BOX_MAC = "52:54:00:aa:bb:cc"
for app in ("hosts", "instances", "networks", "storage"):  # every declaration, whoever imported what
    importlib.import_module(f"{app}.operations")

Prepare = Callable[[Host, TokenClient, Path], str]  # (host, an admin's token, a temporary folder) -> VM


def box(state: str) -> Prepare:
    """The VM "box" (an IDE CD-ROM drive, a NIC on lan) in `state`: running, shut off, paused or saved."""
    def make(host: Host, _admin: TokenClient, _tmp: Path) -> str:
        define_box(host, running=state != "shut off")

        def settle(conn: libvirt.virConnect) -> None:
            dom = conn.lookupByUUIDString(BOX_UUID)
            if state == "paused":
                dom.suspend()
            elif state == "saved":
                dom.managedSave(0)
        services.call(host, settle)
        return BOX_UUID
    return make


def disked(host: Host, _admin: TokenClient, _tmp: Path) -> str:
    """A running VM with a qcow2 disk vda (snapshots with memory run as jobs)."""
    return running_vm(host, "disked")


def shut_off_disked(host: Host, admin: TokenClient, tmp: Path) -> str:
    vm = disked(host, admin, tmp)
    services.call(host, lambda conn: conn.lookupByUUIDString(vm).destroy())
    return vm


def with_snapshot(host: Host, admin: TokenClient, tmp: Path) -> str:
    vm = shut_off_disked(host, admin, tmp)
    taken = admin.post(f"/api/v1/vms/testhost/{vm}/snapshots/", {"name": "s1"})
    assert taken.status_code == 201, taken.content
    return vm


def with_history(_host: Host, admin: TokenClient, _tmp: Path) -> str:
    """web-01 after one accepted XML edit: a definition to roll back to."""
    url = f"/api/v1/vms/testhost/{WEB_01_UUID}/xml/"
    opened = admin.get(url).json()
    edited = opened["xml"].replace("<vcpu placement='static'>2</vcpu>", "<vcpu placement='static'>3</vcpu>")
    assert admin.call("PUT", url, {"xml": edited, "version": opened["version"]}).status_code == 200
    return WEB_01_UUID


def xml_body(admin: TokenClient, vm: str) -> dict[str, Any]:
    opened = admin.get(f"/api/v1/vms/testhost/{vm}/xml/").json()
    return {"xml": opened["xml"].replace("<vcpu placement='static'>2</vcpu>", "<vcpu placement='static'>1</vcpu>"),
            "version": opened["version"]}


def rollback_body(admin: TokenClient, vm: str) -> dict[str, Any]:
    history = admin.get(f"/api/v1/vms/testhost/{vm}/xml/history/").json()
    return {"history_id": history["results"][0]["id"], "version": history["version"]}


def web_01(_host: Host, _admin: TokenClient, _tmp: Path) -> str:
    return WEB_01_UUID


def second_host(_host: Host, _admin: TokenClient, tmp: Path) -> str:
    """web-01, and an empty host "empty" to migrate it to (the test driver cannot migrate)."""
    world_host(tmp, "empty")
    return WEB_01_UUID


@dataclass(frozen=True)
class Row:
    op: str  # the declared operation the request runs (checked against the route's declaration)
    method: str
    path: str  # under /api/v1/vms/testhost/VM/
    body: dict[str, Any] | Callable[[TokenClient, str], dict[str, Any]] | None = None
    vm: Prepare = web_01  # makes the VM (before the fault is in place); returns its UUID
    job: bool = False  # runs as a job: the lock is handed over and released when the job ends
    spare: int = 0  # the host answers this many locked calls before it refuses (a later failure path)
    case: str = ""  # the row's id beyond its operation (an operation with several failure paths)


def action(name: str, state: str) -> Row:
    return Row(f"vm.{name}", "POST", f"actions/{name}/", {}, box(state))


ROWS = [
    *(action(name, "running") for name in ("shutdown", "destroy", "reboot", "reset", "suspend", "managedsave",
                                           "autostart-on", "autostart-off")),
    action("start", "shut off"),
    action("resume", "paused"),
    action("restore", "saved"),
    action("discard-save", "saved"),
    Row("vm.rename", "PUT", "name/", {"name": "renamed"}, box("shut off")),
    Row("vm.describe", "PUT", "description/", {"title": "T", "description": "d"}),
    Row("vm.disk.attach", "POST", "disks/", GOOD_ATTACH),
    Row("vm.disk.detach", "DELETE", "disks/vda/", None, disked),
    Row("vm.cdrom.insert", "PUT", "cdroms/hdc/media/", {"iso": "images/debian-12.iso"}, box("running")),
    Row("vm.cdrom.eject", "DELETE", "cdroms/hdc/media/", None, box("running")),
    Row("vm.cdrom.add", "POST", "cdroms/", {"iso": "images/debian-12.iso"}, box("shut off")),
    Row("vm.cdrom.remove", "DELETE", "cdroms/hdc/", None, box("shut off")),
    Row("vm.nic.add", "POST", "nics/", {"source": "network:lan", "model": "e1000"}, box("running")),
    Row("vm.nic.remove", "DELETE", f"nics/{BOX_MAC}/", None, box("running")),
    Row("vm.nic.source", "PATCH", f"nics/{BOX_MAC}/", {"source": "network:lan"}, box("running")),
    Row("vm.nic.link", "PUT", f"nics/{BOX_MAC}/link/", {"up": False}, box("running")),
    Row("vm.resize", "PUT", "resize/", {"vcpus": 1}),
    Row("vm.boot", "PUT", "boot/", {"bootmenu": True, "order_disk-hdc": 1}, box("shut off")),
    Row("vm.vnc", "PUT", "vnc/", {"keymap": "de"}),
    Row("vm.xml.edit", "PUT", "xml/", xml_body),
    Row("vm.xml.rollback", "POST", "xml/rollback/", rollback_body, with_history),
    Row("vm.snapshot.create", "POST", "snapshots/", {"name": "s2"}, disked, job=True, case="running: a job"),
    Row("vm.snapshot.create", "POST", "snapshots/", {"name": "s2"}, shut_off_disked,
        case="shut off: in the request"),
    Row("vm.snapshot.revert", "POST", "snapshots/s1/revert/", {}, with_snapshot),
    Row("vm.snapshot.delete", "DELETE", "snapshots/s1/", None, with_snapshot),
    Row("vm.clone", "POST", "clone/", {"name": "copy"}, shut_off_disked, case="planning, in the request"),
    Row("vm.clone", "POST", "clone/", {"name": "copy"}, shut_off_disked, job=True, spare=1, case="copying, in its job"),
    Row("vm.migrate", "POST", "migrate/", {"target": "empty"}, second_host, job=True),
    Row("vm.delete", "DELETE", "?force_off=true", None, box("running")),
]
# Operations with lock=True that no row drives, and why (none today: every one is reachable on the test driver).
SKIPPED: dict[str, str] = {}


def _row_id(row: Row) -> str:
    return f"{row.op} ({row.case})" if row.case else row.op


def locked_operations() -> set[str]:
    return {name for name, op in OPERATIONS.items() if op.lock}


def test_every_locked_operation_has_a_row() -> None:
    driven = {row.op for row in ROWS}
    missing = locked_operations() - driven - set(SKIPPED)
    assert not missing, f"operations with lock=True and no row in ROWS (or reason in SKIPPED): {sorted(missing)}"
    assert not (driven | set(SKIPPED)) - locked_operations(), "rows for operations that take no lock (any more)"
    assert not driven & set(SKIPPED)


def declared_operation(method: str, url: str) -> Operation | None:
    """The operation the API route of `url` declares for `method` (its choice by the `by` argument too)."""
    match = resolve(url.split("?")[0])
    access = access_of(match.func)
    assert access is not None, url
    chosen = access.of_method(method) if access.methods else access
    if chosen is not None and chosen.by:
        return chosen.choices.get(match.kwargs[chosen.by])
    for op in OPERATIONS.values():  # a route declaring an Operation per method: find which
        if access.methods.get(method.upper()) is op:
            return op
    return None


@dataclass
class Fault:
    """Whatever the panel asks of a VM while it holds that VM's lock, the host refuses (libvirt's error, as a
    host out of memory or with a stuck domain job answers). `install()` puts it in place (after the row has
    made its VM), `spare` lets that many locked calls through first; `refused` lists the VMs it refused while
    they were locked."""

    monkeypatch: pytest.MonkeyPatch
    host_key: str
    spare: int = 0  # locked calls answered before the refusals start
    refused: list[str] = field(default_factory=list)

    def install(self) -> None:
        for name in ("lookupByUUIDString", "lookupByName"):
            self.monkeypatch.setattr(libvirt.virConnect, name, self._faulty(getattr(libvirt.virConnect, name)))

    def _faulty(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def lookup(conn: libvirt.virConnect, ident: str) -> Any:
            dom = real(conn, ident)
            uuid = str(dom.UUIDString())
            if services.vm_locks.held(self.host_key, uuid):
                if self.spare > 0:
                    self.spare -= 1
                    return dom
                self.refused.append(uuid)
                raise libvirt.libvirtError("internal error: the host refuses (injected by this test)")
            return dom
        return lookup


def jobs_ended(timeout: float = 20) -> list[Job]:
    end = time.monotonic() + timeout
    started = Job.objects.exclude(pk=JOB_ID)
    while any(job.active for job in started.all()):
        assert time.monotonic() < end, list(started)
        time.sleep(0.05)
    return list(started.all())


@pytest.mark.parametrize("row", ROWS, ids=[_row_id(r) for r in ROWS])
def test_the_lock_is_free_after_the_host_refuses(row: Row, callers: dict[str, TokenClient], test_host: Host,
                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fault = Fault(monkeypatch, str(test_host.pk), row.spare)
    admin = callers["admin"]
    add_volume(test_host, "debian-12.iso")
    vm = row.vm(test_host, admin, tmp_path)
    url = f"/api/v1/vms/testhost/{vm}/{row.path}"
    declared = declared_operation(row.method, url)
    assert declared is not None and declared.name == row.op, f"{row.method} {url} runs {declared}, not {row.op}"
    body = row.body(admin, vm) if callable(row.body) else row.body
    before = Job.objects.exclude(pk=JOB_ID).count()

    fault.install()
    response = admin.call(row.method, url, body)
    assert response.status_code < 500, response.content
    jobs = jobs_ended()
    answer = f"{response.status_code}: {response.content[:300]!r}"
    assert vm in fault.refused, f"the request never reached the lock ({answer})"
    if row.job:
        assert response.status_code == 202 and len(jobs) == before + 1, response.content
        assert jobs[-1].state == "failed", (jobs[-1].state, jobs[-1].error)
    else:
        assert response.status_code in (400, 404, 409), response.content
    assert not services.vm_locks.held(str(test_host.pk), vm), f"{row.op} left the VM locked after a failure"


def test_the_lock_is_free_when_the_host_cannot_be_reached(callers: dict[str, TokenClient]) -> None:
    """A change of a VM on a host whose connection cannot be opened fails before its work begins; the lock
    must go with it, so the next change is told the host is unavailable again, not "busy" (it was held until
    its expiry: the lock was released only by the work or by a call taken out of the queue)."""
    gone = Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    for _ in range(3):
        response = callers["admin"].call("DELETE", f"/api/v1/vms/gone/{WEB_01_UUID}/?force_off=1")
        assert response.status_code == 503 and response.json()["code"] == "host_unavailable", response.content
    assert not services.vm_locks.held(str(gone.pk), WEB_01_UUID)
