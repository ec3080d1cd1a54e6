"""Every operation on the panel's hosts, declared once (webkvm/operations.py): name (= audit action),
label and permission (all admin). Host create, update and delete change the panel's own records (nothing
on the hypervisor); test asks the host."""

from __future__ import annotations

from webkvm.operations import ADMIN, Operation, declare


def _host(name: str, label: str, confirm: str = "") -> Operation:
    return declare(Operation(f"host.{name}", label, "host", ADMIN, confirm=confirm))


CREATE = _host("create", "Add host")
UPDATE = _host("update", "Edit host")
DELETE = _host("delete", "Remove host", confirm="The host leaves the panel; nothing on the hypervisor changes.")
TEST = _host("test", "Test connection")
# The host answers as another machine than the one recorded (hosts/machine.py): an admin says it is right.
CONFIRM_MACHINE = _host("confirm_machine", "Confirm the new machine")
# What users who are not admins may use of a host (webkvm.models.SharedResource): panel records only.
SHARE = _host("share", "Open to users")
UNSHARE = _host("unshare", "Close to users")
