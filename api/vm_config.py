"""A VM's configuration: disks, CD-ROMs, NICs, resize, boot, VNC, rename, description, XML.

Each endpoint validates the page's own form and runs the page's own function (the declared operation:
its lock, one audit record, the page's words); see api/base.py. A PUT of resize, boot or VNC settings
takes the page's form, each field left out at the value the page shows (the current one), except the
boot order, which is given whole as on the page. The raw XML (admins) carries a `version` (the editor's
keyed fingerprint): an edit or rollback from a version that is no longer current is 409 `stale`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api.base import ApiView, Done, Serializer, answer, data_of, declared, form_schema, said, valid
from api.errors import Conflict, TooLarge
from instances import operations as ops
from instances.views import actions, config_common
from instances.views import boot as boot_pages
from instances.views import disks as disk_pages
from instances.views import graphics as vnc_pages
from instances.views import nics as nic_pages
from instances.views import resize as resize_pages
from instances.views import xmledit as xml_pages
from virt import disks, nics, xmledit
from virt.boot import read_settings as read_boot
from virt.devices import definitions
from virt.errors import InvalidInput, VirtError
from virt.graphics import read_settings as read_vnc
from virt.resize import Sizing, read_state
from webkvm.operations import ADMIN, Outcome, by_method, page, told
from webkvm.permissions import is_admin

# --- shared: input and answers --------------------------------------------------------------------------

def _with_current(form: forms.BaseForm, data: dict[str, Any], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body with each field of the page's form the caller left out at the value the page shows (the
    VM's current setting, the form's initial), so a caller sends only what it changes. `form` is the page's
    form unbound, with the fields this caller has (admins' fields are not there for others)."""
    filled = dict(data)
    for name, field in form.fields.items():
        if name in filled or name.startswith(skip):
            continue
        value = form.get_initial_for_field(field, name)
        if value is not None:
            filled[name] = value
    return filled


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise ValidationError({name: [_("Give it as text.")]})
    return value


def _answer_fields(request: Request, outcome: Outcome[Any], done: str, field: Callable[[str], str]) -> Response:
    """answer(), with input the virt layer refused (a name, a title) as a 400 on the field it concerns."""
    if not outcome.ok and isinstance(outcome.exception, InvalidInput):
        words = told(request.user, outcome.exception)
        raise ValidationError({field(words): [words]})
    return answer(outcome, message=said(outcome, done))


# --- disks ---------------------------------------------------------------------------------------------

class DiskOut(Serializer):
    target = serializers.CharField()
    device = serializers.CharField(help_text="disk or cdrom")
    bus = serializers.CharField()
    source_ = serializers.CharField(help_text="pool/volume or path; empty: no medium")
    format = serializers.CharField()
    cache = serializers.CharField()
    placement = serializers.CharField(help_text="attached, added at next boot, removed at next boot")


def _disk(row: disks.DiskRow) -> dict[str, Any]:
    return {"target": row.target, "device": row.device, "bus": row.bus, "source": row.source, "format": row.format,
            "cache": row.cache, "placement": row.placement}


class Disks(ApiView):
    access = by_method(GET=page(ops.VIEW, "vm"), POST=ops.DISK_ATTACH)

    @extend_schema(summary="A VM's disks and CD-ROM drives", responses=DiskOut(many=True), operation_id="vm_disks")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        rows = disks.disk_rows(self.ref.call(definitions))
        return Response([_disk(r) for r in rows])

    @extend_schema(summary="Attach a new or an existing volume (existing: admins)", operation_id="vm_disk_attach",
                   request=form_schema(disk_pages.AttachDiskForm, "AttachDisk"), responses={200: Done})
    def post(self, request: Request, host: str, vm: Any) -> Response:
        offer = config_common.offer(request, self.ref)
        form = disk_pages.AttachDiskForm(offer, is_admin(request.user), data_of(request, disk_pages.AttachDiskForm))
        valid(form)
        outcome = disk_pages.attach(request, self.ref, form, quiet=True)
        return answer(outcome, form, message=said(outcome))


