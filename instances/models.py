"""Flavors: admin-defined VM sizes that pre-fill the create form."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from virt.create import MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB
from virt.xmledit import without_secrets

MAX_DISK_GIB = 65536


class Flavor(models.Model):
    name = models.CharField(
        max_length=40, unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$",
                                   _("Use letters, digits, '.', '-' and '_', e.g. m1.small."))],
    )
    vcpus = models.PositiveIntegerField(_("vCPUs"), validators=[MinValueValidator(1), MaxValueValidator(MAX_VCPUS)])
    memory_mib = models.PositiveIntegerField(
        _("memory (MiB)"), validators=[MinValueValidator(MIN_MEMORY_MIB), MaxValueValidator(MAX_MEMORY_MIB)])
    disk_gib = models.PositiveIntegerField(
        _("disk (GiB)"), validators=[MinValueValidator(1), MaxValueValidator(MAX_DISK_GIB)])
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["vcpus", "memory_mib", "disk_gib", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.vcpus} vCPU, {self.memory_mib} MiB, {self.disk_gib} GiB)"

    @property
    def label(self) -> str:
        """str() in the active language, for choices and pages (str() stays English for the audit log)."""
        return gettext("{name} ({vcpus} vCPU, {memory} MiB, {disk} GiB)").format(
            name=self.name, vcpus=self.vcpus, memory=self.memory_mib, disk=self.disk_gib)


class DomainDefinition(models.Model):
    """A definition the XML editor replaced, kept so that every edit can be rolled back.

    `xml` is libvirt's definition without its secrets (VNC/SPICE passwords, disk cookies): save()
    takes them out, a rollback takes the VM's current ones; `diff` is stored with them masked.
    The rows of a VM are deleted with the VM.
    """

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="domain_definitions")
    vm_uuid = models.UUIDField()
    vm_name = models.CharField(max_length=200, blank=True, help_text=_("Name at the time, for display."))
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)
    time = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=200)
    xml = models.TextField(help_text=_("The definition before this change, as libvirt gave it."))
    diff = models.TextField(blank=True, help_text=_("Unified diff from that definition to the new one, masked."))

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [models.Index(fields=["host", "vm_uuid", "-time"], name="domaindef_vm_time")]

    def __str__(self) -> str:
        return f"{self.vm_name or self.vm_uuid}@{self.host_id} {self.time:%Y-%m-%d %H:%M:%S} {self.reason}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.xml = without_secrets(self.xml) if self.xml else ""
        super().save(*args, **kwargs)


class StateSince(models.TextChoices):
    """How the panel knows when a VM's state began."""

    PANEL = "panel", _("the panel changed it or saw it change")
    PROCESS = "process", _("the start of its qemu process (a host on the panel's own machine)")
    FIRST_SEEN = "first-seen", _("not known: the panel first saw it in this state then")


class VMState(models.Model):
    """A VM's state as the panel last knew it and since when (instances/state_since.py): shared by every panel
    process and kept across restarts. One row per VM; the rows of VMs a host no longer has are deleted."""

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="vm_states")
    vm_uuid = models.UUIDField()
    state = models.CharField(max_length=32)
    since = models.FloatField(help_text=_("Epoch seconds: when the state began, or when first seen in it."))
    source = models.CharField(max_length=16, choices=StateSince.choices)
    shutdown_asked = models.FloatField(null=True, blank=True,
                                       help_text=_("Epoch seconds: when the panel last asked the guest to shut down."))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "vm_uuid"], name="vmstate_host_vm")]

    def __str__(self) -> str:
        return f"{self.vm_uuid}@{self.host_id} {self.state} since {self.since} ({self.source})"


# --- self-service quotas (instances/quotas.py) ------------------------------------------------------------

MAX_QUOTA_VMS = 10_000
MAX_QUOTA_VCPUS = 100_000
MAX_QUOTA_MEMORY_MIB = 1 << 30  # 1 PiB in MiB
MAX_QUOTA_DISK_GIB = 1 << 24  # 16 PiB in GiB


