"""Creating a VM whose new disk is allocated up front, as a durable job (jobs/runner.py).

Writing a large volume in full can take minutes, so that creation runs on a job worker: "allocating
disk" (the volume's allocation is shown against its capacity), "defining", "starting". The request
chooses the VM's UUID and the volume's name before the job starts and stores them in its params, so
the job's link leads to the new VM and, when the job's worker died, the reconciliation finds what it
left: a VM that was defined is kept and said; a half-made volume without a VM is removed. A creation
without allocation stays in the request (instances/views/create.py). The job's kind is the operation's
name (instances/operations.py CREATE): every creation is audited as vm.create. Cancel stops it before its
next phase: what it made is removed as on a failure (virt.create.create_vm undoes it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import libvirt
from django import forms
from django.http import HttpRequest
from django.urls import reverse

from hosts import services
from hosts.models import Host
from instances import operations as ops
from jobs.models import Job, JobState
from jobs.runner import Cancelled, Handle, Kind, StillBusy, StopAsked, register
from jobs.words import Words, ours
from virt.create import (
    ALLOCATING,
    DEFINING,
    MAKING_DISK,
    MIB,
    STARTING,
    NewVM,
    NewVolume,
    create_vm,
    spec_from_params,
    spec_params,
    tidy_unfinished,
)
from virt.errors import Message, Unreachable, VirtError, gettext_noop, joined
from virt.volumes import allocation_of
from webkvm.operations import start_job

JOB_TIMEOUT = 24 * 3600.0  # the deadline of the libvirt call: as long as writing the disk takes
MEASURE_TIMEOUT = 10.0
TIDY_TIMEOUT = 60.0
BEGUN = (ALLOCATING, MAKING_DISK, DEFINING, STARTING)  # phases once the volume is being made
# The phases virt/create.py tells (shown translated by jobs.words.ours), for the catalogs.
PHASE_WORDS = (gettext_noop("allocating disk"), gettext_noop("making disk"), gettext_noop("defining"),
               gettext_noop("starting"))


def _create(handle: Handle) -> Words:
    host, p = handle.host, handle.params
    if host is None:
        raise VirtError(gettext_noop("The job's host was removed from the panel."))
    spec, start = spec_from_params(p["spec"]), bool(p["start"])
    disk = spec.disk
    total = disk.size_mib * MIB if isinstance(disk, NewVolume) else 0
    # The libvirt call tells its steps from the host's thread; this job's thread writes them to the Job.
    told: list[str] = []
    lock = threading.Lock()

    def step(phase: str) -> None:
        if handle.stopping.is_set():  # asked to stop: this phase is not begun, what was made is undone
            raise StopAsked(gettext_noop("Stopped before {phase}."), phase=ours(phase))
        with lock:
            told.append(phase)

    # Said before the call begins: from here on, a volume of the chosen name may be this job's (see BEGUN).
    first = (ALLOCATING if disk.allocate else MAKING_DISK) if isinstance(disk, NewVolume) else DEFINING
    handle.check_cancel()
    handle.progress(0, total, ours(first))
    try:
        pending = services.connection(host).submit(
            lambda conn: str(create_vm(conn, spec, start=start, step=step).UUIDString()), JOB_TIMEOUT)
    except ValueError as exc:  # a stored value that no longer validates
        raise VirtError("{error}", error=exc) from None  # its own words (a BadValue of ours, translated)
    try:
        new_uuid = handle.follow(pending.future, _measure(handle, host, spec, told, lock), every=1.0,
                                 watch_cancel=True)
    except StopAsked as exc:
        raise Cancelled(_undone(host, spec, exc)) from None
    finally:
        services.connection(host).reads.invalidate()  # the next page shows the new VM (or its absence)
    handle.progress(done=total, phase=Message(gettext_noop("done")))
    if start:
        return Message(gettext_noop("{name} created (uuid {uuid}) and started; {disk}."), name=spec.name,
                       uuid=new_uuid, disk=_disk_words(spec))
    return Message(gettext_noop("{name} created (uuid {uuid}); {disk}."), name=spec.name, uuid=new_uuid,
                   disk=_disk_words(spec))


def _measure(handle: Handle, host: Host, spec: NewVM, told: list[str], lock: threading.Lock
             ) -> Callable[[], int | None]:
    """The phase the libvirt call last told, and while allocating, the volume's allocation so far."""
    disk = spec.disk

    def measure() -> int | None:
        with lock:
            phase = told[-1] if told else ""
        if phase and phase != handle.job.phase:
            handle.progress(phase=ours(phase))
        if not isinstance(disk, NewVolume) or phase not in (ALLOCATING, MAKING_DISK):
            return None
        found = services.call(host, lambda conn: allocation_of(conn, disk.pool, disk.name), MEASURE_TIMEOUT)
        return found[0] if found else 0

    return measure


