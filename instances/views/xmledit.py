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
import re
from typing import Any

import libvirt
from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET
from lxml import etree

from instances import operations as ops
from instances.lookup import VMRef
from instances.models import DomainDefinition
from instances.views.config_common import sentences
from virt import xmledit
from virt.errors import Unreachable, VirtError
from virt.xml.codecs import iec
from virt.xmledit import DefineRefused, DocumentRejected, Snapshot, SourceLines, StaleDefinition
from webkvm.formats import when
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
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


def pending_diff(snap: Snapshot) -> str:
    if snap.live is None:
        return ""
    return xmledit.masked_diff(snap.live, snap.xml, _("running now"), _("at the next boot"))


def _editor(request: HttpRequest, ref: VMRef, snap: Snapshot, *, text: str | None = None, base: str = "",
            original: str = "", error: str = "", line: int | None = None, stale: str | None = None,
            status: int = 200) -> HttpResponse:
    context = _editor_context(ref, snap, text=text, base=base, original=original, error=error, line=line, stale=stale)
    return render(request, "instances/config/xml_edit.html", context, status=status)


def _editor_context(ref: VMRef, snap: Snapshot, *, text: str | None = None, base: str = "", original: str = "",
                    error: str = "", line: int | None = None, stale: str | None = None) -> dict[str, Any]:
    shown = xmledit.mask(snap.xml) if text is None else text
    lines = shown.split("\n")
    return {
        "ref": ref, "snap": snap, "text": shown,
        "base": base or version(snap),
        "original": original or xmledit.mask(snap.xml),
        "error": error, "error_line": line,
        "error_excerpt": lines[line - 1] if line and 0 < line <= len(lines) else "",
        "stale": stale is not None, "stale_rows": _rows(stale or ""), "pending_rows": _rows(pending_diff(snap)),
        "mask": xmledit.MASK,
        "history_count": DomainDefinition.objects.filter(host=ref.host, vm_uuid=ref.uuid).count(),
    }


def _unreachable(request: HttpRequest, ref: VMRef, exc: VirtError, template: str) -> HttpResponse:
    return render(request, template, {"ref": ref, "unreachable": said(exc)}, status=503)


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


@dataclasses.dataclass(frozen=True)
class Saved:
    """What a save or a rollback came to: the page renders it, the API answers it."""

    snap: Snapshot | None  # the definition it was checked against (stale: libvirt's current one); None: unread
    message: str = ""  # what was done, in words (it worked, or nothing needed doing)
    problem: str = ""  # why nothing was saved, in words
    status: int = 200  # 400 rejected, 409 stale, 413 too large, 503 libvirt did not answer
    line: int | None = None  # in the submitted text, when the problem has one
    stale: bool = False
    failure: VirtError | None = None  # libvirt's own failure (no answer, busy), for the API's error codes
    after: Snapshot | None = None  # the definition now, when it worked
    entry: DomainDefinition | None = None  # the history entry of a define that changed something

    @property
    def ok(self) -> bool:
        return not self.problem


STALE_EDIT = gettext_lazy("The definition changed since it was opened: nothing was saved.")
STALE_PAGE = gettext_lazy("The definition changed since this page was opened: nothing was rolled back. Look at the "
                          "history again before choosing.")


def version(snap: Snapshot) -> str:
    """The version of a definition that an edit or a rollback starts from (the editor's `base`); keyed (_key)."""
    return xmledit.fingerprint(snap.xml, _key())


def _done_words(entry: DomainDefinition | None, after: Snapshot, restored: DomainDefinition | None) -> str:
    """The one message of a define that worked (a rollback names the version it brought back)."""
    if entry is None:
        return _("libvirt's definition is unchanged.")
    if restored is None:
        done = _("{name}: definition saved; the previous one is kept in the history.").format(name=after.name)
    else:
        done = _("{name}: Rolled back to the version of {time} (from before change #{number}); the previous one is "
                 "kept in the history.").format(name=after.name, time=when(restored.time), number=restored.pk)
    if after.active:
        done = sentences([done, _("The VM is running: the new definition applies at its next boot.")])
    return done


def _worked(request: HttpRequest, snap: Snapshot, entry: DomainDefinition | None, after: Snapshot, *,
            quiet: bool, restored: DomainDefinition | None = None) -> Saved:
    words = _done_words(entry, after, restored)
    if not quiet:
        (messages.info if entry is None else messages.success)(request, words)
    return Saved(snap, message=words, after=after, entry=entry)


def _unchanged(request: HttpRequest, snap: Snapshot, words: str, *, quiet: bool) -> Saved:
    if not quiet:
        messages.info(request, words)
    return Saved(snap, message=words, after=snap)


def _too_large_words() -> str:
    return _("The definition is larger than {size}: nothing was saved.").format(size=iec(xmledit.MAX_DOCUMENT_BYTES))


def refuse_too_large(request: HttpRequest, ref: VMRef, what: str) -> Saved:
    """Audit a body or document over the limit, refused before anything read it."""
    _refused(request, ops.XML_EDIT, ref, "", f"{what}, over the limit")
    return Saved(None, problem=_too_large_words(), status=413)