class Quota(models.Model):
    """What one user, or each member of one group, may create through self-service: how many VMs and how many
    vCPUs, MiB of memory and GiB of disk in all (0: none), and on which hosts, from which images and flavors,
    with which of the pools and networks admins opened to users, and whether they may choose their own vCPUs and
    memory besides the flavors (`custom_sizes`). A user's own quota wins over their groups';
    without one, each limit is the largest of their groups' and the choices are what any of them allows
    (instances/quotas.limits_for). A group's quota is not shared: each member may use all of it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="quota")
    group = models.OneToOneField("auth.Group", null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="quota")
    max_vms = models.PositiveIntegerField(_("VMs"), default=0, validators=[MaxValueValidator(MAX_QUOTA_VMS)])
    max_vcpus = models.PositiveIntegerField(_("vCPUs in all"), default=0,
                                            validators=[MaxValueValidator(MAX_QUOTA_VCPUS)])
    max_memory_mib = models.PositiveIntegerField(_("memory in all (MiB)"), default=0,
                                                 validators=[MaxValueValidator(MAX_QUOTA_MEMORY_MIB)])
    max_disk_gib = models.PositiveIntegerField(_("disk in all (GiB)"), default=0,
                                               validators=[MaxValueValidator(MAX_QUOTA_DISK_GIB)])
    hosts = models.ManyToManyField("hosts.Host", blank=True, related_name="quotas",
                                   help_text=_("Hosts their VMs may be made on."))
    images = models.ManyToManyField("storage.CloudImage", blank=True, related_name="quotas",
                                    help_text=_("Images they may make VMs from."))
    flavors = models.ManyToManyField(Flavor, blank=True, related_name="quotas",
                                     help_text=_("Flavors they may choose."))
    shared = models.ManyToManyField("webkvm.SharedResource", blank=True, related_name="quotas",
                                    verbose_name=_("pools and networks"),
                                    help_text=_("Of what admins opened to users: the pools and networks they may use."))
    custom_sizes = models.BooleanField(_("Users may choose their own vCPUs and memory"), default=True,
                                       help_text=_("Otherwise only the flavors listed here (the totals cap both)."))
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(
            condition=models.Q(user__isnull=False, group__isnull=True) | models.Q(user__isnull=True,
                                                                                 group__isnull=False),
            name="quota_user_xor_group")]
        ordering = ["group__name", "user__username"]

    def __str__(self) -> str:
        return f"quota of {self.owner_words}"

    @property
    def owner_words(self) -> str:
        return f"user {self.user.get_username()}" if self.user is not None else f"group {self.group}"

    @property
    def owner_label(self) -> str:
        """owner_words in the active language (owner_words stays English for the audit log)."""
        if self.user is not None:
            return gettext("user {name}").format(name=self.user.get_username())
        return gettext("group {name}").format(name=self.group)


class OwnedVM(models.Model):
    """A VM a user made through self-service: theirs (they hold every grant on it), counted against their quota.
    Reserved (no vm_uuid yet) before the VM is made, confirmed once it is defined; the row goes when the VM is
    deleted through the panel, or when its host's VM list no longer has it (instances/quotas.reconcile)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owned_vms")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="owned_vms")
    vm_uuid = models.UUIDField(null=True, blank=True)
    name = models.CharField(max_length=200)
    vcpus = models.PositiveIntegerField()
    memory_mib = models.PositiveBigIntegerField()
    disk_bytes = models.PositiveBigIntegerField()
    created = models.DateTimeField(auto_now_add=True)
    confirmed = models.DateTimeField(null=True, blank=True, help_text=_("When the VM was defined."))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "vm_uuid"], name="ownedvm_host_vm")]
        ordering = ["user__username", "created", "id"]

    def __str__(self) -> str:
        return f"{self.name}@{self.host_id} of {self.user_id}"