def _undone(host: Host, spec: NewVM, stopped: StopAsked) -> Words:
    """What a creation stopped between phases says: the phase it did not begin (and what create_vm could not
    remove), then, when libvirt finds neither the new VM nor its new volume, that nothing is left."""
    disk = spec.disk

    def nothing_left(conn: libvirt.virConnect) -> bool:
        try:
            conn.lookupByUUIDString(spec.uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        else:
            return False
        return not isinstance(disk, NewVolume) or not disk.name or allocation_of(conn, disk.pool, disk.name) is None

    try:
        gone = services.call(host, nothing_left, MEASURE_TIMEOUT)
    except VirtError:
        gone = False  # the host does not answer: the words of create_vm are all there is
    return Message(gettext_noop("{stopped} Nothing it made is left."), stopped=stopped) if gone else stopped


def _disk_words(spec: NewVM) -> Message:
    disk = spec.disk
    if isinstance(disk, NewVolume):
        if disk.allocate:
            return Message(gettext_noop("boot disk: new {format} volume {pool}/{name} of {size} MiB, allocated in "
                                        "full"), format=disk.format, pool=disk.pool, name=disk.name, size=disk.size_mib)
        return Message(gettext_noop("boot disk: new {format} volume {pool}/{name} of {size} MiB"), format=disk.format,
                       pool=disk.pool, name=disk.name, size=disk.size_mib)
    if disk:
        return Message(gettext_noop("boot disk: volume {pool}/{volume}"), pool=disk.pool, volume=disk.volume)
    return Message(gettext_noop("no disk"))


def _create_interrupted(job: Job) -> Words:
    """The worker died: keep (and say) a VM that was defined; remove a half-made volume without a VM."""
    if job.started is None or job.host is None:
        return Message(gettext_noop("It made nothing."))
    host, spec = job.host, spec_from_params(job.params["spec"])
    try:
        left = services.change(host, lambda conn: tidy_unfinished(conn, spec, volume_made=job.phase in BEGUN),
                               TIDY_TIMEOUT)
    except Unreachable as exc:
        raise StillBusy(Message(gettext_noop("{host} does not answer ({error}); what the creation left is looked at "
                                             "once it does."), host=host.name, error=exc)) from None
    except VirtError as exc:
        return Message(gettext_noop("What the creation left could not be looked at: {error}"), error=exc)
    if left.building:
        raise StillBusy(Message(gettext_noop("libvirt is still writing the new volume of {name}; it is removed once "
                                             "it has finished."), name=spec.name))
    if left.defined:
        Job.objects.filter(pk=job.pk).update(params={**job.params, "defined": True})  # the link leads to it
    return joined(left.words, " ") if left.words else ""


def _new_vm_page(job: Job) -> str | None:
    made = job.state == JobState.DONE or job.params.get("defined")
    return reverse("instances:detail", args=[job.host.name, job.params["uuid"]]) if job.host and made else None


CREATE = register(Kind(ops.CREATE.job, gettext_noop("Create VM"), _create, cancellable=True, unit="bytes",
                       link=_new_vm_page,
                       link_text=gettext_noop("Open the VM"), interrupted=_create_interrupted))


def start_create(request: HttpRequest, host: Host, spec: NewVM, start: bool,
                 form: forms.Form | None = None, *, quiet: bool = False) -> Job | None:
    """Start the creation of `spec` (its UUID and new volume's name chosen, see module doc). None when it
    could not start: the refusal is audited and said on the form (`quiet`: raised, for the API)."""
    disk = spec.disk
    size: Words = Message(gettext_noop("{size} MiB allocated now"), size=disk.size_mib) \
        if isinstance(disk, NewVolume) else f"{disk.pool}/{disk.volume}" if disk else Message(gettext_noop("no disk"))
    job: Job | None = start_job(request, ops.CREATE, host=host, name=spec.name,
                                params={"spec": spec_params(spec), "start": start, "uuid": spec.uuid},
                                summary=Message(gettext_noop("create {name} ({disk})"), name=spec.name, disk=size),
                                form=form, quiet=quiet)
    return job
