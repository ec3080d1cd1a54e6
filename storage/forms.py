"""Forms for pools and volumes. Every rule lives in virt.storage_rules / virt.storage /
virt.volumes; the forms turn their problems into field errors, so bad input changes nothing."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django import forms
from django.utils.functional import Promise, lazy
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, ngettext, pgettext
from django.utils.translation import gettext_lazy as _

from storage.images import ImageFields, family_and_version
from storage.models import FIRMWARE_CHOICES, IMAGE_NAME_RE, IMAGE_NAME_RULE
from virt.cloudinit import check_user
from virt.devices import FieldProblem
from virt.storage import DISK_LABELS, POOL_TYPES, PoolSpec, PoolSummary
from virt.storage_rules import Problem, check_name, decode_ceph_key, parse_host_port, parse_size
from virt.volumes import VOLUME_FORMATS, NewVolumeSpec, PoolDetail, VolumeInfo, space_problem
from virt.xml.codecs import iec
from webkvm.i18n import said

_SPLIT = re.compile(r"[\s,]+")


def _with_code(text: Promise | str, **values: str) -> SafeString:
    """A help text in the active language with data (commands, paths, examples) set as <code> in it."""
    return mark_safe(conditional_escape(str(text)) % {  # noqa: S308 - escaped text, escaped values
        name: format_html("<code>{}</code>", value) for name, value in values.items()})


coded = lazy(_with_code, SafeString)

# Which fields each pool type asks for, in page order.
POOL_FIELDS = {
    "dir": ["name", "target_path", "build", "start", "autostart"],
    "netfs": ["name", "hosts", "source_dir", "target_path", "build", "start", "autostart"],
    "logical": ["name", "source_name", "devices", "build", "start", "autostart"],
    "iscsi": ["name", "hosts", "iqn", "initiator_iqn", "start", "autostart"],
    "rbd": ["name", "source_name", "hosts", "ceph_user", "ceph_key", "secret_uuid", "start", "autostart"],
    "disk": ["name", "devices", "source_format", "build", "start", "autostart"],
}
LABELS: dict[str, dict[str, tuple[Any, Any]]] = {  # type -> field -> (label, help), translated when shown
    "dir": {"target_path": (_("Directory"), _("Where the volumes are kept on the host, below an allowed folder.")),
            "build": (_("Create the directory"), "")},
    "netfs": {"hosts": (_("NFS server"), coded(_("Host name or address, optionally with %(port)s."), port=":port")),
              "source_dir": (_("Export"), coded(_("The exported directory, e.g. %(example)s."),
                                                 example="/export/isos")),
              "target_path": (_("Mount point"), _("Where the host mounts the share, below an allowed folder.")),
              "build": (_("Create the mount point"), "")},
    "logical": {"source_name": (_("Volume group"), _("An existing volume group, or the one to create.")),
                "devices": (_("Physical volumes"),
                            coded(_("Only to create the volume group: its disks, e.g. %(example)s."),
                                  example="/dev/sdb /dev/sdc")),
                "build": (_("Create the volume group on these disks"), _("Erases the disks listed above."))},
    "iscsi": {"hosts": (_("Portal"), coded(_("The iSCSI server, optionally with %(port)s (3260)."), port=":port"))},
    "rbd": {"source_name": (_("Ceph pool"), ""),
            "hosts": (_("Monitors"), coded(_("One or more, separated by spaces: %(example)s"),
                                            example="mon1:6789 mon2 …"))},
    "disk": {"devices": (_("Disk"), coded(_("The whole disk the pool partitions, e.g. %(example)s."),
                                           example="/dev/sdb")),
             "build": (_("Write a new partition table"), _("Erases what is on the disk."))},
}
# The pool types' names as the pages show them (virt.storage.POOL_TYPES words them in English).
POOL_TYPE_LABELS = {
    "dir": _("Directory"),
    "logical": _("LVM volume group"),
    "netfs": _("NFS share"),
    "iscsi": _("iSCSI target"),
    "rbd": _("Ceph RBD"),
    "disk": _("Whole disk (partitions)"),
}


def pool_state_label(pool: PoolSummary) -> str:
    """A pool's state (active or inactive) in the active language."""
    return pgettext("pool state", "active") if pool.active else pgettext("pool state", "inactive")


