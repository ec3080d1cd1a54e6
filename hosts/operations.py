"""Every operation on the panel's hosts, declared once (webkvm/operations.py): name (= audit action),
label and permission (all admin). Host create, update and delete change the panel's own records (nothing
on the hypervisor); test asks the host."""

from __future__ import annotations

from django.utils.translation import gettext_noop

from webkvm.operations import ADMIN, Operation, declare


def _host(name: str, label: str, confirm: str = "") -> Operation:
    return declare(Operation(f"host.{name}", label, "host", ADMIN, confirm=confirm))


CREATE = _host("create", gettext_noop("Add host"))
UPDATE = _host("update", gettext_noop("Edit host"))
DELETE = _host("delete", gettext_noop("Remove host"),
               confirm=gettext_noop("The host leaves the panel; nothing on the hypervisor changes."))
TEST = _host("test", gettext_noop("Test connection"))
# The host answers as another machine than the one recorded (hosts/machine.py): an admin says it is right.
CONFIRM_MACHINE = _host("confirm_machine", gettext_noop("Confirm the new machine"))
# What users who are not admins may use of a host (webkvm.models.SharedResource): panel records only.
SHARE = _host("share", gettext_noop("Open to users"))
UNSHARE = _host("unshare", gettext_noop("Close to users"))
