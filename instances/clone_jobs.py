"""The VM clone as a durable job (jobs/runner.py): copy each writable disk, then define the clone.

The source VM's lock is taken by the request that starts the job (so the refusal is immediate) and
handed to the job by its token: the job's worker renews it while it copies (services.vm_locks is shared
by every process when Redis is configured), and it is released when the job ends in any state, or by
the reconciliation when the job's worker died, after the half-made copies and definition are removed.
Cancel stops it before its next disk (or before the definition), its copies removed as on a failure.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from hosts import services
from hosts.models import Host
from jobs.models import Job
from jobs.runner import Cancelled, Handle, Kind, StillBusy, Target, register, start
from jobs.words import Words, ours
from virt.clone import (
    CALL_TIMEOUT,
    ClonePlan,
    DiskCopy,
    Stopped,
    plan_from_params,
    plan_params,
    remove_leftovers,
    run_clone,
    source_config,
)
from virt.errors import Message, Unreachable, VirtError, gettext_noop, joined

TIDY_TIMEOUT = 60.0


def _clone(handle: Handle) -> Words:
    host, p = handle.host, handle.params
    if host is None:
        raise VirtError(gettext_noop("The job's host was removed from the panel."))
    key, vm, token = p["host_key"], p["vm"], p["lock"]
    services.vm_locks.adopt(key, vm, token)  # Busy if it lapsed and somebody else took the VM meanwhile
    try:
        handle.progress(phase=Message(gettext_noop("reading the source VM")))
        xml = services.call(host, lambda conn: source_config(conn.lookupByUUIDString(vm)), CALL_TIMEOUT)
        plan = plan_from_params(p["plan"], xml)
        try:
            new_uuid = run_clone(plan, lambda fn, timeout: services.change(host, fn, timeout),
                                 lambda done, total, phase: handle.progress(done, total, ours(phase)),
                                 handle.cancel_requested)  # between disks, and before the definition
        except Stopped as exc:
            raise Cancelled(exc) from None
        handle.params = {**p, "new_uuid": new_uuid}
        Job.objects.filter(pk=handle.job.pk).update(params=handle.params)
        return Message(gettext_noop("{name} is ready (uuid {uuid}); disks: {disks}."), name=plan.new_name,
                       uuid=new_uuid, disks=_disks(plan.disks))
    finally:
        services.vm_locks.release_token(key, vm, token)


def _disks(disks: list[DiskCopy]) -> Words:
    """Each copy made ("images/a.img -> b.img"): names, as they are."""
    return ", ".join(f"{d.pool}/{d.source_volume} -> {d.new_volume}" for d in disks) or Message(gettext_noop("none"))


def _clone_interrupted(job: Job) -> Words:
    """The worker died: remove the copies and the definition it may have left, then unlock the source VM."""
    p = job.params
    words: Words = ""
    if job.started is not None and job.host is not None:
        host = job.host
        disks = [DiskCopy(**disk) for disk in p["plan"]["disks"]]
        try:
            left = services.change(host, lambda conn: remove_leftovers(conn, p["plan"]["new_name"], disks),
                                   TIDY_TIMEOUT)
        except Unreachable as exc:
            raise StillBusy(Message(gettext_noop("{host} does not answer ({error}); what the clone left is removed "
                                                 "once it does."), host=host.name, error=exc)) from None
        except VirtError as exc:
            words = Message(gettext_noop("What the clone left could not all be removed: {error}"), error=exc)
        else:
            if left.building:
                raise StillBusy(Message(gettext_noop("libvirt is still writing {names}; the partial copies are "
                                                     "removed once it has finished."),
                                        names=", ".join(str(name) for name in left.building)))
            if left.kept:
                words = ours(left.kept)
            elif left.removed:
                words = Message(gettext_noop("Removed {what}."), what=joined(left.removed, ", "))
            else:
                words = Message(gettext_noop("It left nothing."))
    _unlock(job)
    return words


def _unlock(job: Job) -> None:
    """Cancelled before it ran: the source VM's lock, taken by the request, is let go of."""
    services.vm_locks.release_token(job.params["host_key"], job.params["vm"], job.params["lock"])


def _new_vm_page(job: Job) -> str | None:
    new_uuid = job.params.get("new_uuid")
    return reverse("instances:detail", args=[job.host.name, new_uuid]) if job.host and new_uuid else None


CLONE = register(Kind("vm.clone", gettext_noop("Clone VM"), _clone, cancellable=True, unit="bytes", link=_new_vm_page,
                      link_text=gettext_noop("Open the clone"),
                      interrupted=_clone_interrupted, never_ran=_unlock))


def start_clone(request: HttpRequest, host: Host, vm_uuid: str, plan: ClonePlan, lock: str) -> Job:
    """Start the clone planned (and checked) in the request, which holds the source VM's lock: `lock` is its
    token, handed to the job. Raises Busy or VirtError (the lock is then still the caller's)."""
    return start(request, CLONE.name, host, Target("vm", plan.source_name),
                 {"host_key": str(host.pk), "vm": vm_uuid.lower(), "lock": lock, "plan": plan_params(plan)},
                 summary=Message(gettext_noop("clone of {source} as {name}"), source=plan.source_name,
                                 name=plan.new_name))
