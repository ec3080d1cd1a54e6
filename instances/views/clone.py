"""Clone a shut-off VM (admins: a clone is a new VM, and creating VMs is theirs).

The source VM's lock is held from the check to the end of the copy, so nobody starts it (through
the panel) while its disks are read. The copy runs as a durable job (instances/clone_jobs.py) whose
page shows its progress; its one audit record is written when it ends, with the outcome.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.http import HttpRequest, QueryDict
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts import services
from instances import clone_jobs
from instances import operations as ops
from instances.lookup import VMRef
from instances.views.config_common import shown
from jobs.models import Job
from virt import names
from virt.clone import ClonePreview, plan_clone, preview
from virt.errors import VirtError
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import refused

PLAN_TIMEOUT = 30.0  # reading every VM's MAC addresses on a large host takes a moment


class CloneForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name of the clone"), max_length=63,
                           help_text=gettext_lazy("Letters, digits, '.', '-' and '_'."))

    def __init__(self, taken: frozenset[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken = taken

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if not names.NAME_RE.match(name):
            raise forms.ValidationError(shown(names.RULE))
        if name in self.taken:
            raise forms.ValidationError(_("A VM with this name already exists on this host."))
        return name


def _free_name(base: str, taken: frozenset[str]) -> str:
    candidate, number = f"{base}-clone"[:63], 1
    while candidate in taken:
        number += 1
        candidate = f"{base}-clone-{number}"[:63]
    return candidate


def _start(request: HttpRequest, ref: VMRef, new_name: str) -> Job:
    """Take the VM's lock, plan (raises VirtError, changing nothing) and start the job, which holds the
    lock from then on and releases it when it ends."""
    key = str(ref.host.pk)
    token = services.vm_locks.acquire(key, ref.uuid)
    try:
        plan = ref.call(lambda dom: plan_clone(dom, new_name), PLAN_TIMEOUT)
        return clone_jobs.start_clone(request, ref.host, ref.uuid, plan, token)
    except BaseException:
        services.vm_locks.release_token(key, ref.uuid, token)
        raise


def _preview(call: Call) -> None:
    info: ClonePreview = call.ref.call(preview, PLAN_TIMEOUT)
    call.context.update(info=info, refusal=shown(info.refusal))


def _form(call: Call, data: QueryDict | None) -> CloneForm:
    info: ClonePreview = call.context["info"]
    return CloneForm(info.taken_names, data, initial={"name": _free_name(info.name, info.taken_names)})


# The job's page shows the copy's progress; a clone that did not start shows the form again, saying why.
clone_start = operation_view(OperationPage(
    ops.CLONE, names_vm=True, template="instances/config/clone.html", find=_preview,
    unavailable=lambda call, exc: said(exc), form=_form,
    run=lambda call: start_clone(call.request, call.ref, cast(CloneForm, call.form), call.context["info"].name),
    then=lambda call, _job: reverse("instances:clone", args=[call.ref.host.name, call.ref.uuid])))


def start_clone(request: HttpRequest, ref: VMRef, form: CloneForm, vm_name: str, *, quiet: bool = False) -> Job | None:
    """Start the clone a valid form names. The job writes the audit record of a clone that started; one that
    did not start is audited here and said on the form (None), or raised when `quiet` (for the API)."""
    new_name = form.cleaned_data["name"]
    try:
        return _start(request, ref, new_name)
    except VirtError as exc:
        refused(request, ops.CLONE, host=ref.host, name=vm_name, reason=f"uuid {ref.uuid} -> {new_name}: {exc}")
        if quiet:
            raise
        form.add_error(None, _("The clone was not started: {why}").format(why=said(exc)))
        return None
