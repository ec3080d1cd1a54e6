"""Finding the VM a URL names, after the one permission check, and running libvirt work on it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import libvirt
from django.http import Http404, HttpRequest
from django.utils.translation import gettext as _

from hosts import services
from hosts.models import Host
from virt.errors import NotFound
from webkvm import permissions

T = TypeVar("T")


@dataclass(frozen=True)
class VMRef:
    """A VM as a URL names it: host and UUID (names change, UUIDs do not)."""

    host: Host
    uuid: str

    def call(self, fn: Callable[[libvirt.virDomain], T], timeout: float | None = None) -> T:
        """fn(domain) on the host's connection, with the deadline; NotFound becomes 404."""
        try:
            return services.call(self.host, lambda conn: fn(conn.lookupByUUIDString(self.uuid)), timeout)
        except NotFound:
            raise Http404(_("No such VM on this host.")) from None

    def call_locked(self, fn: Callable[[libvirt.virDomain], T], timeout: float | None = None) -> T:
        """Like call(), serialised per VM: raises virt.errors.Busy when another action runs."""
        try:
            return services.call_locked(self.host, self.uuid, lambda conn: fn(conn.lookupByUUIDString(self.uuid)),
                                        timeout)
        except NotFound:
            raise Http404(_("No such VM on this host.")) from None


def vm_or_404(request: HttpRequest, host_name: str, vm_uuid: uuid.UUID | str, permission: str) -> VMRef:
    """The permission check comes before any libvirt call, so refusals leak nothing (not even whether the
    host exists)."""
    vm = str(vm_uuid).lower()
    return VMRef(permissions.host_for(request, host_name, permission, vm), vm)
