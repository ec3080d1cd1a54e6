"""The one permission check used by every page, API endpoint and console.

Admins (superusers) may do everything. Hosts, storage and networks are admin-only.
Anybody else may act on a VM only through a VMGrant for that VM on that host.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from hosts.models import Host
from webkvm import audit
from webkvm.models import AuditResult, VMGrant


def is_admin(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_superuser)


def can(user: Any, permission: str, *, host: Any = None, vm_uuid: str | uuid.UUID | None = None) -> bool:
    """May `user` use `permission` on the VM `vm_uuid` of `host` (or on the host itself when no VM)?"""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if is_admin(user):
        return True
    if host is None or vm_uuid is None or suspended(host):
        return False  # host-level objects are admin-only
    grant = VMGrant.objects.filter(user=user, host=host, vm_uuid=vm_uuid).first()
    return grant is not None and grant.allows(permission)


def require(request: HttpRequest, permission: str, *, host: Any = None, vm_uuid: str | uuid.UUID | None = None,
            object_name: str = "") -> None:
    """Raise PermissionDenied (403) and audit the refusal unless `can(...)`."""
    if can(request.user, permission, host=host, vm_uuid=vm_uuid):
        return
    audit.record(request, f"denied:{permission}", object_type="vm" if vm_uuid else "host",
                 object_name=object_name or str(vm_uuid or ""), host_name=str(host or ""),
                 result=AuditResult.DENIED)
    raise PermissionDenied(f"no {permission} permission")


def suspended(host: Any) -> bool:
    """The host answered as another machine than the one its grants were given on (hosts/machine.py):
    its grants count for nothing until an admin confirms the new machine."""
    return bool(getattr(host, "unconfirmed_uuid", ""))


def host_for(request: HttpRequest, host_name: str, permission: str = "view",
             vm_uuid: str | uuid.UUID | None = None) -> Host:
    """The host a URL names, found only through the check. Non-admins are refused alike (403, audited)
    whether the host exists or not, so refusals tell no host names apart: `permission` on the VM
    `vm_uuid`, or without a VM a grant on some VM of the host. Admins hear 404 for an unknown host."""
    host = Host.objects.filter(name=host_name).first()
    if is_admin(request.user):
        if host is None:
            raise Http404("No such host.")
        return host
    if host is not None and vm_uuid is not None:
        require(request, permission, host=host, vm_uuid=vm_uuid)
        return host
    if host is not None and granted_vm_uuids(request.user, host):
        return host
    audit.record(request, f"denied:{permission}", object_type="vm" if vm_uuid else "host",
                 object_name=str(vm_uuid or host_name), host_name=host_name[:100], result=AuditResult.DENIED)
    raise PermissionDenied(f"no {permission} permission on host {host_name[:100]}")


def require_admin(request: HttpRequest, object_name: str = "") -> None:
    """Admins only: a refusal is audited as denied:admin (no grant opens what only admins may do)."""
    require(request, "admin", object_name=object_name)


def granted_vm_uuids(user: Any, host: Any) -> set[str] | None:
    """UUIDs of VMs on `host` the user may see; None means all of them (admin)."""
    if is_admin(user):
        return None
    if suspended(host):
        return set()
    return {str(u) for u in VMGrant.objects.filter(user=user, host=host).values_list("vm_uuid", flat=True)}


def grants_by_vm(user: Any) -> dict[tuple[int, str], frozenset[str]] | None:
    """What `user` may do with each VM granted to them, by (host id, lower-case UUID), in one query, as can()
    decides it VM by VM: None for admins (everything). Pages listing many VMs (and bulk actions on them) take
    each row's permissions from here; a host whose grants are suspended contributes nothing."""
    if is_admin(user):
        return None
    if user is None or not user.is_authenticated or not user.is_active:
        return {}
    return {(grant.host_id, str(grant.vm_uuid).lower()): frozenset(grant.permissions())
            for grant in VMGrant.objects.filter(user=user, host__unconfirmed_uuid="")}