class Disk(ApiView):
    access = by_method(DELETE=ops.DISK_DETACH)

    @extend_schema(summary="Detach a disk (its volume stays)", operation_id="vm_disk_detach", responses={200: Done})
    def delete(self, request: Request, host: str, vm: Any, target: str) -> Response:
        outcome = disk_pages.detach(request, self.ref, target[:disk_pages.TARGET_MAX], quiet=True)
        return answer(outcome, message=said(outcome))


# --- CD-ROM drives ----------------------------------------------------------------------------------------

class CdRoms(ApiView):
    access = by_method(POST=ops.CDROM_ADD)

    @extend_schema(summary="Add a CD-ROM drive, empty or with an ISO (the VM must be shut off)",
                   operation_id="vm_cdrom_add", request=form_schema(disk_pages.IsoForm, "CdRomAdd"),
                   responses={200: Done})
    def post(self, request: Request, host: str, vm: Any) -> Response:
        offer = config_common.offer(request, self.ref)
        form = disk_pages.IsoForm(offer, data_of(request, disk_pages.IsoForm), optional=True)
        valid(form)
        outcome = disk_pages.add_cdrom(request, self.ref, form, quiet=True)
        return answer(outcome, form, message=said(outcome))


class CdRom(ApiView):
    access = by_method(DELETE=ops.CDROM_REMOVE)

    @extend_schema(summary="Remove a CD-ROM drive (the VM must be shut off)", operation_id="vm_cdrom_remove",
                   responses={200: Done})
    def delete(self, request: Request, host: str, vm: Any, target: str) -> Response:
        outcome = disk_pages.remove_cdrom(request, self.ref, target[:disk_pages.TARGET_MAX], quiet=True)
        return answer(outcome, message=said(outcome))


class CdRomMedia(ApiView):
    access = by_method(PUT=ops.CDROM_INSERT, DELETE=ops.CDROM_EJECT)

    @extend_schema(summary="Insert an ISO into a CD-ROM drive", operation_id="vm_cdrom_insert",
                   request=form_schema(disk_pages.IsoForm, "CdRomInsert"), responses={200: Done})
    def put(self, request: Request, host: str, vm: Any, target: str) -> Response:
        form = disk_pages.IsoForm(config_common.offer(request, self.ref), data_of(request, disk_pages.IsoForm))
        valid(form)
        outcome = disk_pages.insert(request, self.ref, target[:disk_pages.TARGET_MAX], form, quiet=True)
        return answer(outcome, form, message=said(outcome))

    @extend_schema(summary="Eject the ISO of a CD-ROM drive", operation_id="vm_cdrom_eject", responses={200: Done})
    def delete(self, request: Request, host: str, vm: Any, target: str) -> Response:
        outcome = disk_pages.eject(request, self.ref, target[:disk_pages.TARGET_MAX], quiet=True)
        return answer(outcome, message=said(outcome))


# --- network interfaces -----------------------------------------------------------------------------------

class NicOut(Serializer):
    mac = serializers.CharField(help_text="identifies the NIC in the URLs below")
    kind = serializers.CharField(help_text="network or bridge")
    source_ = serializers.CharField()
    model = serializers.CharField()
    link = serializers.CharField(help_text="up or down")
    placement = serializers.CharField(help_text="attached, added at next boot, removed at next boot")


def _nic(row: nics.NicRow) -> dict[str, Any]:
    return {"mac": row.mac, "kind": row.kind, "source": row.source, "model": row.model, "link": row.link,
            "placement": row.placement}


class Nics(ApiView):
    access = by_method(GET=page(ops.VIEW, "vm"), POST=ops.NIC_ADD)

    @extend_schema(summary="A VM's network interfaces", responses=NicOut(many=True), operation_id="vm_nics")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        return Response([_nic(r) for r in nics.nic_rows(self.ref.call(definitions))])

    @extend_schema(summary="Add a network interface (a given MAC: admins)", operation_id="vm_nic_add",
                   request=form_schema(nic_pages.AddNicForm, "AddNic"), responses={200: Done})
    def post(self, request: Request, host: str, vm: Any) -> Response:
        offer = config_common.offer(request, self.ref)
        form = nic_pages.AddNicForm(offer, is_admin(request.user), data_of(request, nic_pages.AddNicForm))
        valid(form)
        outcome = nic_pages.add(request, self.ref, form, quiet=True)
        return answer(outcome, form, message=said(outcome))


