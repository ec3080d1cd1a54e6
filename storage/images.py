"""The image library's logic: which pools are libraries, importing a volume as a cloud image (checked
through libvirt: format, virtual size, no backing file; the name's extension is never trusted), editing
and deleting images, and the images a user may choose from.

Each function here changes the panel (and, for a deleted volume, the host) and raises FieldProblem for
input only the host or the records can judge; storage/views/images.py runs them through their declared
operations (storage/operations.py: one audit record each), for the pages and the API alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hosts import services
from hosts.models import Host
from instances import quotas
from storage.models import CloudImage, ImageLibrary
from virt.devices import FieldProblem
from virt.errors import NotFound, Text
from virt.images import VolumeFacts, check_min_disk, image_facts
from virt.osinfo import Catalogue, OsEntry
from virt.volumes import delete_volume
from webkvm.permissions import is_admin

INSPECT_TIMEOUT = 60.0  # a pool refresh re-reads every volume's header: seconds on a large pool


# --- who sees what --------------------------------------------------------------------------------

def available_images(host: Host | None = None, *, user: Any = None) -> list[CloudImage]:
    """The images VMs can be made from (on `host`, or on every host): all of them for admins (and for
    `user=None`: the panel itself); for anybody else those their quota opens (instances.quotas.allowed: the
    quota's images on the quota's hosts)."""
    images = CloudImage.objects.select_related("host").order_by("host__name", "name")
    if host is not None:
        images = images.filter(host=host)
    if user is None or is_admin(user):
        return list(images)
    return list(images.filter(pk__in=quotas.allowed(user).images.values("pk")))  # nothing without a quota


def libraries(host: Host | None = None) -> list[ImageLibrary]:
    found = ImageLibrary.objects.select_related("host").order_by("host__name", "pool")
    return list(found.filter(host=host) if host is not None else found)


def library_of(host: Host, pool: str) -> ImageLibrary | None:
    return ImageLibrary.objects.filter(host=host, pool=pool).first()


# --- the osinfo catalogue as family + version ------------------------------------------------------

def family_and_version(entry: OsEntry) -> tuple[str, str]:
    """An osinfo entry as OS family and version: http://debian.org/debian/12 -> ("debian", "12")."""
    parts = [part for part in entry.id.split("/") if part]
    if len(parts) >= 4:  # scheme:, vendor domain, family, version
        return parts[-2][:64], parts[-1][:64]
    return (entry.short_id or entry.name)[:64], ""


