"""Per-VM grants and the audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext


class VMPermission(models.TextChoices):
    VIEW = "view", _("view")
    CONSOLE = "console", _("console")
    POWER = "power", _("power")
    CHANGE = "change", _("change")
    DELETE = "delete", _("delete")


class VMGrant(models.Model):
    """What one non-admin user may do with one VM (identified by host and UUID, not by name)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vm_grants")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="vm_grants")
    vm_uuid = models.UUIDField()
    vm_name = models.CharField(max_length=200, blank=True, help_text=_("Name when the grant was made, for display."))
    can_console = models.BooleanField(default=False)
    can_power = models.BooleanField(default=False)
    can_change = models.BooleanField(default=False)
    can_delete = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "host", "vm_uuid"], name="one_grant_per_user_vm")]
        ordering = ["host__name", "vm_name"]

    def __str__(self) -> str:
        return f"{self.user} on {self.vm_name or self.vm_uuid}@{self.host}"

    def allows(self, permission: str) -> bool:
        if permission == VMPermission.VIEW:
            return True
        return bool(getattr(self, f"can_{permission}", False))

    def permissions(self) -> list[str]:
        return [p.value for p in VMPermission if self.allows(p.value)]

    def permission_words(self) -> str:
        """What the grant allows, in words of the active language: "view, console, power"."""
        return pgettext("list separator", ", ").join(str(VMPermission(p).label) for p in self.permissions())


class AuditResult(models.TextChoices):
    OK = "ok", _("ok")
    FAILED = "failed", _("failed")
    DENIED = "denied", _("denied")


class AuditEvent(models.Model):
    """Who did what to which object, when, and with what result. Never edited, never deleted by the panel."""

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=32)
    object_name = models.CharField(max_length=255, blank=True)
    host_name = models.CharField(max_length=100, blank=True)
    result = models.CharField(max_length=8, choices=AuditResult.choices)
    detail = models.TextField(blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)  # how long the operation took
    # Repeated identical refusals (anonymous clients, throttled logins) are counted on one row, not one
    # row each: last_time is when the latest repeat happened.
    repeats = models.PositiveIntegerField(default=1)
    last_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.object_name}: {self.result}"


class SharedKind(models.TextChoices):
    NETWORK = "network", _("virtual network")
    BRIDGE = "bridge", _("host bridge")
    POOL = "pool", _("storage pool for new volumes")
    ISO_LIBRARY = "iso_library", _("ISO library (read-only images)")


class SharedResource(models.Model):
    """Something of a host an admin opened to non-admin users: a network or bridge their NICs may use,
    a pool they may create volumes in, a pool of ISO images they may insert (read-only). Users reach
    nothing of a host that is not listed here."""

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="shared_resources")
    kind = models.CharField(max_length=16, choices=SharedKind.choices)
    name = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "kind", "name"], name="one_share_per_object")]
        ordering = ["host__name", "kind", "name"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name}@{self.host}"


class UserLanguage(models.Model):
    """The language a user chose in their menu: it follows them to every browser and log-in."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="language_choice")
    language = models.CharField(max_length=16)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.language}"
