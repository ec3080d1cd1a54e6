"""Flavors: admin-defined VM sizes that pre-fill the create form."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from virt.create import MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB

MAX_DISK_GIB = 65536


class Flavor(models.Model):
    name = models.CharField(
        max_length=40, unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$",
                                   "Use letters, digits, '.', '-' and '_', e.g. m1.small.")],
    )
    vcpus = models.PositiveIntegerField("vCPUs", validators=[MinValueValidator(1), MaxValueValidator(MAX_VCPUS)])
    memory_mib = models.PositiveIntegerField(
        "memory (MiB)", validators=[MinValueValidator(MIN_MEMORY_MIB), MaxValueValidator(MAX_MEMORY_MIB)])
    disk_gib = models.PositiveIntegerField(
        "disk (GiB)", validators=[MinValueValidator(1), MaxValueValidator(MAX_DISK_GIB)])
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["vcpus", "memory_mib", "disk_gib", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.vcpus} vCPU, {self.memory_mib} MiB, {self.disk_gib} GiB)"