def os_choices(catalogue: Catalogue, offered: list[OsEntry]) -> list[Any]:
    """The select's choices: "none" first, then the current entries grouped by vendor."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for entry in offered:
        groups.setdefault(entry.vendor or _("Other"), []).append((entry.id, entry.name))
    return [("", _("not in the list: type family and version")), *((vendor, items) for vendor, items in groups.items())]


# --- changes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageFields:
    """What an admin says about an image (the form's cleaned data)."""

    name: str
    os_id: str = ""
    os_family: str = ""
    os_version: str = ""
    default_user: str = ""
    min_disk_bytes: int = 0  # 0: the image's virtual size
    firmware: str = "bios"


def set_library(host: Host, pool: str, *, library: bool, linked_clones: bool) -> Text:
    """Mark `pool` of `host` as an image library (with or without linked clones), or unmark it (refused while
    images are recorded in it). Returns what was done, in words (English; webkvm.i18n.said: the user's)."""
    found = library_of(host, pool)
    if not library:
        if found is None:
            return Text(gettext_noop("Pool {pool} is not an image library."), pool=pool)
        kept = CloudImage.objects.filter(host=host, pool=pool).count()
        if kept == 1:
            raise FieldProblem("library", gettext_noop("Pool {pool} holds 1 image: delete it first."), pool=pool)
        if kept:
            raise FieldProblem("library", gettext_noop("Pool {pool} holds {count} images: delete them first."),
                               pool=pool, count=kept)
        found.delete()
        return Text(gettext_noop("Pool {pool} is no longer an image library."), pool=pool)
    if found is None:
        ImageLibrary.objects.create(host=host, pool=pool, linked_clones=linked_clones)
        if linked_clones:
            return Text(gettext_noop("Pool {pool} is now an image library (with linked clones)."), pool=pool)
        return Text(gettext_noop("Pool {pool} is now an image library (full copies only)."), pool=pool)
    found.linked_clones = linked_clones
    found.save(update_fields=["linked_clones"])
    if linked_clones:
        return Text(gettext_noop("Image library {pool}: with linked clones."), pool=pool)
    return Text(gettext_noop("Image library {pool}: full copies only."), pool=pool)


def inspect(host: Host, pool: str, volume: str) -> VolumeFacts:
    """The volume's facts through libvirt after a pool refresh, refused (FieldProblem on `volume`) unless it
    is a stand-alone qcow2 or raw image."""
    return services.change(host, lambda conn: image_facts(conn, pool, volume), INSPECT_TIMEOUT)


def import_image(host: Host, pool: str, volume: str, fields: ImageFields, *, user: Any = None) -> CloudImage:
    """Record `volume` of the library `pool` as an image, after reading its format and virtual size through
    libvirt. Raises FieldProblem (nothing stored) for a pool that is no library, a volume already imported,
    a taken name, an unfit volume or a minimum disk below its virtual size."""
    if library_of(host, pool) is None:
        raise FieldProblem("", gettext_noop("Pool {pool} is not an image library."), pool=pool)
    already = CloudImage.objects.filter(host=host, pool=pool, volume=volume).first()
    if already is not None:
        raise FieldProblem("volume", gettext_noop("Volume {volume} is already the image {image}."), volume=volume,
                           image=already.name)
    _free_name(host, fields.name)
    facts = inspect(host, pool, volume)
    min_disk = check_min_disk(fields.min_disk_bytes or facts.virtual_bytes, facts.virtual_bytes)
    try:
        with transaction.atomic():
            return CloudImage.objects.create(
                host=host, pool=pool, volume=volume, name=fields.name, os_id=fields.os_id,
                os_family=fields.os_family, os_version=fields.os_version, default_user=fields.default_user,
                min_disk_bytes=min_disk, firmware=fields.firmware, format=facts.format,
                virtual_bytes=facts.virtual_bytes, created_by=user if getattr(user, "pk", None) else None)
    except IntegrityError:  # another admin imported the same name or volume meanwhile
        raise FieldProblem("name", gettext_noop("{host} already has an image named {name} (or this volume was "
                                                "imported meanwhile)."), host=host.name, name=fields.name) from None


def _free_name(host: Host, name: str, *, but: CloudImage | None = None) -> None:
    taken = CloudImage.objects.filter(host=host, name=name)
    if but is not None:
        taken = taken.exclude(pk=but.pk)
    if taken.exists():
        raise FieldProblem("name", gettext_noop("{host} already has an image named {name}."), host=host.name,
                           name=name)


def update_image(image: CloudImage, fields: ImageFields) -> CloudImage:
    """Change what the panel says about an image (its volume, format and virtual size stay as imported)."""
    _free_name(image.host, fields.name, but=image)
    min_disk = check_min_disk(fields.min_disk_bytes or image.virtual_bytes, image.virtual_bytes)
    image.name, image.os_id, image.os_family, image.os_version = (fields.name, fields.os_id, fields.os_family,
                                                                  fields.os_version)
    image.default_user, image.min_disk_bytes, image.firmware = fields.default_user, min_disk, fields.firmware
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:
        raise FieldProblem("name", gettext_noop("{host} already has an image named {name}."), host=image.host.name,
                           name=fields.name) from None
    return image


def delete_image(image: CloudImage, *, delete_volume_too: bool = False) -> Text:
    """Remove the image from the library; with `delete_volume_too`, its volume first (libvirt refuses while a
    VM or a linked clone uses it: then nothing is removed). Returns what was done, in words."""
    where = f"{image.pool}/{image.volume}"
    words = gettext_noop("Image {name} deleted; its volume {where} stays.")
    if delete_volume_too:
        try:
            services.change(image.host, lambda conn: delete_volume(conn, image.pool, image.volume), INSPECT_TIMEOUT)
            words = gettext_noop("Image {name} deleted with its volume {where}.")
        except NotFound:
            words = gettext_noop("Image {name} deleted; its volume {where} was already gone.")
    name = image.name
    image.delete()
    return Text(words, name=name, where=where)