class Nic(ApiView):
    access = by_method(DELETE=ops.NIC_REMOVE, PATCH=ops.NIC_SOURCE)

    @extend_schema(summary="Remove a network interface", operation_id="vm_nic_remove", responses={200: Done})
    def delete(self, request: Request, host: str, vm: Any, mac: str) -> Response:
        outcome = nic_pages.remove(request, self.ref, mac[:nic_pages.MAC_MAX], quiet=True)
        return answer(outcome, message=said(outcome))

    @extend_schema(summary="Move a network interface to another network or bridge", operation_id="vm_nic_source",
                   request=form_schema(nic_pages.ChangeSourceForm, "NicSource"), responses={200: Done})
    def patch(self, request: Request, host: str, vm: Any, mac: str) -> Response:
        offer = config_common.offer(request, self.ref)
        form = nic_pages.ChangeSourceForm(offer, data_of(request, nic_pages.ChangeSourceForm))
        valid(form)
        outcome = nic_pages.move(request, self.ref, mac[:nic_pages.MAC_MAX], form, quiet=True)
        return answer(outcome, form, message=said(outcome))


class LinkIn(Serializer):
    up = serializers.BooleanField(help_text="true: link up; false: link down (the cable pulled)")


class NicLink(ApiView):
    access = by_method(PUT=ops.NIC_LINK)

    @extend_schema(summary="Set a network interface's link up or down", operation_id="vm_nic_link",
                   request=LinkIn, responses={200: Done})
    def put(self, request: Request, host: str, vm: Any, mac: str) -> Response:
        up = data_of(request).get("up")
        if not isinstance(up, bool):
            raise ValidationError({"up": [_("Link state: up (true) or down (false).")]})
        outcome = nic_pages.link(request, self.ref, mac[:nic_pages.MAC_MAX], up, quiet=True)
        return answer(outcome, message=said(outcome))


# --- resize, boot, VNC: GET the page's values, PUT the page's form (left-out fields keep theirs) ----------

class SizesOut(Serializer):
    vcpus = serializers.IntegerField()
    max_vcpus = serializers.IntegerField()
    memory_mib = serializers.IntegerField()
    max_memory_mib = serializers.IntegerField()
    running = serializers.DictField(allow_null=True, help_text="what the running VM has now; null: shut off")
    host_max_vcpus = serializers.IntegerField()
    host_memory_mib = serializers.IntegerField()
    persistent = serializers.BooleanField()


