"""A VM's disks and CD-ROM drives: attach (new or existing volume), detach, insert and eject ISOs,
add and remove CD-ROM drives. Choices come from the VM's host (virt.capabilities.HostOffer). The changes' routes
are generated from their declarations (webkvm/operation_views.py); the page and the API share their work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from instances import operations as ops
from instances import quotas
from instances.lookup import VMRef
from instances.views.config_common import (
    VMDevices,
    as_said,
    asked,
    devices_page,
    offer,
    row_form_valid,
    set_choices,
)
from virt import disks
from virt.capabilities import ISO_SUFFIX, HostOffer
from virt.create import DISK_FORMATS, PoolVolume, cdrom_bus
from virt.errors import NotFound, VirtError
from virt.storage_rules import check_name, parse_size
from virt.xml.codecs import iec
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import Operation, Outcome, View, on_vm, page, told, vm_route
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


@require_GET
@vm_route(page(ops.CHANGE))
def disk_page(request: HttpRequest, ref: VMRef) -> HttpResponse:
    return _page(request, ref)


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


def insert(request: HttpRequest, ref: VMRef, target: str, form: IsoForm, *, quiet: bool = False) -> Outcome[str]:
    """Insert the ISO a valid form names into the drive `target` (the page's and the API's one way)."""
    iso = form.chosen()
    assert iso is not None
    return on_vm(request, ops.CDROM_INSERT, ref, lambda dom: disks.insert_media(dom, target, iso), done=as_said,
                 detail=asked(f"insert {iso.pool}/{iso.volume} in {target}"), quiet=quiet)


def eject(request: HttpRequest, ref: VMRef, target: str, *, quiet: bool = False) -> Outcome[str]:
    return on_vm(request, ops.CDROM_EJECT, ref, lambda dom: disks.eject_media(dom, target), done=as_said,
                 detail=asked(f"eject {target}"), quiet=quiet)


def add_cdrom(request: HttpRequest, ref: VMRef, form: IsoForm, *, quiet: bool = False) -> Outcome[str]:
    """Add a CD-ROM drive, with the ISO a valid form names or empty (the page's and the API's one way)."""
    iso = form.chosen()
    what = f"add a CD-ROM drive{f' with {iso.pool}/{iso.volume}' if iso else ''}"
    return on_vm(request, ops.CDROM_ADD, ref, lambda dom: disks.add_cdrom(dom, iso), done=as_said,
                 detail=asked(what), form=form, quiet=quiet)


def remove_cdrom(request: HttpRequest, ref: VMRef, target: str, *, quiet: bool = False) -> Outcome[str]:
    return on_vm(request, ops.CDROM_REMOVE, ref, lambda dom: disks.remove_cdrom(dom, target), done=as_said,
                 detail=asked(f"remove CD-ROM drive {target}"), quiet=quiet)


# --- the POST routes of the page, generated from the declarations (webkvm/operation_views.py) ------
# Their forms are on the disks page: a GET goes there; a failed form shows that page again with its errors.


def _page_url(call: Call, _result: Any = None) -> str:
    return reverse("instances:disks", args=[call.ref.host.name, call.ref.uuid])


def read_offer(call: Call) -> None:
    """What the host offers the user (the forms' choices): the `find` of a device page's form."""
    try:
        call.context["offer"] = offer(call.request, call.ref)
    except NotFound as exc:  # not a 404 (operation_view's answer to a NotFound): said like any failed read
        call.context["unasked"] = exc
        raise VirtError() from exc


def offer_unreadable(back: Callable[[Call], str]) -> Callable[[Call, VirtError], HttpResponse]:
    """A failed read of the host's offer: said in a message, back to the device page."""
    def unreadable(call: Call, exc: VirtError) -> HttpResponse:
        messages.error(call.request, _("{host} could not be asked what it offers: {why}").format(
            host=call.ref.host.name, why=told(call.request.user, call.context.get("unasked", exc))))
        return redirect(back(call))
    return unreadable


def _row_again(call: Call) -> HttpResponse:
    """A drive's row form: its errors come back as messages, on the page."""
    assert call.form is not None
    row_form_valid(call.request, cast(forms.Form, call.form), "iso", _("ISO image"))
    return redirect(_page_url(call))


def _form_page(op: Operation, *, form: Callable[[Call, QueryDict | None], forms.BaseForm],
               again: Callable[[Call], HttpResponse], run: Callable[[Call], Any]) -> View:
    return operation_view(OperationPage(
        op, template="instances/config/disks.html", elsewhere=_page_url, find=read_offer,
        unreadable=offer_unreadable(_page_url),
        form=form, again=again, run=run, then=_page_url))


def _row_action(op: Operation, run: Callable[[HttpRequest, VMRef, str], Any]) -> View:
    return operation_view(OperationPage(op, elsewhere=_page_url, then=_page_url,
                                        run=lambda call: run(call.request, call.ref, _target(call.request))))


disk_attach = _form_page(
    ops.DISK_ATTACH, form=lambda call, data: AttachDiskForm(call.context["offer"], is_admin(call.request.user), data),
    again=lambda call: _page(call.request, call.ref, attach=cast(AttachDiskForm, call.form)),
    run=lambda call: attach(call.request, call.ref, cast(AttachDiskForm, call.form)))
cdrom_add = _form_page(
    ops.CDROM_ADD, form=lambda call, data: IsoForm(call.context["offer"], data, optional=True, auto_id="cdrom_%s"),
    again=lambda call: _page(call.request, call.ref, add_cdrom=cast(IsoForm, call.form)),
    run=lambda call: add_cdrom(call.request, call.ref, cast(IsoForm, call.form)))
# A failed insert said so in a message (the drive's row has no room for errors): the page, not the form again.
cdrom_insert = _form_page(
    ops.CDROM_INSERT, form=lambda call, data: IsoForm(call.context["offer"], data), again=_row_again,
    run=lambda call: insert(call.request, call.ref, _target(call.request), cast(IsoForm, call.form)))
disk_detach = _row_action(ops.DISK_DETACH, detach)
cdrom_eject = _row_action(ops.CDROM_EJECT, eject)
cdrom_remove = _row_action(ops.CDROM_REMOVE, remove_cdrom)
