"""Creating a VM from a cloud image, as a durable job (jobs/runner.py): "copying image" (the new disk's allocation
shown against the image's), "uploading seed", "defining", "starting" (virt/image_create.py).

The request checks the form, chooses the VM's UUID, its disk volume's name and its first NIC's MAC, builds the
cloud-init seed (virt/cloudinit.py: every field error is said before anything starts) and stores the seed's ISO
bytes in the job's params, base64 (about 60 KiB). The clear password is never stored anywhere: the seed holds
only its SHA-512 crypt hash, and the job drops the seed from its params as soon as it ends.

Two kinds, one work: an admin's (vm.create-from-image) and a user's within their quota (vm.create-own). A user's
creation carries the quota reservation (instances/quotas.reserve, made by the request): confirmed when the VM is
defined (the user becomes its owner with every grant), released when the creation fails or never runs.

Cancel stops it before its next phase: what it made is removed as on a failure (virt.image_create undoes it and
says so), and a user's reservation is released.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

from django import forms
from django.http import HttpRequest
from django.urls import reverse

from hosts import services
from hosts.models import Host
from instances import operations as ops
from instances import quotas
from instances.models import OwnedVM
from jobs.models import Job, JobState
from jobs.runner import Cancelled, Handle, Kind, StillBusy, StopAsked, register
from jobs.words import Words, ours
from virt import cloudinit
from virt.errors import Message, Text, Unreachable, VirtError, gettext_noop, joined
from virt.image_create import COPYING, PHASES, ImageVM, create_from_image, image_size, spec_from_params, spec_params
from virt.sharing import volume_users
from virt.volumes import allocation_of, remove_partial
from virt.xml.codecs import iec
from webkvm.operations import Operation, start_job

JOB_TIMEOUT = 24 * 3600.0  # the deadline of the libvirt call: as long as copying the image takes
MEASURE_TIMEOUT = 10.0
TIDY_TIMEOUT = 60.0
# The phases virt/image_create.py tells (shown translated by jobs.words.ours), for the catalogs.
PHASE_WORDS = (gettext_noop("copying image"), gettext_noop("uploading seed"), gettext_noop("defining"),
               gettext_noop("starting"))


def _owned(params: dict[str, Any]) -> OwnedVM | None:
    pk = params.get("owned")
    return OwnedVM.objects.filter(pk=pk).first() if pk else None


def _forget_seed(job: Job) -> None:
    """The seed (it holds the password's hash) is not kept once the job has ended."""
    params = dict(Job.objects.filter(pk=job.pk).values_list("params", flat=True).first() or {})
    if params.pop("seed", None) is not None:
        Job.objects.filter(pk=job.pk).update(params=params)


def _create(handle: Handle) -> Words:
    host, p = handle.host, handle.params
    if host is None:
        raise VirtError(gettext_noop("The job's host was removed from the panel."))
    owned = _owned(p)
    try:
        new_uuid, spec, phases = _run(handle, host, p)
    except BaseException:
        if owned is not None:
            quotas.release(owned)
        raise
    finally:
        _forget_seed(handle.job)
    if owned is not None:
        quotas.confirm(owned, new_uuid, spec.name)
    template = (gettext_noop("{name} created (uuid {uuid}) and started: its disk {disk} is a linked clone of {image}, "
                             "its cloud-init seed {seed}.") if spec.linked else
                gettext_noop("{name} created (uuid {uuid}) and started: its disk {disk} is a copy of {image}, its "
                             "cloud-init seed {seed}."))
    made = Message(template, name=spec.name, uuid=new_uuid, disk=f"{spec.disk_pool}/{spec.disk_volume}",
                   image=spec.image_name or spec.image.volume, seed=f"{spec.disk_pool}/{spec.seed_volume}")
    if spec.user:
        made = Message(gettext_noop("{made} Log in as {user}."), made=made, user=spec.user)
    return Message(gettext_noop("{first} {then}"), first=made, then=phases)


def _timed(told: list[tuple[str, float]], ended: float) -> Words:
    """Each phase with how long it took: a phase shorter than the page's refresh is seen here."""
    spans = [Text("{phase} {seconds} s", phase=ours(phase), seconds=f"{max(until - began, 0):.1f}")
             for (phase, began), (_, until) in zip(told, [*told[1:], ("", ended)], strict=True)]
    return Message(gettext_noop("Phases: {phases}."), phases=joined(spans, ", ")) if spans else ""


def _run(handle: Handle, host: Host, p: dict[str, Any]) -> tuple[str, ImageVM, Words]:
    try:
        spec, seed = spec_from_params(p["spec"]), base64.b64decode(p["seed"])
    except (KeyError, TypeError, ValueError) as exc:  # a stored value that no longer fits
        raise VirtError(gettext_noop("The job's parameters are not usable: {error}"), error=exc) from None
    # What the copy will write: the image's allocation (a linked clone writes nothing now).
    total = 0 if spec.linked else services.call(host, lambda conn: image_size(conn, spec.image)[1], MEASURE_TIMEOUT)
    told: list[tuple[str, float]] = []  # each phase the libvirt call entered, and when
    lock = threading.Lock()

    def step(phase: str) -> None:
        if handle.stopping.is_set():  # asked to stop: this phase is not begun, what was made is undone
            raise StopAsked(gettext_noop("Stopped before {phase}."), phase=ours(phase))
        with lock:
            told.append((phase, time.monotonic()))

    handle.check_cancel()
    handle.progress(0, total, ours(COPYING))
    pending = services.connection(host).submit(lambda conn: create_from_image(conn, spec, seed, step), JOB_TIMEOUT)
    try:
        new_uuid: str = handle.follow(pending.future, _measure(handle, host, spec, told, lock, total), every=1.0,
                                      watch_cancel=True)
    except StopAsked as exc:  # its words: the phase it did not begin, and what was removed again
        raise Cancelled(exc) from None
    finally:
        services.connection(host).reads.invalidate()  # the next page shows the new VM (or its absence)
        with lock:
            last = told[-1][0] if told else ""
        if last and last != handle.job.phase:  # a failure says the phase it failed in
            handle.progress(phase=ours(last))
    handle.progress(done=total, phase=Message(gettext_noop("done")))
    return new_uuid, spec, _timed(told, time.monotonic())


def _measure(handle: Handle, host: Host, spec: ImageVM, told: list[tuple[str, float]], lock: threading.Lock,
             total: int) -> Callable[[], int | None]:
    """The phase the libvirt call last told and, while copying, the new disk's allocation so far."""

    def measure() -> int | None:
        with lock:
            phase = told[-1][0] if told else ""
        if phase and phase != handle.job.phase:
            handle.progress(phase=ours(phase))
        if spec.linked or phase not in ("", COPYING):
            return None
        found = services.call(host, lambda conn: allocation_of(conn, spec.disk_pool, spec.disk_volume),
                              MEASURE_TIMEOUT)
        return min(found[0], total) if found else 0

    return measure


def _interrupted(job: Job) -> Words:
    """The worker died: a VM that was defined is kept (and becomes its creator's); otherwise the disk and the
    seed it made are removed (unless a VM uses them) and the quota reservation is given back."""
    _forget_seed(job)
    owned = _owned(job.params)
    if job.started is None or job.host is None:
        if owned is not None:
            quotas.release(owned)
        return Message(gettext_noop("It made nothing."))
    host, spec = job.host, spec_from_params(job.params["spec"])
    try:
        words, defined = services.change(host, lambda conn: _tidy(conn, spec, job.phase in PHASES), TIDY_TIMEOUT)
    except Unreachable as exc:
        raise StillBusy(Message(gettext_noop("{host} does not answer ({error}); what the creation left is looked at "
                                             "once it does."), host=host.name, error=exc)) from None
    except VirtError as exc:
        return Message(gettext_noop("What the creation left could not be looked at: {error}"), error=exc)
    if defined:
        Job.objects.filter(pk=job.pk).update(params={**job.params, "defined": True})  # the link leads to it
        if owned is not None:
            quotas.confirm(owned, spec.uuid, spec.name)
    elif owned is not None:
        quotas.release(owned)
    return words


def _tidy(conn: Any, spec: ImageVM, begun: bool) -> tuple[Words, bool]:
    import libvirt

    try:
        dom = conn.lookupByUUIDString(spec.uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
    else:
        return Message(gettext_noop("{name} was defined (uuid {uuid}); it is kept."), name=dom.name(),
                       uuid=spec.uuid), True
    if not begun:
        return Message(gettext_noop("It made nothing.")), False
    words: list[Text] = []
    for volume in (spec.seed_volume, spec.disk_volume):
        try:
            if volume_users(conn, spec.disk_pool, volume):
                continue
        except libvirt.libvirtError:
            continue
        if volume == spec.seed_volume:
            if cloudinit.remove_seed(conn, spec.disk_pool, volume):
                words.append(Text(gettext_noop("Removed the seed {volume}."), volume=f"{spec.disk_pool}/{volume}"))
            continue
        outcome = remove_partial(conn, spec.disk_pool, volume)
        if outcome == "building":
            raise StillBusy(Message(gettext_noop("libvirt is still copying the image for {name}; it is removed once "
                                                 "it has finished."), name=spec.name))
        if outcome == "removed":
            words.append(Text(gettext_noop("Removed the half-made disk {volume}."),
                              volume=f"{spec.disk_pool}/{volume}"))
    return (joined(words, " ") if words else Message(gettext_noop("It made nothing."))), False


def _never_ran(job: Job) -> None:
    _forget_seed(job)
    owned = _owned(job.params)
    if owned is not None:
        quotas.release(owned)


def _new_vm_page(job: Job) -> str | None:
    made = job.state == JobState.DONE or job.params.get("defined")
    return reverse("instances:detail", args=[job.host.name, job.params["uuid"]]) if job.host and made else None


def _kind(op: Operation) -> Kind:
    return register(Kind(op.job, op.label, _create, cancellable=True, unit="bytes", link=_new_vm_page,
                         link_text=gettext_noop("Open the VM"),
                         interrupted=_interrupted, never_ran=_never_ran))


CREATE_FROM_IMAGE = _kind(ops.CREATE_FROM_IMAGE)
CREATE_OWN = _kind(ops.CREATE_OWN)


def start_create(request: HttpRequest, op: Operation, host: Host, spec: ImageVM, seed: bytes, *,
                 owned: OwnedVM | None = None, form: forms.Form | None = None, quiet: bool = False) -> Job | None:
    """Start the creation (the spec with its UUID, disk name and MAC chosen). None when it could not start: the
    refusal is audited and said on the form (`quiet`: raised, for the API); a reservation is released then."""
    params = {"spec": spec_params(spec), "seed": base64.b64encode(seed).decode(), "uuid": spec.uuid,
              "owned": owned.pk if owned is not None else None}
    template = (gettext_noop("create {name} from {image} (linked clone, {size} disk in {pool})") if spec.linked else
                gettext_noop("create {name} from {image} (copy, {size} disk in {pool})"))
    summary = Message(template, name=spec.name, image=spec.image_name or spec.image.volume, size=iec(spec.disk_bytes),
                      pool=spec.disk_pool)
    try:
        job: Job | None = start_job(request, op, host=host, name=spec.name, params=params, summary=summary,
                                    form=form, quiet=quiet)
    except BaseException:
        if owned is not None:
            quotas.release(owned)
        raise
    if job is None and owned is not None:
        quotas.release(owned)
    return job
