"""What an admin opened of a host to users who are not admins (webkvm.models.SharedResource): the networks
and bridges their NICs may use, the pools they may make volumes in, the ISO libraries they may insert
images from. A grant on a VM opens nothing else of its host; admins keep everything."""

from __future__ import annotations

from typing import Any

from hosts.models import Host
from virt.capabilities import HostOffer
from webkvm.models import SharedKind, SharedResource
from webkvm.permissions import is_admin


def opened(host: Host) -> dict[str, set[str]]:
    """Per kind (SharedKind), the names opened on `host`."""
    names: dict[str, set[str]] = {kind.value: set() for kind in SharedKind}
    for kind, name in SharedResource.objects.filter(host=host).values_list("kind", "name"):
        names[kind].add(name)
    return names


def offer_for(user: Any, host: Host, offer: HostOffer) -> HostOffer:
    """What `user` may choose from on `host`: all of `offer` for admins, the opened part for anybody else."""
    if is_admin(user):
        return offer
    names = opened(host)
    return offer.only(pools=names[SharedKind.POOL], iso_pools=names[SharedKind.ISO_LIBRARY],
                      networks=names[SharedKind.NETWORK], bridges=names[SharedKind.BRIDGE])
