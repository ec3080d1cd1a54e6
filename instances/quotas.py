"""Self-service within quotas: what a user may still create, and the reservation that makes it theirs.

The rule for a user's limits (`limits_for`): their own quota when they have one, whatever their groups';
otherwise each limit is the LARGEST of their groups' quotas (not the sum: being in two groups must not
double what a user may take) and the hosts, images, flavors, pools and networks (and sizes of their own, besides
the flavors) are what ANY of those groups allows. A group's quota is per member: each member may use all of it,
usage is never pooled.
No quota at all: no self-service. A limit of 0 allows none; an empty choice (no host...) allows nothing.

Usage is the sum of the user's OwnedVM rows, reservations included. `reserve()` checks and inserts in one
transaction: the quota rows that apply are locked (SELECT ... FOR UPDATE: PostgreSQL serialises two
creations of one user there), and on SQLite the panel's transactions are IMMEDIATE (webkvm/settings.py), so
the transaction holds the database's write lock from its first statement: the second creation reads the
usage only after the first has committed. The rows go when the VM is deleted (instances/views/delete.forget)
and are reconciled with each complete read of a host's VMs (state_since.apply -> `reconcile`).
"""

from __future__ import annotations

import datetime
import math
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hosts.models import Host
from instances.models import Flavor, OwnedVM, Quota
from virt.devices import FieldProblem
from virt.errors import Text, joined
from webkvm import permissions
from webkvm.i18n import said
from webkvm.models import SharedKind, SharedResource, VMGrant

GIB = 1024**3
# A confirmed VM missing from a host read is forgotten only when it was confirmed this long before the read
# began: a read that started before the VM was defined does not list it.
CONFIRM_GRACE = datetime.timedelta(minutes=2)
# A reservation never confirmed (a creation that died without releasing it) is released after this long:
# the slowest creation (copying a large image over a slow link) is far shorter.
PENDING_GRACE = datetime.timedelta(hours=24)
NETWORK_KINDS = (SharedKind.NETWORK, SharedKind.BRIDGE)


class QuotaExceeded(FieldProblem):
    """A creation the quota does not allow; nothing was reserved. str(): every problem, in words (English;
    webkvm.i18n.said says them in the reader's language)."""

    def __init__(self, problems: list[Text]) -> None:
        super().__init__("", gettext_noop("Over quota: {problems}."), problems=joined(problems))
        self.problems = problems


@dataclass(frozen=True)
class Limits:
    max_vms: int
    max_vcpus: int
    max_memory_mib: int
    max_disk_gib: int
    source: str  # "your own quota", "the quota of group devs", "the quotas of groups a, b"
    quota_ids: tuple[int, ...]
    groups: tuple[str, ...] = ()  # the groups whose quotas give the limits (none: the user's own quota)

    @property
    def own(self) -> bool:
        return not self.groups

    @property
    def source_label(self) -> str:
        """`source` in the active language."""
        if not self.groups:
            return _("your own quota")
        if len(self.groups) == 1:
            return _("the quota of group {name}").format(name=self.groups[0])
        return _("the quotas of groups {names}").format(names=", ".join(self.groups))

    @property
    def max_disk_bytes(self) -> int:
        return self.max_disk_gib * GIB


@dataclass(frozen=True)
class Usage:
    vms: int = 0
    vcpus: int = 0
    memory_mib: int = 0
    disk_bytes: int = 0

    @property
    def disk_gib(self) -> float:
        return self.disk_bytes / GIB


@dataclass(frozen=True)
class Allowed:
    """What a user may choose from when they create a VM: querysets, so forms can narrow their choices."""

    hosts: QuerySet[Host]
    images: QuerySet[Any]  # storage.CloudImage
    flavors: QuerySet[Flavor]
    pools: QuerySet[SharedResource]
    networks: QuerySet[SharedResource]  # virtual networks and host bridges
    custom_sizes: bool = False  # vCPUs and memory of their own choosing besides the flavors


def _quotas(user: Any) -> list[Quota]:
    """The quota rows that give `user` their limits: their own, else their groups'."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    own = list(Quota.objects.filter(user=user))
    return own or list(Quota.objects.filter(group__in=user.groups.all()).select_related("group"))


def _limits(quotas: list[Quota]) -> Limits | None:
    if not quotas:
        return None
    if quotas[0].user_id is not None:
        source = "your own quota"
    elif len(quotas) == 1:
        source = f"the quota of group {quotas[0].group}"
    else:
        source = "the quotas of groups " + ", ".join(sorted(str(q.group) for q in quotas))
    return Limits(max(q.max_vms for q in quotas), max(q.max_vcpus for q in quotas),
                  max(q.max_memory_mib for q in quotas), max(q.max_disk_gib for q in quotas), source,
                  tuple(sorted(q.pk for q in quotas)),
                  () if quotas[0].user_id is not None else tuple(sorted(str(q.group) for q in quotas)))


def limits_for(user: Any) -> Limits | None:
    """The user's limits; None: no quota applies, the user has no self-service."""
    return _limits(_quotas(user))


