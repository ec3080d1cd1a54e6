"""Volumes shared between VMs: which other VMs use a volume, so that one VM never takes over
(as a writable disk) or deletes (with itself) what another VM still uses.

Built on virt.volusage: one disk_usage() per request answers for every volume of the host.
"""

from __future__ import annotations

from collections.abc import Iterable

import libvirt

from virt.errors import InvalidInput, Text, gettext_noop
from virt.volusage import Usage, disk_usage


def other_users(usage: Usage, pool: str, volume: str, paths: Iterable[str | None], me: str = "") -> tuple[str, ...]:
    """VMs other than `me` using the volume, found by pool/name or by any of its paths."""
    found: set[str] = set(usage.users(pool, volume, None)) if pool and volume else set()
    for path in paths:
        if path:
            found.update(usage.users("", "", path))
    found.discard(me)
    return tuple(sorted(found))


def volume_users(conn: libvirt.virConnect, pool: str, volume: str) -> tuple[str, ...]:
    """Every VM using an existing volume of a pool (raises libvirt's "not found" when there is none)."""
    path = conn.storagePoolLookupByName(pool).storageVolLookupByName(volume).path()
    return other_users(disk_usage(conn), pool, volume, [str(path)])


def vm_words(names: Iterable[str]) -> Text:
    listed = list(names)
    if len(listed) > 1:
        return Text(gettext_noop("VMs {names}"), names=", ".join(listed))
    return Text(gettext_noop("VM {names}"), names=", ".join(listed))


class VolumeInUse(InvalidInput):
    """A volume chosen as a writable disk that other VMs already use; nothing was made."""

    def __init__(self, pool: str, volume: str, users: tuple[str, ...]) -> None:
        super().__init__(gettext_noop("Volume {pool}/{volume} is already used by {users}: a writable disk is never "
                                      "shared between VMs. Choose another volume, or clone this one first."),
                         pool=pool, volume=volume, users=vm_words(users))
        self.users = users