def pool_type_label(kind: str) -> str:
    """A pool type's name in the active language."""
    label = POOL_TYPE_LABELS.get(kind)
    return str(label) if label is not None else POOL_TYPES.get(kind, kind)


class PoolForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=128, help_text=_("Letters, digits, '.', '-', '_' and '+'."))
    target_path = forms.CharField(label=_("Target path"), max_length=255)
    hosts = forms.CharField(label=_("Hosts"), max_length=1000)
    source_dir = forms.CharField(label=_("Source directory"), max_length=255)
    source_name = forms.CharField(label=_("Source name"), max_length=128)
    devices = forms.CharField(label=_("Devices"), max_length=1000)
    source_format = forms.ChoiceField(label=_("Partition table"), choices=[(d, d) for d in DISK_LABELS])
    iqn = forms.CharField(label=_("Target IQN"), max_length=223,
                          help_text=coded(_("e.g. %(example)s"), example="iqn.2024-01.org.example:storage"))
    initiator_iqn = forms.CharField(label=_("Initiator IQN"), max_length=223, required=False,
                                    help_text=_("Leave empty for the host's own initiator name."))
    ceph_user = forms.CharField(label=_("Ceph user"), max_length=64, initial="libvirt",
                                help_text=coded(_("Without %(prefix)s."), prefix="client."))
    ceph_key = forms.CharField(label=_("Ceph key"), max_length=200, required=False,
                               widget=forms.PasswordInput(render_value=False),
                               help_text=coded(_("From %(command)s; stored as a private libvirt secret, never "
                                                  "shown again."), command="ceph auth get-key client.USER"))
    secret_uuid = forms.ChoiceField(label=_("or an existing secret"), required=False)
    build = forms.BooleanField(label=_("Build"), required=False)
    start = forms.BooleanField(label=_("Start it"), required=False, initial=True)
    autostart = forms.BooleanField(label=_("Start it with the host"), required=False, initial=True)

    def __init__(self, pool_type: str, roots: Iterable[str], secrets: Iterable[tuple[str, str]] = (),
                 *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool_type, self.roots = pool_type, list(roots)
        wanted = POOL_FIELDS[pool_type]
        for name in list(self.fields):
            if name not in wanted:
                del self.fields[name]
        for name, (label, help_text) in LABELS.get(pool_type, {}).items():
            self.fields[name].label, self.fields[name].help_text = label, help_text
        if "secret_uuid" in self.fields:
            field = self.fields["secret_uuid"]
            assert isinstance(field, forms.ChoiceField)
            field.choices = [("", gettext("none: store the key above")), *((u, f"{name} ({u})") for u, name in secrets)]
        if pool_type == "logical":
            self.fields["devices"].required = False  # an existing volume group needs none
        if "build" in self.fields:
            self.initial.setdefault("build", pool_type in ("dir", "netfs"))  # mkdir is harmless; erasing is not
        if "target_path" in self.fields and self.roots:
            placeholder = gettext("%(folder)s/NAME") % {"folder": self.roots[0]}
            self.fields["target_path"].widget.attrs.update(placeholder=placeholder, translate="no")  # a path
        self.spec: PoolSpec | None = None
        self.key: bytes | None = None  # the decoded Ceph key

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if self.errors:
            return data
        hosts = []
        for item in _SPLIT.split(data.get("hosts", "").strip()) if data.get("hosts") else []:
            try:
                hosts.append(parse_host_port(item))
            except ValueError as exc:
                self.add_error("hosts", said(exc))
        if self.pool_type in ("netfs", "iscsi") and len(hosts) > 1:
            self.add_error("hosts", gettext("Give one server."))
        if data.get("ceph_key"):
            try:
                self.key = decode_ceph_key(data["ceph_key"])
            except ValueError as exc:
                self.add_error("ceph_key", said(exc))
        if self.pool_type == "rbd" and not data.get("ceph_key") and not data.get("secret_uuid"):
            self.add_error("ceph_key", gettext("Give the Ceph key, or choose an existing secret."))
        devices = tuple(d for d in _SPLIT.split(data.get("devices", "")) if d)
        if self.pool_type == "logical" and data.get("build") and not devices:
            self.add_error("devices", gettext("Name the disks to create the volume group on."))
        self.spec = PoolSpec(
            type=self.pool_type, name=data.get("name", ""), target_path=data.get("target_path", ""),
            hosts=tuple(hosts), source_dir=data.get("source_dir", ""), source_name=data.get("source_name", ""),
            devices=devices, source_format=data.get("source_format", ""), iqn=data.get("iqn", ""),
            initiator_iqn=data.get("initiator_iqn", ""), ceph_user=data.get("ceph_user", ""),
            secret_uuid=data.get("secret_uuid", ""),
        )
        add_problems(self, self.spec.problems(self.roots))
        return data


def add_problems(form: forms.Form, problems: Iterable[Problem]) -> None:
    """Problems found by the virt layer as field errors (once per field and message), in the user's language."""
    for problem in problems:
        field = problem.field if problem.field in form.fields else None
        message = said(problem.message)
        if message not in form.errors.get(field or "__all__", []):
            form.add_error(field, message)


class SizeField(forms.Field):
    """A size with its unit ('10G', '512 MiB'), cleaned to bytes."""

    widget = forms.TextInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", _("With a unit: 512M, 10G, 1.5T (powers of 1024), or MB, GB (powers of 1000)."))
        super().__init__(**kwargs)
        self.widget.attrs["maxlength"] = "32"

    def to_python(self, value: Any) -> int | None:
        text = str(value or "").strip()
        if not text:
            return None
        if len(text) > 32:
            raise forms.ValidationError(gettext("Give a size such as 10G."))
        try:
            return parse_size(text)
        except ValueError as exc:
            raise forms.ValidationError(said(exc)) from None


class VolumeForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    size = SizeField(label=_("Size"), required=False)
    format = forms.ChoiceField(label=_("Format"), choices=[(f, f) for f in VOLUME_FORMATS], initial="qcow2")
    preallocate = forms.BooleanField(required=False, label=_("Allocate all the space now"),
                                     help_text=_("qcow2: its metadata; raw: every byte (slower, no over-commit)."))
    backing = forms.ChoiceField(label=_("Backing volume"), required=False,
                                help_text=_("qcow2 only: the new volume starts as a copy-on-write layer over it."))

    def __init__(self, detail: PoolDetail, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.detail = detail
        field = self.fields["backing"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", gettext("none")), *((v.name, v.name) for v in detail.volumes)]
        if not detail.pool.file_based:  # LVs, partitions, RBD images are raw block devices
            for name in ("format", "backing"):
                del self.fields[name]
        self.spec: NewVolumeSpec | None = None

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        try:
            check_name(name, "volume name")
        except ValueError as exc:
            raise forms.ValidationError(said(exc)) from None
        if self.detail.volume(name):
            raise forms.ValidationError(taken(self.detail, name))
        return name

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if self.errors:
            return data
        fmt = data.get("format") or "raw"
        base = self.detail.volume(data.get("backing") or "")
        size: int = data.get("size") or 0
        if base is not None:
            size = size or base.capacity
        spec = NewVolumeSpec(data["name"], size, fmt, bool(data.get("preallocate")), base.name if base else "")
        add_problems(self, [Problem("size" if p.field == "capacity" else p.field, p.message)
                            for p in spec.problems()])
        if not self.errors:
            problem = space_problem(self.detail.pool, size, fmt, spec.preallocate)
            if problem:
                self.add_error("size", said(problem))
        self.spec = spec
        return data


class CloneForm(forms.Form):
    name = forms.CharField(max_length=128, label=_("Name of the copy"))
    format = forms.ChoiceField(label=_("Format"), choices=[(f, f) for f in VOLUME_FORMATS])

    def __init__(self, detail: PoolDetail, source: VolumeInfo, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.detail, self.source = detail, source
        stem, dot, ext = source.name.rpartition(".")
        self.initial.setdefault("name", f"{stem}-copy.{ext}" if dot and stem else f"{source.name}-copy")
        self.initial.setdefault("format", source.format if source.format in VOLUME_FORMATS else "raw")
        if not detail.pool.file_based:
            del self.fields["format"]

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        try:
            check_name(name, "volume name")
        except ValueError as exc:
            raise forms.ValidationError(said(exc)) from None
        if self.detail.volume(name):
            raise forms.ValidationError(taken(self.detail, name))
        if self.source.allocation > self.detail.pool.available:
            raise forms.ValidationError(
                gettext("The copy needs about %(needed)s bytes; pool %(pool)s has %(free)s free.")
                % {"needed": self.source.allocation, "pool": self.detail.pool.name,
                   "free": self.detail.pool.available})
        return name


class ResizeForm(forms.Form):
    size = SizeField(label=_("New size"))

    def __init__(self, pool: PoolSummary, volume: VolumeInfo, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool, self.volume = pool, volume

    def clean_size(self) -> int:
        size: int = self.cleaned_data["size"]
        if size <= self.volume.capacity:
            raise forms.ValidationError(gettext("Give more than the current %(size)s bytes: volumes only grow.")
                                        % {"size": self.volume.capacity})
        growth = size - self.volume.capacity
        if not self.pool.file_based and growth > self.pool.available:
            raise forms.ValidationError(gettext("Pool %(pool)s has only %(free)s bytes free.")
                                        % {"pool": self.pool.name, "free": self.pool.available})
        problem = space_problem(self.pool, size, self.volume.format, preallocate=False) if self.pool.file_based else ""
        if problem:
            raise forms.ValidationError(said(problem))
        return size


class UploadForm(forms.Form):
    """What the browser announces before it sends a file: the volume's name and the file's size."""

    name = forms.CharField(label=_("Name"), max_length=128)
    size = forms.IntegerField(label=_("Size"), min_value=1, error_messages={"min_value": _("The file is empty.")})

    def __init__(self, detail: PoolDetail, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.detail = detail

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        try:
            check_name(name, "volume name")
        except ValueError as exc:
            raise forms.ValidationError(said(exc)) from None
        if self.detail.volume(name):
            raise forms.ValidationError(taken(self.detail, name))
        return name

    def clean_size(self) -> int:
        size: int = self.cleaned_data["size"]
        if size > self.detail.pool.available:
            raise forms.ValidationError(gettext("Pool %(pool)s has only %(free)s bytes free; the file has %(size)s.")
                                        % {"pool": self.detail.pool.name, "free": self.detail.pool.available,
                                           "size": size})
        return size


class PoolDeleteForm(forms.Form):
    delete_storage = forms.BooleanField(
        required=False, label=_("Also delete the storage itself"),
        help_text=_("Deletes every volume of the pool and then its directory, volume group or partition table. "
                     "Without this, only the pool's definition is removed and the data stays on the host."))
    confirm_in_use = forms.BooleanField(label=_("Delete it although VMs use its volumes"), required=False)

    def __init__(self, detail: PoolDetail, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.users = detail.users
        if self.users:
            self.fields["confirm_in_use"].label = ngettext(
                "Delete it although VM %(names)s uses its volumes", "Delete it although VMs %(names)s use its volumes",
                len(self.users)) % {"names": ", ".join(self.users)}
        else:
            del self.fields["confirm_in_use"]

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if self.users and not data.get("confirm_in_use"):
            self.add_error("confirm_in_use", gettext("In use by %(names)s: tick the box to confirm.")
                           % {"names": ", ".join(self.users)})
        return data


def taken(detail: PoolDetail, name: str) -> str:
    return gettext("Pool %(pool)s already has a volume named %(name)s.") % {"pool": detail.pool.name, "name": name}


def pool_type_or_none(kind: str) -> str | None:
    return kind if kind in POOL_TYPES else None


# --- the image library (storage/images.py) ----------------------------------------------------------

class LibraryForm(forms.Form):
    library = forms.BooleanField(required=False, label=_("This pool is an image library"),
                                 help_text=_("Cloud images are imported from its volumes."))
    linked_clones = forms.BooleanField(
        required=False, label=_("Linked clones allowed"),
        help_text=_("A VM made from a qcow2 image of this library gets a small qcow2 overlay with the image as its "
                     "backing file instead of a full copy: made at once, but the image must then stay (it cannot be "
                     "deleted while such a VM exists). Only for qcow2 images, and only when the VM's disk goes into "
                     "this same pool; raw images, and disks in other pools, are always full copies."))

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if data.get("linked_clones") and not data.get("library"):
            self.add_error("linked_clones", gettext("Only an image library has linked clones: tick the box above too."))
        return data


class ImageForm(forms.Form):
    """What an admin says about a cloud image: the edit page's form, and the import form's base."""

    name = forms.CharField(label=_("Name"), max_length=64,
                           help_text=coded(_("Shown on the create form, e.g. %(example)s."), example="debian-12"))
    os = forms.ChoiceField(label=_("Operating system"), required=False,
                           help_text=coded(_("From the %(osinfo)s catalogue: fills family and version when they are "
                                              "empty."), osinfo="osinfo"),
                           widget=forms.Select(attrs={"translate": "no"}))  # the systems' own names
    os_family = forms.CharField(label=_("OS family"), max_length=64, required=False,
                                help_text=coded(_("e.g. %(example)s."), example="debian, ubuntu"))
    os_version = forms.CharField(label=_("OS version"), max_length=64, required=False, help_text=_("e.g. 12, 24.04."))
    default_user = forms.CharField(label=_("Default user"), max_length=32, required=False,
                                   help_text=coded(_("The login %(tool)s creates unless the VM names another, "
                                                      "e.g. %(example)s."), tool="cloud-init", example="debian"))
    min_disk = SizeField(label=_("Minimum disk size"), required=False,
                         help_text=_("At least the image's own disk size (its virtual size, read on import); "
                                      "empty: that size."))
    firmware = forms.ChoiceField(label=_("Firmware"), choices=FIRMWARE_CHOICES, initial="bios",
                                 help_text=_("What the image boots with: UEFI images need a UEFI VM."))

    def __init__(self, *args: Any, os_choices: list[Any] | None = None, os_entries: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.os_entries = os_entries or {}
        field = self.fields["os"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = os_choices or [("", gettext("not in the list: type family and version"))]

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if not re.fullmatch(IMAGE_NAME_RE, name):
            raise forms.ValidationError(str(IMAGE_NAME_RULE))
        return name

    def clean_default_user(self) -> str:
        text: str = self.cleaned_data.get("default_user", "").strip()
        if not text:
            return ""
        try:
            return check_user(text)
        except FieldProblem as exc:
            raise forms.ValidationError(said(exc)) from None

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        entry = self.os_entries.get(data.get("os") or "")
        for name in ("os_family", "os_version"):
            value = str(data.get(name) or "")
            if re.search(r"[\x00-\x1f\x7f<>]", value):
                self.add_error(name, gettext("Use letters, digits and punctuation, without < or >."))
        if entry is not None:
            family, version = family_and_version(entry)
            data["os_family"] = data.get("os_family") or family
            data["os_version"] = data.get("os_version") or version
        return data

    def fields_value(self) -> ImageFields:
        """The cleaned data as storage.images.ImageFields."""
        data = self.cleaned_data
        return ImageFields(name=data["name"], os_id=data.get("os") or "", os_family=data.get("os_family") or "",
                           os_version=data.get("os_version") or "", default_user=data.get("default_user") or "",
                           min_disk_bytes=int(data.get("min_disk") or 0), firmware=data.get("firmware") or "bios")


class ImageImportForm(ImageForm):
    """Import a volume of a library pool: its format and virtual size are read through libvirt on submit."""

    volume = forms.ChoiceField(label=_("Volume"),
                               help_text=_("Upload the image into this pool first (the pool's page); its format "
                                            "and size are read by libvirt from the file, not from its name."))
    field_order = ["volume", "name", "os", "os_family", "os_version", "default_user", "min_disk", "firmware"]

    def __init__(self, volumes: Iterable[VolumeInfo], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["volume"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", gettext("choose a volume")),
                         *((v.name, f"{v.name} ({v.format or v.type}, {iec(v.capacity)})") for v in volumes)]


class ImageDeleteForm(forms.Form):
    delete_volume = forms.BooleanField(
        required=False, label=_("Also delete the volume"),
        help_text=_("Deletes the image file from the pool (refused while a VM or a linked clone uses it). "
                     "Without this, only the library's record goes and the volume stays."))
