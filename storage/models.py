"""The image library: pools an admin marked as image libraries, and the cloud images kept in them.

Pools and volumes live on the hosts (libvirt); these rows only say which pool is a library and what a
volume of it is as an image (name, OS, default user, minimum disk, firmware). The format and virtual
size are what libvirt reported when the image was imported (storage/images.py), never the file's name."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from virt.capabilities import BIOS, UEFI
from virt.create import PoolVolume

IMAGE_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
IMAGE_NAME_RULE = _("Use letters, digits, '.', '-' and '_' (at most 64, starting with a letter or digit), "
                    "e.g. debian-12.")
FIRMWARE_CHOICES = [(BIOS, "BIOS"), (UEFI, "UEFI")]


class ImageLibrary(models.Model):
    """A pool of a host marked as an image library. `linked_clones`: VMs made from its qcow2 images get a
    qcow2 overlay with the image as backing file (in the same pool) instead of a full copy."""

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="image_libraries")
    pool = models.CharField(max_length=255)
    linked_clones = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "pool"], name="one_library_per_pool")]
        ordering = ["host__name", "pool"]
        verbose_name_plural = _("image libraries")

    def __str__(self) -> str:
        return f"{self.pool}@{self.host}"


class CloudImage(models.Model):
    """A volume of an image library, checked on import and described for the create form."""

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="cloud_images")
    pool = models.CharField(max_length=255)
    volume = models.CharField(max_length=255)
    name = models.CharField(max_length=64, validators=[RegexValidator(IMAGE_NAME_RE, IMAGE_NAME_RULE)])
    os_id = models.CharField(_("osinfo id"), max_length=255, blank=True,
                             help_text=_("The libosinfo entry (virt/osinfo.py), e.g. http://debian.org/debian/12."))
    os_family = models.CharField(_("OS family"), max_length=64, blank=True)
    os_version = models.CharField(_("OS version"), max_length=64, blank=True)
    default_user = models.CharField(max_length=32, blank=True)
    min_disk_bytes = models.BigIntegerField(_("minimum disk (bytes)"))
    firmware = models.CharField(max_length=8, choices=FIRMWARE_CHOICES, default=BIOS)
    format = models.CharField(max_length=16)  # qcow2 or raw, as libvirt read it on import
    virtual_bytes = models.BigIntegerField()  # the disk size the image holds, as libvirt read it on import
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "name"], name="one_image_name_per_host"),
            models.UniqueConstraint(fields=["host", "pool", "volume"], name="one_image_per_volume"),
        ]
        ordering = ["host__name", "name"]

    def __str__(self) -> str:
        return f"{self.name}@{self.host}"

    @property
    def volume_ref(self) -> PoolVolume:
        return PoolVolume(self.pool, self.volume)

    @property
    def library(self) -> ImageLibrary | None:
        return ImageLibrary.objects.filter(host_id=self.host_id, pool=self.pool).first()

    @property
    def linked_clones(self) -> bool:
        """Whether VMs may get a qcow2 overlay on this image (its library allows it; only a qcow2 image can be
        a backing file, and only for a disk in the image's own pool: the create form checks the pool)."""
        library = self.library
        return bool(library and library.linked_clones and self.format == "qcow2")

    @property
    def os_words(self) -> str:
        return " ".join(part for part in (self.os_family, self.os_version) if part)