def _sizes(sizing: Sizing) -> dict[str, int]:
    return {"vcpus": sizing.vcpus, "max_vcpus": sizing.max_vcpus, "memory_mib": -(-sizing.memory_kib // 1024),
            "max_memory_mib": -(-sizing.max_memory_kib // 1024)}


class Resize(ApiView):
    access = by_method(GET=page(ops.CHANGE, "vm"), PUT=ops.RESIZE)

    @extend_schema(summary="A VM's vCPUs and memory, and the host's limits", responses=SizesOut,
                   operation_id="vm_sizes")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        state = self.ref.call(read_state)
        return Response({**_sizes(state.config), "running": _sizes(state.live) if state.live else None,
                         "host_max_vcpus": state.host_max_vcpus, "host_memory_mib": state.host_memory_mib,
                         "persistent": state.persistent})

    @extend_schema(summary="Resize: vCPUs and memory, live where possible and saved always (fields left out "
                           "keep their value)", operation_id="vm_resize",
                   request=form_schema(resize_pages.ResizeForm, "Resize"), responses={200: Done})
    def put(self, request: Request, host: str, vm: Any) -> Response:
        state = self.ref.call(read_state)
        form = resize_pages.ResizeForm(state, _with_current(resize_pages.ResizeForm(state), data_of(request)))
        valid(form)
        outcome = resize_pages.apply(request, self.ref, form, quiet=True)
        report, admin = outcome.value, is_admin(request.user)
        return answer(outcome, form, message=said(outcome, lambda r: resize_pages.summary(r, admin)),
                      data={"live": report.live, "next_boot": report.next_boot} if report else None)


class BootDeviceOut(Serializer):
    field = serializers.CharField(help_text="the field of PUT that places it in the order")
    kind = serializers.CharField()
    label_ = serializers.CharField()
    order = serializers.IntegerField(allow_null=True, help_text="its place in the boot order; null: not booted")


class BootOut(Serializer):
    devices = BootDeviceOut(many=True)
    bootmenu = serializers.BooleanField()
    autostart = serializers.BooleanField()
    running = serializers.BooleanField()
    pending = serializers.BooleanField(help_text="the running VM booted with another order or menu setting")


class BootIn(Serializer):
    bootmenu = serializers.BooleanField(required=False, help_text="left out: kept")
    autostart = serializers.BooleanField(required=False, help_text="left out: kept")
    order_KEY = serializers.IntegerField(required=False, help_text=(
        "one field per device (its `field` in GET): its place, 1 first. The order is given whole: a device "
        "left out (or null) is not booted from."))


class Boot(ApiView):
    access = by_method(GET=page(ops.CHANGE, "vm"), PUT=ops.BOOT)

    @extend_schema(summary="Boot order, boot menu and autostart", responses=BootOut, operation_id="vm_boot_settings")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        settings = self.ref.call(read_boot)
        return Response({
            "devices": [{"field": f"order_{d.key}", "kind": d.kind, "label": d.label, "order": d.order}
                        for d in settings.devices],
            "bootmenu": settings.bootmenu, "autostart": settings.autostart, "running": settings.running,
            "pending": settings.pending})

    @extend_schema(summary="Set the boot order, boot menu and autostart", operation_id="vm_boot", request=BootIn,
                   responses={200: Done})
    def put(self, request: Request, host: str, vm: Any) -> Response:
        settings = self.ref.call(read_boot)
        # As on the page, the order is the whole order: only the menu and autostart keep a left-out value.
        data = _with_current(boot_pages.BootForm(settings), data_of(request), skip=("order_",))
        form = boot_pages.BootForm(settings, data)
        valid(form)
        outcome = boot_pages.apply(request, self.ref, form, quiet=True)
        return answer(outcome, form, message=said(outcome, boot_pages.summary))


class VncOut(Serializer):
    present = serializers.BooleanField(help_text="false: the VM has no VNC display")
    has_password = serializers.BooleanField(help_text="the password itself is never shown")
    keymap = serializers.CharField(help_text="empty: qemu's default")
    listen = serializers.CharField()
    exposed = serializers.BooleanField(help_text="listens on every address of the host")
    running = serializers.BooleanField()
    pending = serializers.ListField(child=serializers.CharField(), help_text="settings waiting for the next boot")


class VncDone(Done):
    warnings = serializers.ListField(child=serializers.CharField())


class Vnc(ApiView):
    access = by_method(GET=page(ops.CHANGE, "vm"), PUT=ops.VNC)

    @extend_schema(summary="VNC settings (never the password)", responses=VncOut, operation_id="vm_vnc_settings")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        s = self.ref.call(read_vnc)
        return Response({"present": s.present, "has_password": s.has_password, "keymap": s.keymap,
                         "listen": s.listen, "exposed": s.exposed, "running": s.running, "pending": list(s.pending)})

    @extend_schema(summary="Set VNC settings: the keymap; admins also the password and listen address (fields "
                           "left out keep their value)", operation_id="vm_vnc",
                   request=form_schema(vnc_pages.VncForm, "Vnc"), responses={200: VncDone})
    def put(self, request: Request, host: str, vm: Any) -> Response:
        settings, admin = self.ref.call(read_vnc), is_admin(request.user)
        if not settings.present:
            raise Conflict(_("This VM has no VNC display."), code="invalid_state")
        # Only the fields this caller has are filled in: a user who sends a listen address or a password
        # gets the page's own refusal.
        form = vnc_pages.VncForm(settings, admin, _with_current(vnc_pages.VncForm(settings, admin), data_of(request)))
        valid(form)
        outcome = vnc_pages.apply(request, self.ref, form, quiet=True)
        return answer(outcome, form, message=said(outcome, lambda r: vnc_pages.summary(r, settings.running)),
                      data={"warnings": outcome.value.warnings if outcome.value else []})


# --- name, title and description ------------------------------------------------------------------------

class NameIn(Serializer):
    name = serializers.CharField(help_text="the new name (the VM must be shut off)")


class Name(ApiView):
    access = by_method(PUT=ops.RENAME)

    @extend_schema(summary="Rename a VM (shut off)", operation_id="vm_rename", request=NameIn, responses={200: Done})
    def put(self, request: Request, host: str, vm: Any) -> Response:
        new_name = _text(data_of(request), "name").strip()
        outcome = actions.rename_vm(request, self.ref, new_name, quiet=True)
        return _answer_fields(request, outcome, _("renamed to %(name)s.") % {"name": new_name}, lambda words: "name")


class DescriptionIn(Serializer):
    title = serializers.CharField(required=False, allow_blank=True, help_text="one line; empty or left out: none")
    description = serializers.CharField(required=False, allow_blank=True, help_text="empty or left out: none")


class Description(ApiView):
    access = by_method(PUT=ops.DESCRIBE)

    @extend_schema(summary="Set a VM's title and description", operation_id="vm_describe", request=DescriptionIn,
                   responses={200: Done})
    def put(self, request: Request, host: str, vm: Any) -> Response:
        data = data_of(request)
        title, description = _text(data, "title"), _text(data, "description")
        outcome = actions.describe_vm(request, self.ref, title, description, quiet=True)
        return _answer_fields(request, outcome, "title and description saved.",
                              lambda words: "title" if "title" in words.lower() else "description")


# --- the raw XML (admins) ---------------------------------------------------------------------------------

class XmlEditIn(forms.Form):
    """The editor's body as JSON (the page posts the same two fields, `xml` and `base`)."""

    xml = forms.CharField(strip=False, help_text="the edited definition; passwords shown masked stay as they are")
    version = forms.CharField(max_length=128, help_text="the version GET answered with")


class RollbackIn(forms.Form):
    history_id = forms.IntegerField(min_value=1, help_text="the `id` of an entry of the history")
    version = forms.CharField(max_length=128, help_text="the current version (GET xml/ or xml/history/)")


class XmlOut(Serializer):
    xml = serializers.CharField(help_text="the persistent definition, passwords masked")
    version = serializers.CharField(help_text="send it back with the edit: a stale one answers 409 `stale`")
    name = serializers.CharField()
    active = serializers.BooleanField()
    pending = serializers.CharField(help_text="diff from the running definition to the saved one (masked)")
    history_count = serializers.IntegerField()


class XmlDone(Done):
    version = serializers.CharField(help_text="the version now")
    history_id = serializers.IntegerField(allow_null=True, help_text="the entry keeping what was there before")


class HistoryOut(Serializer):
    id = serializers.IntegerField()
    time = serializers.DateTimeField()
    username = serializers.CharField()
    reason = serializers.CharField()
    vm_name = serializers.CharField()
    diff = serializers.CharField(help_text="from that definition to the one that replaced it, masked")


class HistoryPage(Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = HistoryOut(many=True)
    version = serializers.CharField(allow_null=True, help_text="the current version; null: libvirt did not answer")


def _saved_answer(saved: xml_pages.Saved, field: str) -> Response:
    """A save or rollback as JSON: the page's words, with the status the page answers."""
    if saved.ok:
        after = saved.after or saved.snap
        assert after is not None
        return Response({"message": saved.message, "version": xml_pages.version(after),
                         "history_id": saved.entry.pk if saved.entry else None})
    if saved.status == status.HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        raise TooLarge(saved.problem)
    if saved.stale:
        raise Conflict(saved.problem, code="stale")
    if saved.failure is not None and saved.status != status.HTTP_400_BAD_REQUEST:
        raise saved.failure
    where = f" (line {saved.line})" if saved.line else ""
    raise ValidationError({field: [saved.problem + where]})


class Xml(ApiView):
    access = by_method(GET=page(ADMIN, "vm"), PUT=ops.XML_EDIT)

    @extend_schema(summary="A VM's persistent definition and its version (admins)", responses=XmlOut,
                   operation_id="vm_xml")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        ref = self.ref
        snap = ref.call(xmledit.snapshot)
        return Response({"xml": xmledit.mask(snap.xml), "version": xml_pages.version(snap), "name": snap.name,
                         "active": snap.active, "pending": xml_pages.pending_diff(snap),
                         "history_count": xml_pages.history_entries(ref).count()})

    @extend_schema(summary="Save an edited definition (admins); a stale version: 409 `stale`, nothing saved",
                   operation_id="vm_xml_edit", request=form_schema(XmlEditIn, "XmlEdit"),
                   responses={200: XmlDone})
    def put(self, request: Request, host: str, vm: Any) -> Response:
        ref = self.ref
        try:  # before anything reads the body, as the page
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = xml_pages.MAX_BODY_BYTES + 1
        if length > xml_pages.MAX_BODY_BYTES:
            raise TooLarge(xml_pages.refuse_too_large(request, ref, f"request body of {length} bytes").problem)
        form = XmlEditIn(data_of(request))
        body = valid(form)
        text = xmledit.normalise(body["xml"])
        return _saved_answer(xml_pages.save(request, ref, text, body["version"], quiet=True), "xml")


class XmlHistory(ApiView):
    access = page(ADMIN, "vm")

    @extend_schema(summary="The definitions the editor replaced, newest first (admins)", responses=HistoryPage,
                   operation_id="vm_xml_history")
    def get(self, request: Request, host: str, vm: Any) -> Response:
        ref = self.ref
        try:
            current: str | None = xml_pages.version(ref.call(xmledit.snapshot))
        except VirtError:
            current = None  # the history is the panel's own: listed while the host does not answer
        paginator = LimitOffsetPagination()
        chosen = paginator.paginate_queryset(xml_pages.history_entries(ref), request, view=self) or []
        response = paginator.get_paginated_response([
            {"id": e.pk, "time": e.time, "username": e.username, "reason": e.reason, "vm_name": e.vm_name,
             "diff": xmledit.mask(e.diff)} for e in chosen])
        response.data["version"] = current
        return response


class XmlRollback(ApiView):
    access = by_method(POST=ops.XML_ROLLBACK)

    @extend_schema(summary="Bring back a definition of the history (admins); a stale version: 409 `stale`",
                   operation_id="vm_xml_rollback", request=form_schema(RollbackIn, "XmlRollback"),
                   responses={200: XmlDone})
    def post(self, request: Request, host: str, vm: Any) -> Response:
        ref = self.ref
        body = valid(RollbackIn(data_of(request)))
        stored = xml_pages.history_entries(ref).defer(None).filter(pk=body["history_id"]).first()
        if stored is None:
            raise ValidationError({"history_id": [_("No such entry in this VM's history.")]})
        return _saved_answer(xml_pages.rollback(request, ref, stored, body["version"], quiet=True),
                             "non_field_errors")


VM = "vms/<str:host>/<uuid:vm>/"
urlpatterns: list[Any] = [
    path(VM + "disks/", declared(Disks), name="vm-disks"),
    path(VM + "disks/<str:target>/", declared(Disk), name="vm-disk"),
    path(VM + "cdroms/", declared(CdRoms), name="vm-cdroms"),
    path(VM + "cdroms/<str:target>/", declared(CdRom), name="vm-cdrom"),
    path(VM + "cdroms/<str:target>/media/", declared(CdRomMedia), name="vm-cdrom-media"),
    path(VM + "nics/", declared(Nics), name="vm-nics"),
    path(VM + "nics/<str:mac>/", declared(Nic), name="vm-nic"),
    path(VM + "nics/<str:mac>/link/", declared(NicLink), name="vm-nic-link"),
    path(VM + "resize/", declared(Resize), name="vm-resize"),
    path(VM + "boot/", declared(Boot), name="vm-boot"),
    path(VM + "vnc/", declared(Vnc), name="vm-vnc"),
    path(VM + "name/", declared(Name), name="vm-name"),
    path(VM + "description/", declared(Description), name="vm-description"),
    path(VM + "xml/", declared(Xml), name="vm-xml"),
    path(VM + "xml/history/", declared(XmlHistory), name="vm-xml-history"),
    path(VM + "xml/rollback/", declared(XmlRollback), name="vm-xml-rollback"),
]
