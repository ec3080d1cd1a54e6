"""A VM's disks and CD-ROM drives: attach (new or existing volume), detach, insert and eject ISOs,
add and remove CD-ROM drives. Choices come from the VM's host (virt.capabilities.HostOffer)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from instances import operations as ops
from instances import quotas
from instances.lookup import VMRef
from instances.views.config_common import (
    VMDevices,
    as_said,
    asked,
    devices_page,
    offer_or_message,
    row_form_valid,
    set_choices,
)
from virt import disks
from virt.capabilities import ISO_SUFFIX, HostOffer
from virt.create import DISK_FORMATS, PoolVolume, cdrom_bus
from virt.storage_rules import check_name, parse_size
from virt.xml.codecs import iec
from webkvm.i18n import said
from webkvm.operations import Outcome, on_vm, page, vm_route
from webkvm.permissions import is_admin

NEW, EXISTING = "new", "existing"
# libvirt's cache modes (the values), in words: a translation names the mode the way its docs do.
CACHE_LABELS = {"default": gettext_lazy("hypervisor default"), "none": gettext_lazy("none (direct I/O)"),
                "writeback": gettext_lazy("writeback"), "writethrough": gettext_lazy("writethrough"),
                "directsync": gettext_lazy("directsync"), "unsafe": gettext_lazy("unsafe (no flushes)")}
BUS_LABELS = {"virtio": gettext_lazy("virtio (fastest; added to a running VM at once)"),
              "scsi": gettext_lazy("SCSI (added to a running VM at once)"),
              "sata": gettext_lazy("SATA (a running VM gets it at its next boot)"),
              "ide": gettext_lazy("IDE (a running VM gets it at its next boot)")}
TARGET_MAX = 8


def _pool_volume(value: str) -> PoolVolume:
    pool, _, volume = value.partition("/")  # pool names cannot contain '/'
    return PoolVolume(pool, volume)


class AttachDiskForm(forms.Form):
    source = forms.ChoiceField(label=gettext_lazy("Disk"), widget=forms.RadioSelect, initial=NEW)
    pool = forms.ChoiceField(label=gettext_lazy("Pool for the new volume"), required=False)
    volume_name = forms.CharField(
        label=gettext_lazy("Name of the new volume"), required=False, max_length=63,
        help_text=gettext_lazy("Letters, digits, '.', '-' and '_'; empty: named after the VM."))
    size = forms.CharField(label=gettext_lazy("Size of the new volume"), required=False, max_length=32,
                           help_text=gettext_lazy("e.g. 10G, 512M, 1.5T (a bare number is GiB)."))
    format = forms.ChoiceField(label=gettext_lazy("Format of the new volume"), choices=[(f, f) for f in DISK_FORMATS],
                               initial="qcow2")
    volume = forms.ChoiceField(label=gettext_lazy("Existing volume"), required=False)
    bus = forms.ChoiceField(label=gettext_lazy("Bus"), choices=list(BUS_LABELS.items()), initial="virtio")
    cache = forms.ChoiceField(label=gettext_lazy("Cache mode"), choices=list(CACHE_LABELS.items()), initial="default")

    def __init__(self, offer: HostOffer, admin: bool, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offer, self.admin = offer, admin
        # An existing volume may hold another VM's data: only admins may attach one, or see the list.
        set_choices(self, "source", [(NEW, _("a new volume")),
                                     *([(EXISTING, _("an existing volume"))] if admin else [])])
        set_choices(self, "pool", [(p.name, _("{pool} ({free} free)").format(pool=p.name, free=iec(p.available_bytes)))
                                   for p in offer.active_pools])
        if admin:
            set_choices(self, "volume", [("", "-"), *((f"{p}/{v}", f"{p}/{v}") for p, v in offer.volumes()
                                                      if not v.lower().endswith(ISO_SUFFIX))])
        else:
            del self.fields["volume"]

    def clean_size(self) -> int | None:
        raw = self.cleaned_data.get("size", "").strip()
        if not raw:
            return None
        try:
            return parse_size(raw)
        except ValueError as exc:
            raise forms.ValidationError(said(exc)) from None

    def clean_volume_name(self) -> str:
        name: str = self.cleaned_data.get("volume_name", "").strip()
        if name:
            try:
                check_name(name, "volume name")
            except ValueError as exc:
                raise forms.ValidationError(said(exc)) from None
        return name

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if data.get("source") == NEW:
            pool = self.offer.pool(data.get("pool") or "")
            size = data.get("size")
            if pool is None:
                self.add_error("pool", _("Choose a pool for the new volume."))
            if size is None and "size" not in self.errors:
                self.add_error("size", _("Give the size of the new volume."))
            if pool is not None and size is not None and size > pool.available_bytes:
                self.add_error("size", _("Pool {pool} has only {free} free.").format(
                    pool=pool.name, free=iec(pool.available_bytes)))
            name = data.get("volume_name")
            if pool is not None and name and name in pool.volumes:
                self.add_error("volume_name", _("Pool {pool} already has a volume named {name}.").format(
                    pool=pool.name, name=name))
        elif data.get("source") == EXISTING and not data.get("volume"):
            self.add_error("volume", _("Choose the volume to attach."))
        return data

    def spec(self) -> disks.NewVolume | PoolVolume:
        data = self.cleaned_data
        if data["source"] == NEW:
            return disks.NewVolume(data["pool"], data["size"], data["format"], data["volume_name"])
        return _pool_volume(data["volume"])

    def describe(self) -> str:
        spec = self.spec()
        what = (f"new {spec.format} volume of {iec(spec.size_bytes)} in pool {spec.pool}"
                if isinstance(spec, disks.NewVolume) else f"volume {spec.pool}/{spec.volume}")
        return f"attach {what}, bus {self.cleaned_data['bus']}, cache {self.cleaned_data['cache']}"


class IsoForm(forms.Form):
    iso = forms.ChoiceField(label=gettext_lazy("ISO image"))

    def __init__(self, offer: HostOffer, *args: Any, optional: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["iso"].required = not optional
        set_choices(self, "iso", [*([("", _("empty"))] if optional else []),
                                  *((f"{p}/{v}", f"{p}/{v}") for p, v in offer.isos())])

    def chosen(self) -> PoolVolume | None:
        value: str = self.cleaned_data.get("iso") or ""
        return _pool_volume(value) if value else None


def _target(request: HttpRequest) -> str:
    return request.POST.get("target", "").strip()[:TARGET_MAX]


def _page(request: HttpRequest, ref: VMRef, *, attach: AttachDiskForm | None = None,
          add_cdrom: IsoForm | None = None) -> HttpResponse:
    def fill(vm: VMDevices, offer: HostOffer) -> dict[str, Any]:
        rows = disks.disk_rows(vm.defs)
        first_pool = offer.active_pools[0].name if offer.active_pools else ""
        return {
            "vm": vm, "offer": offer,
            "disks": [r for r in rows if r.device != "cdrom"], "cdroms": [r for r in rows if r.device == "cdrom"],
            "attach": attach or AttachDiskForm(offer, is_admin(request.user),
                                               initial={"pool": first_pool} if first_pool else None),
            "insert": IsoForm(offer, auto_id=False),
            "add_cdrom": add_cdrom or IsoForm(offer, optional=True, auto_id="cdrom_%s"),
            "cdrom_bus": cdrom_bus(vm.defs.machine), "admin": is_admin(request.user),
        }

    return devices_page(request, ref, "instances/config/disks.html", fill)


def _back(ref: VMRef) -> HttpResponse:
    return redirect("instances:disks", ref.host.name, ref.uuid)


@require_GET
@vm_route(page(ops.CHANGE))
def disk_page(request: HttpRequest, ref: VMRef) -> HttpResponse:
    return _page(request, ref)


@require_POST
@vm_route(ops.DISK_ATTACH)
def disk_attach(request: HttpRequest, ref: VMRef) -> HttpResponse:
    offer = offer_or_message(request, ref)
    if offer is None:
        return _back(ref)
    form = AttachDiskForm(offer, is_admin(request.user), request.POST)
    if not form.is_valid():
        return _page(request, ref, attach=form)
    outcome = attach(request, ref, form)
    return _back(ref) if outcome.ok else _page(request, ref, attach=form)


def attach(request: HttpRequest, ref: VMRef, form: AttachDiskForm, *, quiet: bool = False) -> Outcome[str]:
    """Attach what a valid form asks for (the page's and the API's one way)."""
    spec, bus, cache = form.spec(), form.cleaned_data["bus"], form.cleaned_data["cache"]
    try:  # a new volume of a VM made through self-service counts against its owner's quota
        undo = quotas.grow(request.user, ref.host, ref.uuid,
                           add_disk_bytes=spec.size_bytes if isinstance(spec, disks.NewVolume) else 0)
    except quotas.QuotaExceeded as exc:
        form.add_error("size", said(exc))
        return Outcome(ref.uuid, error=str(exc), field_problem=True, exception=exc)
    outcome = on_vm(request, ops.DISK_ATTACH, ref,
                    lambda dom: disks.attach_disk(dom, spec, bus=bus, cache=cache),
                    done=as_said, detail=asked(form.describe()), form=form, quiet=quiet)
    if not outcome.ok:
        undo()
    return outcome


def detach(request: HttpRequest, ref: VMRef, target: str, *, quiet: bool = False) -> Outcome[str]:
    return on_vm(request, ops.DISK_DETACH, ref, lambda dom: disks.detach_disk(dom, target), done=as_said,
                 detail=asked(f"detach {target}"), quiet=quiet)


@require_POST
@vm_route(ops.DISK_DETACH)
def disk_detach(request: HttpRequest, ref: VMRef) -> HttpResponse:
    detach(request, ref, _target(request))
    return _back(ref)


@require_POST
@vm_route(ops.CDROM_INSERT)
def cdrom_insert(request: HttpRequest, ref: VMRef) -> HttpResponse:
    offer = offer_or_message(request, ref)
    if offer is None:
        return _back(ref)
    target, form = _target(request), IsoForm(offer, request.POST)
    if not row_form_valid(request, form, "iso", _("ISO image")):
        return _back(ref)
    insert(request, ref, target, form)
    return _back(ref)


def insert(request: HttpRequest, ref: VMRef, target: str, form: IsoForm, *, quiet: bool = False) -> Outcome[str]:
    """Insert the ISO a valid form names into the drive `target` (the page's and the API's one way)."""
    iso = form.chosen()
    assert iso is not None
    return on_vm(request, ops.CDROM_INSERT, ref, lambda dom: disks.insert_media(dom, target, iso), done=as_said,
                 detail=asked(f"insert {iso.pool}/{iso.volume} in {target}"), quiet=quiet)


def eject(request: HttpRequest, ref: VMRef, target: str, *, quiet: bool = False) -> Outcome[str]:
    return on_vm(request, ops.CDROM_EJECT, ref, lambda dom: disks.eject_media(dom, target), done=as_said,
                 detail=asked(f"eject {target}"), quiet=quiet)


@require_POST
@vm_route(ops.CDROM_EJECT)
def cdrom_eject(request: HttpRequest, ref: VMRef) -> HttpResponse:
    eject(request, ref, _target(request))
    return _back(ref)


@require_POST
@vm_route(ops.CDROM_ADD)
def cdrom_add(request: HttpRequest, ref: VMRef) -> HttpResponse:
    offer = offer_or_message(request, ref)
    if offer is None:
        return _back(ref)
    form = IsoForm(offer, request.POST, optional=True, auto_id="cdrom_%s")
    if not form.is_valid():
        return _page(request, ref, add_cdrom=form)
    outcome = add_cdrom(request, ref, form)
    return _back(ref) if outcome.ok else _page(request, ref, add_cdrom=form)


def add_cdrom(request: HttpRequest, ref: VMRef, form: IsoForm, *, quiet: bool = False) -> Outcome[str]:
    """Add a CD-ROM drive, with the ISO a valid form names or empty (the page's and the API's one way)."""
    iso = form.chosen()
    what = f"add a CD-ROM drive{f' with {iso.pool}/{iso.volume}' if iso else ''}"
    return on_vm(request, ops.CDROM_ADD, ref, lambda dom: disks.add_cdrom(dom, iso), done=as_said,
                 detail=asked(what), form=form, quiet=quiet)


def remove_cdrom(request: HttpRequest, ref: VMRef, target: str, *, quiet: bool = False) -> Outcome[str]:
    return on_vm(request, ops.CDROM_REMOVE, ref, lambda dom: disks.remove_cdrom(dom, target), done=as_said,
                 detail=asked(f"remove CD-ROM drive {target}"), quiet=quiet)


@require_POST
@vm_route(ops.CDROM_REMOVE)
def cdrom_remove(request: HttpRequest, ref: VMRef) -> HttpResponse:
    remove_cdrom(request, ref, _target(request))
    return _back(ref)