def save(request: HttpRequest, ref: VMRef, text: str, base: str, *, quiet: bool = False) -> Saved:
    """Save the edited definition `text`, opened at the version `base`: the page's and the API's one way,
    checked in the order the module's docstring gives, every refusal audited; a message unless `quiet`."""
    size = len(text.encode("utf-8"))
    if size > xmledit.MAX_DOCUMENT_BYTES:  # before any parsing
        return refuse_too_large(request, ref, f"document of {size} bytes")
    rejected: DocumentRejected | None = None
    try:
        xmledit.check_document(text, ref.uuid)  # the name needs libvirt; checked again in prepare()
    except DocumentRejected as exc:
        rejected = exc
    try:
        snap = ref.call(xmledit.snapshot)
    except VirtError as exc:
        _refused(request, ops.XML_EDIT, ref, "", f"the definition could not be read: {exc}")
        return Saved(None, problem=said(exc), status=503, failure=exc)
    if rejected is None and not hmac.compare_digest(base, version(snap)):
        _refused(request, ops.XML_EDIT, ref, snap.name, "stale edit (the definition changed since it was opened)")
        return Saved(snap, problem=str(STALE_EDIT), status=409, stale=True)
    try:
        if rejected is not None:
            raise rejected
        document, lines = xmledit.prepare(text, snap)
    except DocumentRejected as exc:
        _refused(request, ops.XML_EDIT, ref, snap.name, str(exc))
        return Saved(snap, problem=said(exc), status=400, line=exc.line)
    if text.strip() == xmledit.mask(snap.xml).strip():
        return _unchanged(request, snap, _("Nothing changed: the definition was not touched."), quiet=quiet)
    try:
        entry, after = _define(request, ops.XML_EDIT, ref, snap, document, lines, "edit")
    except StaleDefinition as exc:
        return Saved(dataclasses.replace(snap, xml=exc.current), problem=str(STALE_EDIT), status=409, stale=True)
    except DefineRefused as exc:
        return Saved(snap, problem=_("libvirt refused the definition: {why}").format(why=said(exc)), status=400,
                     line=exc.line)
    except VirtError as exc:
        return Saved(snap, problem=said(exc), status=503, failure=exc)
    return _worked(request, snap, entry, after, quiet=quiet)


def rollback(request: HttpRequest, ref: VMRef, stored: DomainDefinition, base: str, *,
             quiet: bool = False) -> Saved:
    """Bring back the stored definition, from the version `base` of the current one: the page's and the
    API's one way, every refusal audited; a message unless `quiet`."""
    reason = f"rollback to the definition before change #{stored.pk}"
    try:
        snap = ref.call(xmledit.snapshot)
    except VirtError as exc:
        _refused(request, ops.XML_ROLLBACK, ref, "", f"{reason}: the definition could not be read: {exc}")
        return Saved(None, problem=said(exc), status=503, failure=exc)
    if not hmac.compare_digest(base, version(snap)):
        _refused(request, ops.XML_ROLLBACK, ref, snap.name, f"{reason}: stale page")
        return Saved(snap, problem=str(STALE_PAGE), status=409, stale=True)
    try:
        root = xmledit.check_document(stored.xml, snap.uuid, snap.name)
    except DocumentRejected as exc:
        _refused(request, ops.XML_ROLLBACK, ref, snap.name, f"{reason}: {exc}")
        return Saved(snap, problem=_("That definition cannot be restored: {why}").format(why=said(exc)), status=400)
    if xmledit.without_secrets(stored.xml) == xmledit.without_secrets(snap.xml):
        return _unchanged(request, snap, _("That is already the current definition: nothing changed."), quiet=quiet)
    # What was stored, with the VM's current passwords: a rollback never brings an old one back.
    xmledit.carry_secrets(root, snap.xml)
    try:
        entry, after = _define(request, ops.XML_ROLLBACK, ref, snap, etree.tostring(root, encoding="unicode"), None,
                               reason)
    except StaleDefinition:
        return Saved(snap, problem=_("The definition changed meanwhile: nothing was rolled back."), status=409,
                     stale=True)
    except DefineRefused as exc:
        return Saved(snap, problem=_("libvirt refused the stored definition: {why}").format(why=said(exc)),
                     status=400)
    except VirtError as exc:  # busy, or no answer (then whether it was rolled back is unknown)
        return Saved(snap, problem=said(exc), status=503, failure=exc)
    return _worked(request, snap, entry, after, quiet=quiet, restored=stored)


# ---- the pages ------------------------------------------------------------------------------------


def _opened(call: Call) -> None:
    """GET: the definition as libvirt has it now, in the editor. A save reads it itself, after the size check."""
    if not call.posted:
        call.context.update(_editor_context(call.ref, call.ref.call(xmledit.snapshot)))


