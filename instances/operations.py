"""Every operation on VMs, declared once (webkvm/operations.py): name (= audit action), permission,
lock, how long the host may take, and the job kind of those that run on a job worker."""

from __future__ import annotations

from django.utils.translation import gettext_noop

from virt import lifecycle
from webkvm.models import VMPermission
from webkvm.operations import ADMIN, LOGIN, Access, Operation, declare
from webkvm.user_operations import GRANT_SET

VIEW, CONSOLE, POWER, CHANGE, DELETE = (p.value for p in VMPermission)
# A live detach waits up to 5 s for the guest; making a large raw volume takes longer still.
CHANGE_TIMEOUT = 60.0


def _vm(name: str, label: str, permission: str, *, lock: bool = True, timeout: float = CHANGE_TIMEOUT,
        job: str = "", confirm: str = "") -> Operation:
    return declare(Operation(f"vm.{name}", label, "vm", permission, lock=lock, timeout=timeout, job=job,
                             confirm=confirm))


# Labels are English msgids (marked with gettext_noop): a page or a message shows gettext(op.label).
# Power and housekeeping actions (virt/lifecycle.py says which states allow each).
ACTIONS: dict[str, Operation] = {
    action.name: _vm(action.name, action.label, action.permission, timeout=action.timeout, confirm=action.confirm)
    for action in lifecycle.ACTIONS.values()
}
ACTION = Access(POWER, "vm", by="action", choices=ACTIONS)  # the route /action/<action>/
RENAME = _vm("rename", gettext_noop("Rename"), CHANGE)
DESCRIBE = _vm("describe", gettext_noop("Title and description"), CHANGE)

# Configuration.
DISK_ATTACH = _vm("disk.attach", gettext_noop("Attach disk"), CHANGE)
DISK_DETACH = _vm("disk.detach", gettext_noop("Detach disk"), CHANGE)
CDROM_INSERT = _vm("cdrom.insert", gettext_noop("Insert ISO"), CHANGE)
CDROM_EJECT = _vm("cdrom.eject", gettext_noop("Eject ISO"), CHANGE)
CDROM_ADD = _vm("cdrom.add", gettext_noop("Add CD-ROM drive"), CHANGE)
CDROM_REMOVE = _vm("cdrom.remove", gettext_noop("Remove CD-ROM drive"), CHANGE)
NIC_ADD = _vm("nic.add", gettext_noop("Add NIC"), CHANGE)
NIC_REMOVE = _vm("nic.remove", gettext_noop("Remove NIC"), CHANGE)
NIC_SOURCE = _vm("nic.source", gettext_noop("Change NIC source"), CHANGE)
NIC_LINK = _vm("nic.link", gettext_noop("Set NIC link"), CHANGE)
RESIZE = _vm("resize", gettext_noop("Resize"), CHANGE)
BOOT = _vm("boot", gettext_noop("Boot settings"), CHANGE)
VNC = _vm("vnc", gettext_noop("VNC settings"), CHANGE)
XML_EDIT = _vm("xml.edit", gettext_noop("Edit XML"), ADMIN)
XML_ROLLBACK = _vm("xml.rollback", gettext_noop("Roll back XML"), ADMIN)
# "Share…" (instances:share): the grant a user's page gives too, the same operation and audit action.
SHARE = GRANT_SET
# A running VM's snapshot (its memory too) runs as a job of the same name (instances/snapshot_jobs.py);
# a shut-off VM's (disks only) in the request.
SNAPSHOT_CREATE = _vm("snapshot.create", gettext_noop("Take snapshot"), CHANGE, timeout=300.0, job="vm.snapshot.create")
# Going back to a snapshot that holds memory (libvirt loads it back) runs as a job of the same name too; to a
# disk-only snapshot, in the request.
SNAPSHOT_REVERT = _vm("snapshot.revert", gettext_noop("Revert to snapshot"), CHANGE, timeout=300.0,
                      job="vm.snapshot.revert")
SNAPSHOT_DELETE = _vm("snapshot.delete", gettext_noop("Delete snapshot"), CHANGE, timeout=300.0)

# The VM's life.
# A creation that allocates its whole disk up front runs as a job of the same name (instances/create_jobs.py).
CREATE = declare(Operation("vm.create", gettext_noop("Create VM"), "vm", ADMIN, timeout=120.0, job="vm.create"))
# A VM made from a cloud image (its copy, the cloud-init seed, definition, start) is always a job
# (instances/image_jobs.py): by an admin, or by a user within their quota (the view checks and reserves it).
CREATE_FROM_IMAGE = declare(Operation("vm.create-from-image", gettext_noop("Create VM from image"), "vm", ADMIN,
                                      timeout=120.0, job="vm.create-from-image"))
CREATE_OWN = declare(Operation("vm.create-own", gettext_noop("Create my VM from an image"), "vm", LOGIN,
                               timeout=120.0, job="vm.create-own"))
DELETE_VM = _vm("delete", gettext_noop("Delete"), DELETE, timeout=300.0)
CLONE = _vm("clone", gettext_noop("Clone"), ADMIN, job="vm.clone")
MIGRATE = _vm("migrate", gettext_noop("Migrate"), ADMIN, job="vm.migrate")
EVACUATE = declare(Operation("host.evacuate", gettext_noop("Evacuate host"), "host", ADMIN, job="host.evacuate"))
MIGRATE_MANY = declare(Operation("vm.migrate-many", gettext_noop("Migrate VMs"), "host", ADMIN, job="vm.migrate-many"))
# Start, shut down, force off or delete the VMs ticked on the list: anybody logged in may ask; each VM is then
# checked and run as the VM page's own operation above (its grant, lock and audit record: views/bulk.py).
BULK = Access(LOGIN)
FLAVOR_CREATE = declare(Operation("flavor.create", gettext_noop("Create flavor"), "flavor", ADMIN))
FLAVOR_UPDATE = declare(Operation("flavor.update", gettext_noop("Edit flavor"), "flavor", ADMIN))
FLAVOR_DELETE = declare(Operation("flavor.delete", gettext_noop("Delete flavor"), "flavor", ADMIN))
