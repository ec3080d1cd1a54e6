"""Every operation on pools and volumes, declared once (webkvm/operations.py): name (= audit action),
label, permission (all admin), and the job kind of those that run on a job worker."""

from __future__ import annotations

from virt.storage import ACTIONS as POOL_ACTION_NAMES
from webkvm.operations import ADMIN, Access, Operation, declare

# Building, deleting or refreshing a pool and allocating a volume can take a while on real storage.
ACTION_TIMEOUT = 60.0

_POOL_LABELS = {"build": "Build pool", "start": "Start pool", "stop": "Stop pool", "refresh": "Refresh pool",
                "autostart": "Autostart pool", "no-autostart": "No autostart for pool"}


def _pool(name: str, label: str) -> Operation:
    return declare(Operation(f"pool.{name}", label, "pool", ADMIN, timeout=ACTION_TIMEOUT))


def _volume(name: str, label: str, *, job: str = "", confirm: str = "") -> Operation:
    return declare(Operation(f"volume.{name}", label, "volume", ADMIN, timeout=ACTION_TIMEOUT, job=job,
                             confirm=confirm))


POOL_CREATE = _pool("create", "Create pool")
POOL_DELETE = _pool("delete", "Delete pool")
# Lifecycle actions (virt.storage.ACTIONS); the route /action/<action>/ chooses one.
POOL_ACTIONS: dict[str, Operation] = {
    action: _pool(action, _POOL_LABELS.get(action, f"Pool: {action}")) for action in POOL_ACTION_NAMES
}
POOL_ACTION = Access(ADMIN, by="action", choices=POOL_ACTIONS)

VOLUME_CREATE = _volume("create", "Create volume")
VOLUME_CLONE = _volume("clone", "Clone volume", job="volume.clone")  # the kind in storage/volume_jobs.py
VOLUME_WIPE = _volume("wipe", "Wipe volume", job="volume.wipe",
                      confirm="Every byte of the volume is overwritten with zeros.")
VOLUME_RESIZE = _volume("resize", "Grow volume")
VOLUME_DELETE = _volume("delete", "Delete volume", confirm="The volume and its data are deleted.")
VOLUME_UPLOAD = _volume("upload", "Upload volume")  # streamed: storage/transfers.py writes its one record
VOLUME_DOWNLOAD = _volume("download", "Download volume")

# The image library (storage/images.py): the panel's own records of which pools hold cloud images and what each
# image is; import reads the volume through libvirt, delete may also delete the volume (confirmed).
LIBRARY_SET = declare(Operation("library.set", "Set image library", "pool", ADMIN, timeout=ACTION_TIMEOUT))
IMAGE_IMPORT = declare(Operation("image.import", "Import image", "image", ADMIN, timeout=ACTION_TIMEOUT))
IMAGE_UPDATE = declare(Operation("image.update", "Edit image", "image", ADMIN))
IMAGE_DELETE = declare(Operation("image.delete", "Delete image", "image", ADMIN, timeout=ACTION_TIMEOUT,
                                 confirm="The image is removed from the library; VMs made from it keep their disks."))