def usage(user: Any) -> Usage:
    """What the user's VMs made through self-service take, reservations included."""
    totals = OwnedVM.objects.filter(user=user).aggregate(vms=Count("id"), vcpus=Sum("vcpus"),
                                                          memory=Sum("memory_mib"), disk=Sum("disk_bytes"))
    return Usage(totals["vms"] or 0, totals["vcpus"] or 0, totals["memory"] or 0, totals["disk"] or 0)


def _gib(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def usage_words(limits: Limits, used: Usage) -> Text:
    """'3 of 4 VMs, 6 of 8 vCPUs, 4096 of 8192 MiB memory, 30 of 100 GiB disk' (used of limit): a Text, which
    webkvm.i18n.said shows in the reader's language."""
    return Text(gettext_noop("{vms} of {max_vms} VMs, {vcpus} of {max_vcpus} vCPUs, {memory} of {max_memory} MiB "
                             "memory, {disk} of {max_disk} GiB disk"),
                vms=used.vms, max_vms=limits.max_vms, vcpus=used.vcpus, max_vcpus=limits.max_vcpus,
                memory=used.memory_mib, max_memory=limits.max_memory_mib, disk=_gib(used.disk_gib),
                max_disk=limits.max_disk_gib)


def _left(limits: Limits, used: Usage) -> tuple[int, int, int, int]:
    return (max(0, limits.max_vms - used.vms), max(0, limits.max_vcpus - used.vcpus),
            max(0, limits.max_memory_mib - used.memory_mib), max(0, limits.max_disk_bytes - used.disk_bytes))


def left_words(limits: Limits, used: Usage) -> Text:
    vms, vcpus, memory, disk = _left(limits, used)
    return Text(gettext_noop("{vms} of {max_vms} VMs, {vcpus} of {max_vcpus} vCPUs, {memory} of {max_memory} MiB "
                             "memory, {disk} of {max_disk} GiB disk left"),
                vms=vms, max_vms=limits.max_vms, vcpus=vcpus, max_vcpus=limits.max_vcpus, memory=memory,
                max_memory=limits.max_memory_mib, disk=_gib(disk / GIB), max_disk=limits.max_disk_gib)


NO_QUOTA = Text(gettext_noop("You have no quota: ask an administrator for one to create VMs yourself."))


def left(user: Any) -> Text:
    """What the user may still create, in words ('1 of 4 VMs, 2 of 8 vCPUs, ... left'): a Text (said() shows it
    in the reader's language)."""
    limits = limits_for(user)
    if limits is None:
        return NO_QUOTA
    return left_words(limits, usage(user))


def problems(limits: Limits, used: Usage, *, vcpus: int, memory_mib: int, disk_bytes: int) -> list[Text]:
    """Each limit one more VM of that size would exceed, in words ('2 of 4 vCPUs left'); [] when it fits."""
    vms_left, vcpus_left, memory_left, disk_left = _left(limits, used)
    found = []
    if vms_left < 1:
        found.append(Text(gettext_noop("{left} of {most} VMs left"), left=vms_left, most=limits.max_vms))
    if vcpus > vcpus_left:
        found.append(Text(gettext_noop("{left} of {most} vCPUs left, {asked} asked"), left=vcpus_left,
                          most=limits.max_vcpus, asked=vcpus))
    if memory_mib > memory_left:
        found.append(Text(gettext_noop("{left} of {most} MiB memory left, {asked} MiB asked"), left=memory_left,
                          most=limits.max_memory_mib, asked=memory_mib))
    if disk_bytes > disk_left:
        asked = math.ceil(disk_bytes * 10 / GIB) / 10  # rounded up: never "10 GiB asked" of 10 GiB left
        found.append(Text(gettext_noop("{left} of {most} GiB disk left, {asked} GiB asked"),
                          left=_gib(math.floor(disk_left * 10 / GIB) / 10), most=limits.max_disk_gib,
                          asked=_gib(asked)))
    return found


def allowed(user: Any) -> Allowed:
    """What the user may create VMs with: the hosts, images, flavors, pools and networks of the quota(s) that
    apply (images, pools and networks only on those hosts), and sizes of their own when any of them allows it;
    nothing without a quota."""
    from storage.models import CloudImage  # the image library (storage app)

    ids = [q.pk for q in _quotas(user)]
    hosts = Host.objects.filter(quotas__in=ids).distinct()
    shared = SharedResource.objects.filter(quotas__in=ids, host__in=hosts).distinct()
    return Allowed(
        hosts=hosts,
        images=CloudImage.objects.filter(quotas__in=ids, host__in=hosts).distinct(),
        flavors=Flavor.objects.filter(quotas__in=ids).distinct(),
        pools=shared.filter(kind=SharedKind.POOL),
        networks=shared.filter(kind__in=NETWORK_KINDS),
        custom_sizes=Quota.objects.filter(pk__in=ids, custom_sizes=True).exists(),
    )


def restrict(form: Any, user: Any, fields: dict[str, str] | None = None) -> Allowed:
    """Narrow a create form's choices to what `user` is allowed (for the self-service page).

    `fields` maps the form's field names to the kinds of `Allowed` (default: host, image, flavor, pool,
    network to hosts, images, flavors, pools, networks). A model choice field gets the allowed rows; a plain
    choice field keeps the choices whose value is an allowed object's name (or primary key). A field the
    form does not have is skipped. Returns the Allowed it applied."""
    chosen = allowed(user)
    mapping = fields or {"host": "hosts", "image": "images", "flavor": "flavors", "pool": "pools",
                         "network": "networks"}
    for field_name, kind in mapping.items():
        field = form.fields.get(field_name)
        if field is None:
            continue
        rows = getattr(chosen, kind)
        if hasattr(field, "queryset"):
            field.queryset = field.queryset.filter(pk__in=rows.values("pk"))
            continue
        keys = {str(key) for key in rows.values_list("pk", flat=True)}
        if kind != "images":
            keys |= {str(name) for name in rows.values_list("name", flat=True)}
        field.choices = [(value, label) for value, label in field.choices
                         if value in ("", None) or str(value) in keys]
    return chosen


class QuotaChoicesMixin:
    """A create form's mix-in: `limit_to(user)` narrows its host, image, flavor, pool and network choices."""

    fields: dict[str, Any]
    quota_fields: dict[str, str] | None = None

    def limit_to(self, user: Any) -> Allowed:
        return restrict(self, user, self.quota_fields)


def reserve(user: Any, host: Host, name: str, vcpus: int, memory_mib: int, disk_bytes: int) -> OwnedVM:
    """Check the request against the user's quota and reserve it, in one transaction (see the module's
    docstring): an OwnedVM without a VM UUID yet, or QuotaExceeded with everything that is over, nothing
    reserved. The caller confirms it once the VM is defined, or releases it when the creation fails."""
    with transaction.atomic():
        quotas = list(Quota.objects.select_for_update().filter(pk__in=[q.pk for q in _quotas(user)]).order_by("pk"))
        # Read again under the lock: an admin may have changed the rows meanwhile.
        limits = _limits([q for q in quotas if q.user_id is not None] or quotas)
        if limits is None:
            raise QuotaExceeded([Text(gettext_noop("you have no quota: ask an administrator for one"))])
        refused = []
        if not Host.objects.filter(pk=host.pk, quotas__in=limits.quota_ids).exists():
            refused.append(Text(gettext_noop("host {name} is not one you may use"), name=host.name))
        refused += problems(limits, usage(user), vcpus=vcpus, memory_mib=memory_mib, disk_bytes=disk_bytes)
        if refused:
            raise QuotaExceeded(refused)
        return OwnedVM.objects.create(user=user, host=host, name=name, vcpus=vcpus, memory_mib=memory_mib,
                                      disk_bytes=disk_bytes)


def grow(user: Any, host: Host, vm_uuid: str | uuid.UUID, *, vcpus: int | None = None,
         memory_mib: int | None = None, add_disk_bytes: int = 0) -> Callable[[], None]:
    """A VM made through self-service grows (resize, a new disk): what it grows by is checked against its
    owner's quota and recorded, in one transaction, before the change is made; returns the undo for a change
    that then failed. Admins' changes are recorded, never refused; VMs nobody owns are not counted."""
    with transaction.atomic():
        owned = OwnedVM.objects.select_for_update().filter(host=host, vm_uuid=vm_uuid).first()
        if owned is None:
            return lambda: None
        before = (owned.vcpus, owned.memory_mib, owned.disk_bytes)
        after = (max(vcpus if vcpus is not None else owned.vcpus, 0),
                 max(memory_mib if memory_mib is not None else owned.memory_mib, 0),
                 owned.disk_bytes + max(add_disk_bytes, 0))
        more = [max(a - b, 0) for a, b in zip(after, before, strict=True)]
        resized = after[:2] != before[:2]
        if (any(more) or resized) and not permissions.is_admin(user):
            quotas = list(Quota.objects.select_for_update().filter(pk__in=[q.pk for q in _quotas(owned.user)])
                          .order_by("pk"))
            limits = _limits([q for q in quotas if q.user_id is not None] or quotas)
            if limits is None:
                raise QuotaExceeded([Text(gettext_noop("{name} has no quota any more"),
                                          name=owned.user.get_username())])
            # One more VM is not asked for: count this one out of the VM limit.
            refused = [words for words in problems(limits, usage(owned.user), vcpus=more[0], memory_mib=more[1],
                                                   disk_bytes=more[2]) if not words.endswith(" VMs left")]
            if resized and not _fits_a_flavor(limits.quota_ids, vcpus=after[0], memory_mib=after[1]):
                refused.append(Text(gettext_noop("Your quota allows its flavors only: choose one of them.")))
            if refused:
                raise QuotaExceeded(refused)
        owned.vcpus, owned.memory_mib, owned.disk_bytes = after
        owned.save(update_fields=["vcpus", "memory_mib", "disk_bytes"])

    def undo() -> None:
        OwnedVM.objects.filter(pk=owned.pk).update(vcpus=before[0], memory_mib=before[1], disk_bytes=before[2])

    return undo


def _fits_a_flavor(quota_ids: Collection[int], *, vcpus: int, memory_mib: int) -> bool:
    """Sizes of one's own are fine when a quota allows them; otherwise they must be a flavor's of the quota
    (the same rule as the create form's, for a resize)."""
    quotas = Quota.objects.filter(pk__in=quota_ids)
    return quotas.filter(custom_sizes=True).exists() or Flavor.objects.filter(
        quotas__in=quotas, vcpus=vcpus, memory_mib=memory_mib).exists()


ALL_GRANTS = {"can_console": True, "can_power": True, "can_change": True, "can_delete": True}


def confirm(owned: OwnedVM, vm_uuid: str | uuid.UUID, name: str = "") -> OwnedVM:
    """The reserved VM exists now (`vm_uuid`): the row names it, and its owner gets every grant on it."""
    owned.vm_uuid = uuid.UUID(str(vm_uuid))
    owned.name = name or owned.name
    owned.confirmed = timezone.now()
    with transaction.atomic():
        owned.save(update_fields=["vm_uuid", "name", "confirmed"])
        VMGrant.objects.update_or_create(user=owned.user, host=owned.host, vm_uuid=owned.vm_uuid,
                                         defaults={"vm_name": owned.name, **ALL_GRANTS})
    return owned


def release(owned: OwnedVM) -> None:
    """Give the reservation back (the creation failed, or the VM is gone)."""
    OwnedVM.objects.filter(pk=owned.pk).delete()


def forget_vm(host: Host, vm_uuid: str | uuid.UUID) -> int:
    """The VM was deleted through the panel: what it took of its owner's quota is free again."""
    deleted, _ = OwnedVM.objects.filter(host=host, vm_uuid=vm_uuid).delete()
    return deleted


def reconcile(host: Host, present: Iterable[str], read_started: float) -> int:
    """A complete read of the host's VMs (`present`: their UUIDs) began at `read_started` (epoch seconds):
    rows of VMs confirmed well before it that the host no longer has are deleted (the VM was deleted outside
    the panel), and so are reservations never confirmed within PENDING_GRACE. One query when nothing is stale."""
    started = datetime.datetime.fromtimestamp(read_started, tz=datetime.UTC)
    seen = [uuid.UUID(str(u)) for u in present]
    gone = Q(vm_uuid__isnull=False, confirmed__lt=started - CONFIRM_GRACE) & ~Q(vm_uuid__in=seen)
    stale = Q(vm_uuid__isnull=True, created__lt=timezone.now() - PENDING_GRACE)
    deleted, _ = OwnedVM.objects.filter(Q(host=host) & (gone | stale)).delete()
    return deleted


@dataclass(frozen=True)
class UserUsage:
    user: Any
    limits: Limits
    used: Usage

    @property
    def words(self) -> Text:
        return usage_words(self.limits, self.used)

    @property
    def shown(self) -> str:
        """words in the active language."""
        return said(self.words)


def usage_of(users: Collection[Any]) -> list[UserUsage]:
    """Each of `users` who has limits, with their usage (for the admin pages and the API)."""
    return [UserUsage(u, limits, usage(u)) for u in users if (limits := limits_for(u)) is not None]
