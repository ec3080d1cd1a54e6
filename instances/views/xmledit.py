"""The raw XML editor (admins only): edit a VM's persistent definition, its history, and rollback.

Order of checks on a save: admin (403, audited), body size (413, before anything reads the
body, CSRF included), CSRF, hardened parse and "is this our VM" (400), stale definition (409
with a diff), then libvirt's schema validation (its message, the old definition untouched).
The previous definition is stored before libvirt is asked, so no outcome can lose it.

A save or a rollback is one declared operation (ops.XML_EDIT, ops.XML_ROLLBACK): refusals before
libvirt is asked are audited as refused, the define itself runs through on_vm (the VM's lock, one
audit record). A save that changes nothing defines nothing and is not audited.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Any

import libvirt
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from lxml import etree

from instances import operations as ops
from instances.lookup import VMRef
from instances.models import DomainDefinition
from virt import xmledit
from virt.errors import Unreachable, VirtError
from virt.xml.codecs import iec
from virt.xmledit import DefineRefused, DocumentRejected, Snapshot, SourceLines, StaleDefinition
from webkvm.formats import when
from webkvm.operations import ADMIN, Operation, on_vm, page, refused, vm_route

MAX_BODY_BYTES = 2 * xmledit.MAX_DOCUMENT_BYTES + 64 * 1024  # the edit plus the text it started from


def _key() -> bytes:
    return hashlib.sha256(b"webkvm.xml-editor:" + settings.SECRET_KEY.encode()).digest()


def _refused(request: HttpRequest, op: Operation, ref: VMRef, name: str, reason: str) -> None:
    """Audit a save or rollback refused before libvirt was asked to define anything."""
    refused(request, op, host=ref.host, name=name or ref.uuid, reason=f"{reason}; uuid {ref.uuid}")


def _rows(diff: str) -> list[tuple[str, str]]:
    """Diff lines with a class each (shown as blocks), so the page can colour them without inline styles."""
    kinds = {"+++": "meta", "---": "meta", "@@": "hunk", "+": "add", "-": "del"}
    return [(next((kind for prefix, kind in kinds.items() if line.startswith(prefix)), "ctx"), line)
            for line in diff.splitlines()]


def _pending(snap: Snapshot) -> str:
    if snap.live is None:
        return ""
    return xmledit.masked_diff(snap.live, snap.xml, "running now", "at the next boot")


def _editor(request: HttpRequest, ref: VMRef, snap: Snapshot, *, text: str | None = None, base: str = "",
            original: str = "", error: str = "", line: int | None = None, stale: str | None = None,
            status: int = 200) -> HttpResponse:
    shown = xmledit.mask(snap.xml) if text is None else text
    lines = shown.split("\n")
    context: dict[str, Any] = {
        "ref": ref, "snap": snap, "text": shown,
        "base": base or xmledit.fingerprint(snap.xml, _key()),
        "original": original or xmledit.mask(snap.xml),
        "error": error, "error_line": line,
        "error_excerpt": lines[line - 1] if line and 0 < line <= len(lines) else "",
        "stale": stale is not None, "stale_rows": _rows(stale or ""), "pending_rows": _rows(_pending(snap)),
        "mask": xmledit.MASK,
        "history_count": DomainDefinition.objects.filter(host=ref.host, vm_uuid=ref.uuid).count(),
    }
    return render(request, "instances/config/xml_edit.html", context, status=status)


def _unreachable(request: HttpRequest, ref: VMRef, exc: VirtError, template: str) -> HttpResponse:
    return render(request, template, {"ref": ref, "unreachable": str(exc)}, status=503)


@dataclasses.dataclass(frozen=True)
class _Defined:
    after: Snapshot  # the definition libvirt has now
    diff: str  # before -> after, passwords masked; empty when libvirt changed nothing

    def changed_lines(self) -> int:
        return sum(1 for kind, _ in _rows(self.diff) if kind in ("add", "del"))


def _history_entry(request: HttpRequest, ref: VMRef, snap: Snapshot, reason: str) -> DomainDefinition:
    user = request.user if request.user.is_authenticated else None
    return DomainDefinition.objects.create(host=ref.host, vm_uuid=ref.uuid, vm_name=snap.name, user=user,
                                           username=user.get_username() if user else "", reason=reason,
                                           xml=snap.xml)


def _define(request: HttpRequest, op: Operation, ref: VMRef, snap: Snapshot, document: str,
            lines: SourceLines | None, reason: str) -> tuple[DomainDefinition | None, Snapshot]:
    """Store the current definition, then define `document` as the operation `op` (the VM's lock, one
    audit record). Returns the completed history entry (None when libvirt kept its definition as it
    was) and the definition now. The entry goes when libvirt surely changed nothing and stays, marked,
    when libvirt did not answer; a failure is raised again for the page to show."""
    entry = _history_entry(request, ref, snap, reason)
    started: list[bool] = []
    raised: list[VirtError] = []

    def run(dom: libvirt.virDomain) -> _Defined:
        started.append(True)
        try:
            after = xmledit.define(dom, document, snap.xml, lines)
        except VirtError as exc:
            raised.append(exc)
            raise
        return _Defined(after, "" if after.xml == snap.xml else
                        xmledit.masked_diff(snap.xml, after.xml, "before", "after"))

    def detail(defined: _Defined) -> str:
        if not defined.diff:
            return f"{reason}: libvirt's definition is unchanged"
        return f"{reason}; history #{entry.pk}; {defined.changed_lines()} lines changed"

    try:
        outcome = on_vm(request, op, ref, run, done="definition saved.", detail=detail, quiet=True)
    except BaseException:  # not the host's answer (the VM is gone: 404): nothing was defined
        entry.delete()
        raise
    if outcome.ok and outcome.value is not None:
        return _accepted(entry, outcome.value)
    error = raised[0] if raised else VirtError(outcome.error)
    if isinstance(error, Unreachable) or (started and not raised):
        # No answer: libvirt may or may not have taken it. Keep what was there before, marked.
        entry.reason = f"{reason} (libvirt did not confirm it)"
        entry.save(update_fields=["reason"])
    else:
        entry.delete()
    raise error


def _accepted(entry: DomainDefinition, defined: _Defined) -> tuple[DomainDefinition | None, Snapshot]:
    """Complete the history entry written before the define, or drop it if libvirt changed nothing."""
    if not defined.diff:
        entry.delete()
        return None, defined.after
    entry.diff = defined.diff
    entry.vm_name = defined.after.name
    entry.save(update_fields=["diff", "vm_name"])
    return entry, defined.after


def _saved(request: HttpRequest, ref: VMRef, entry: DomainDefinition | None, after: Snapshot,
           page_name: str, restored: DomainDefinition | None = None) -> HttpResponse:
    """The one message of a define that worked (a rollback names the version it brought back)."""
    if entry is None:
        messages.info(request, "libvirt's definition is unchanged.")
    else:
        note = " The VM is running: the new definition applies at its next boot." if after.active else ""
        done = ("definition saved" if restored is None else
                f"Rolled back to the version of {when(restored.time)} (from before change #{restored.pk})")
        messages.success(request, f"{after.name}: {done}; the previous one is kept in the history.{note}")
    return redirect(page_name, ref.host.name, ref.uuid)


@csrf_exempt  # the body size is checked first; _save() is CSRF-protected
@require_http_methods(["GET", "POST"])
@vm_route(ops.XML_EDIT)  # domain XML can point a disk at any file of the host: root there, so admins only
def xml_edit(request: HttpRequest, ref: VMRef) -> HttpResponse:
    if request.method == "POST":
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = MAX_BODY_BYTES + 1
        if length > MAX_BODY_BYTES:
            return _too_large(request, ref, f"request body of {length} bytes")
        return _save(request, ref)
    try:
        snap = ref.call(xmledit.snapshot)
    except VirtError as exc:
        return _unreachable(request, ref, exc, "instances/config/xml_edit.html")
    return _editor(request, ref, snap)


def _too_large(request: HttpRequest, ref: VMRef, what: str) -> HttpResponse:
    _refused(request, ops.XML_EDIT, ref, "", f"{what}, over the limit")
    limit = iec(xmledit.MAX_DOCUMENT_BYTES)
    return HttpResponse(f"The definition is larger than {limit}: nothing was saved.\n", status=413,
                        content_type="text/plain; charset=utf-8")


@csrf_protect
def _save(request: HttpRequest, ref: VMRef) -> HttpResponse:
    text = xmledit.normalise(request.POST.get("xml", ""))
    if len(text.encode("utf-8")) > xmledit.MAX_DOCUMENT_BYTES:  # before any parsing
        return _too_large(request, ref, f"document of {len(text.encode('utf-8'))} bytes")
    base = request.POST.get("base", "")[:128]
    original = xmledit.normalise(request.POST.get("original", ""))
    rejected: DocumentRejected | None = None
    try:
        xmledit.check_document(text, ref.uuid)  # the name needs libvirt; checked again in prepare()
    except DocumentRejected as exc:
        rejected = exc
    try:
        snap = ref.call(xmledit.snapshot)
    except VirtError as exc:
        _refused(request, ops.XML_EDIT, ref, "", f"the definition could not be read: {exc}")
        return _unreachable(request, ref, exc, "instances/config/xml_edit.html")

    def again(error: str, line: int | None, status: int) -> HttpResponse:
        """The editor with the submitted text kept, and what was wrong with it."""
        return _editor(request, ref, snap, text=text, base=base, original=original, error=error, line=line,
                       status=status)

    if rejected is None and not hmac.compare_digest(base, xmledit.fingerprint(snap.xml, _key())):
        _refused(request, ops.XML_EDIT, ref, snap.name, "stale edit (the definition changed since it was opened)")
        return _editor(request, ref, snap, text=text,
                       stale=xmledit.masked_diff(original, snap.xml, "when you opened the editor", "now"),
                       status=409)
    try:
        if rejected is not None:
            raise rejected
        document, lines = xmledit.prepare(text, snap)
    except DocumentRejected as exc:
        _refused(request, ops.XML_EDIT, ref, snap.name, str(exc))
        return again(str(exc), exc.line, 400)
    if text.strip() == xmledit.mask(snap.xml).strip():
        messages.info(request, "Nothing changed: the definition was not touched.")
        return redirect("instances:xml_edit", ref.host.name, ref.uuid)
    try:
        entry, after = _define(request, ops.XML_EDIT, ref, snap, document, lines, "edit")
    except StaleDefinition as exc:
        return _editor(request, ref, dataclasses.replace(snap, xml=exc.current), text=text,
                       stale=xmledit.masked_diff(original, exc.current, "when you opened the editor", "now"),
                       status=409)
    except DefineRefused as exc:
        return again(f"libvirt refused the definition: {exc}", exc.line, 400)
    except VirtError as exc:
        return again(str(exc), None, 503)
    return _saved(request, ref, entry, after, "instances:xml_edit")


def _history(request: HttpRequest, ref: VMRef, *, error: str = "", status: int = 200) -> HttpResponse:
    context: dict[str, Any] = {"ref": ref, "error": error}
    try:
        snap = ref.call(xmledit.snapshot)
        context.update(snap=snap, base=xmledit.fingerprint(snap.xml, _key()))
    except VirtError as exc:
        context["unreachable"] = str(exc)
        status = max(status, 503)
    # Only what the page shows: the stored XML never reaches a template.
    context["entries"] = [
        {"pk": e.pk, "time": e.time, "username": e.username, "reason": e.reason, "vm_name": e.vm_name,
         "rows": _rows(xmledit.mask(e.diff))}
        for e in DomainDefinition.objects.filter(host=ref.host, vm_uuid=ref.uuid).defer("xml")
    ]
    return render(request, "instances/config/xml_history.html", context, status=status)


@require_GET
@vm_route(page(ADMIN))
def xml_history(request: HttpRequest, ref: VMRef) -> HttpResponse:
    return _history(request, ref)


@require_POST
@vm_route(ops.XML_ROLLBACK)
def xml_rollback(request: HttpRequest, ref: VMRef, pk: int) -> HttpResponse:
    stored = get_object_or_404(DomainDefinition, pk=pk, host=ref.host, vm_uuid=ref.uuid)
    reason = f"rollback to the definition before change #{stored.pk}"
    try:
        snap = ref.call(xmledit.snapshot)
    except VirtError as exc:
        _refused(request, ops.XML_ROLLBACK, ref, "", f"{reason}: the definition could not be read: {exc}")
        return _history(request, ref, error=str(exc), status=503)
    if not hmac.compare_digest(request.POST.get("base", "")[:128], xmledit.fingerprint(snap.xml, _key())):
        _refused(request, ops.XML_ROLLBACK, ref, snap.name, f"{reason}: stale page")
        return _history(request, ref, status=409, error="The definition changed since this page was opened: "
                        "nothing was rolled back. Look at the history again before choosing.")
    try:
        root = xmledit.check_document(stored.xml, snap.uuid, snap.name)
    except DocumentRejected as exc:
        _refused(request, ops.XML_ROLLBACK, ref, snap.name, f"{reason}: {exc}")
        return _history(request, ref, error=f"That definition cannot be restored: {exc}", status=400)
    if xmledit.without_secrets(stored.xml) == xmledit.without_secrets(snap.xml):
        messages.info(request, "That is already the current definition: nothing changed.")
        return redirect("instances:xml_history", ref.host.name, ref.uuid)
    # What was stored, with the VM's current passwords: a rollback never brings an old one back.
    xmledit.carry_secrets(root, snap.xml)
    try:
        entry, after = _define(request, ops.XML_ROLLBACK, ref, snap, etree.tostring(root, encoding="unicode"), None,
                               reason)
    except StaleDefinition:
        return _history(request, ref, status=409, error="The definition changed meanwhile: nothing was rolled back.")
    except DefineRefused as exc:
        return _history(request, ref, error=f"libvirt refused the stored definition: {exc}", status=400)
    except VirtError as exc:  # busy, or no answer (then whether it was rolled back is unknown)
        return _history(request, ref, error=str(exc), status=503)
    return _saved(request, ref, entry, after, "instances:xml_history", restored=stored)