def _posted(call: Call) -> HttpResponse:
    """The body's size first (before anything reads the body, CSRF included), then the CSRF-protected save."""
    try:
        length = int(call.request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = MAX_BODY_BYTES + 1
    if length > MAX_BODY_BYTES:
        return _too_large(refuse_too_large(call.request, call.ref, f"request body of {length} bytes"))
    return _save(call.request, call.ref)


# Domain XML can point a disk at any file of the host: root there, so admins only. GET: the editor. POST: the
# save, answered by _save (the editor again with the problem: 400, stale 409 with a diff, 413, 503).
xml_edit = csrf_exempt(operation_view(OperationPage(  # the body size is checked first; _save() is CSRF-protected
    ops.XML_EDIT, names_vm=True, template="instances/config/xml_edit.html", find=_opened,
    unreadable=lambda call, exc: _unreachable(call.request, call.ref, exc, "instances/config/xml_edit.html"),
    run=_posted, answer=lambda call, response: response,
    then=lambda call, _response: reverse("instances:xml_edit", args=[call.ref.host.name, call.ref.uuid]))))


def _too_large(saved: Saved) -> HttpResponse:
    return HttpResponse(saved.problem + "\n", status=413, content_type="text/plain; charset=utf-8")


@csrf_protect
def _save(request: HttpRequest, ref: VMRef) -> HttpResponse:
    text = xmledit.normalise(request.POST.get("xml", ""))
    base = request.POST.get("base", "")[:128]
    original = xmledit.normalise(request.POST.get("original", ""))
    saved = save(request, ref, text, base)
    if saved.ok:
        return redirect("instances:xml_edit", ref.host.name, ref.uuid)
    if saved.status == 413:
        return _too_large(saved)
    if saved.snap is None:
        assert saved.failure is not None
        return _unreachable(request, ref, saved.failure, "instances/config/xml_edit.html")
    if saved.stale:
        return _editor(request, ref, saved.snap, text=text, status=409,
                       stale=xmledit.masked_diff(original, saved.snap.xml, _("when you opened the editor"), _("now")))
    # The editor with the submitted text kept, and what was wrong with it.
    return _editor(request, ref, saved.snap, text=text, base=base, original=original, error=saved.problem,
                   line=saved.line, status=saved.status)


def history_entries(ref: VMRef) -> QuerySet[DomainDefinition]:
    """A VM's stored definitions, newest first, without their XML (which never leaves the panel)."""
    return DomainDefinition.objects.filter(host=ref.host, vm_uuid=ref.uuid).defer("xml")


def entry_rows(entry: DomainDefinition) -> list[tuple[str, str]]:
    return _rows(xmledit.mask(entry.diff))


_ROLLBACK_REASON = re.compile(r"rollback to the definition before change #(\d+)")
_UNCONFIRMED = " (libvirt did not confirm it)"


def reason_words(reason: str) -> str:
    """Why a stored definition was replaced (stored in English: "edit", "rollback to the definition before
    change #12", either followed by " (libvirt did not confirm it)"), in the user's language."""
    if reason.endswith(_UNCONFIRMED):
        return _("{reason} (libvirt did not confirm it)").format(reason=reason_words(reason.removesuffix(_UNCONFIRMED)))
    if reason == "edit":
        return _("edit")
    if found := _ROLLBACK_REASON.fullmatch(reason):
        return _("rollback to the definition before change #{number}").format(number=found.group(1))
    return reason


def _history(request: HttpRequest, ref: VMRef, *, error: str = "", status: int = 200) -> HttpResponse:
    context: dict[str, Any] = {"ref": ref, "error": error}
    try:
        snap = ref.call(xmledit.snapshot)
        context.update(snap=snap, base=version(snap))
    except VirtError as exc:
        context["unreachable"] = said(exc)
        status = max(status, 503)
    # Only what the page shows: the stored XML never reaches a template.
    context["entries"] = [
        {"pk": e.pk, "time": e.time, "username": e.username, "reason": reason_words(e.reason), "vm_name": e.vm_name,
         "rows": entry_rows(e)}
        for e in history_entries(ref)
    ]
    return render(request, "instances/config/xml_history.html", context, status=status)


@require_GET
@vm_route(page(ADMIN))
def xml_history(request: HttpRequest, ref: VMRef) -> HttpResponse:
    return _history(request, ref)


def _rolled_back(call: Call) -> Saved:
    stored = get_object_or_404(DomainDefinition, pk=call.args["pk"], host=call.ref.host, vm_uuid=call.ref.uuid)
    return rollback(call.request, call.ref, stored, call.request.POST.get("base", "")[:128])


# A button of the history page: back there, with the problem when nothing was rolled back (409: stale page).
xml_rollback = operation_view(OperationPage(
    ops.XML_ROLLBACK, names_vm=True, run=_rolled_back,
    answer=lambda call, saved: None if saved.ok else _history(call.request, call.ref, error=saved.problem,
                                                               status=saved.status),
    then=lambda call, _saved: reverse("instances:xml_history", args=[call.ref.host.name, call.ref.uuid])))
