"""Every operation on pools and volumes, declared once (webkvm/operations.py): name (= audit action),
label, permission (all admin), and the job kind of those that run on a job worker. Labels and confirmations
are English msgids (marked with gettext_noop): a page or a message shows gettext(op.label)."""

from __future__ import annotations

from django.utils.translation import gettext_noop

from virt.storage import ACTIONS as POOL_ACTION_NAMES
from webkvm.operations import ADMIN, Access, Operation, declare

# Building, deleting or refreshing a pool and allocating a volume can take a while on real storage.
ACTION_TIMEOUT = 60.0

_POOL_LABELS = {"build": gettext_noop("Build pool"), "start": gettext_noop("Start pool"),
                "stop": gettext_noop("Stop pool"), "refresh": gettext_noop("Refresh pool"),
                "autostart": gettext_noop("Autostart pool"), "no-autostart": gettext_noop("No autostart for pool")}


def _pool(name: str, label: str) -> Operation:
    return declare(Operation(f"pool.{name}", label, "pool", ADMIN, timeout=ACTION_TIMEOUT))


def _volume(name: str, label: str, *, job: str = "", confirm: str = "") -> Operation:
    return declare(Operation(f"volume.{name}", label, "volume", ADMIN, timeout=ACTION_TIMEOUT, job=job,
                             confirm=confirm))


POOL_CREATE = _pool("create", gettext_noop("Create pool"))
POOL_DELETE = _pool("delete", gettext_noop("Delete pool"))
# Lifecycle actions (virt.storage.ACTIONS); the route /action/<action>/ chooses one.
POOL_ACTIONS: dict[str, Operation] = {
    action: _pool(action, _POOL_LABELS.get(action, f"Pool: {action}")) for action in POOL_ACTION_NAMES
}
POOL_ACTION = Access(ADMIN, by="action", choices=POOL_ACTIONS)

# A volume whose space is allocated now (raw: every byte) runs as a job of the same name (storage/volume_jobs.py);
# a sparse one, a few calls, in the request.
VOLUME_CREATE = _volume("create", gettext_noop("Create volume"), job="volume.create")
VOLUME_CLONE = _volume("clone", gettext_noop("Clone volume"), job="volume.clone")  # the kind in storage/volume_jobs.py
VOLUME_WIPE = _volume("wipe", gettext_noop("Wipe volume"), job="volume.wipe",
                      confirm=gettext_noop("Every byte of the volume is overwritten with zeros."))
VOLUME_RESIZE = _volume("resize", gettext_noop("Grow volume"))
VOLUME_DELETE = _volume("delete", gettext_noop("Delete volume"),
                        confirm=gettext_noop("The volume and its data are deleted."))
# Streamed: storage/transfers.py writes its one record.
VOLUME_UPLOAD = _volume("upload", gettext_noop("Upload volume"))
VOLUME_DOWNLOAD = _volume("download", gettext_noop("Download volume"))

# The image library (storage/images.py): the panel's own records of which pools hold cloud images and what each
# image is; import reads the volume through libvirt, delete may also delete the volume (confirmed).
LIBRARY_SET = declare(Operation("library.set", gettext_noop("Set image library"), "pool", ADMIN,
                                timeout=ACTION_TIMEOUT))
IMAGE_IMPORT = declare(Operation("image.import", gettext_noop("Import image"), "image", ADMIN, timeout=ACTION_TIMEOUT))
IMAGE_UPDATE = declare(Operation("image.update", gettext_noop("Edit image"), "image", ADMIN))
IMAGE_DELETE = declare(Operation(
    "image.delete", gettext_noop("Delete image"), "image", ADMIN, timeout=ACTION_TIMEOUT,
    confirm=gettext_noop("The image is removed from the library; VMs made from it keep their disks.")))
