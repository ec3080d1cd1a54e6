"""Uploads into and downloads from volumes, shared by the WSGI views and the streaming ASGI path.

Upload: the browser first asks (POST, a form) whether its file fits; then it PUTs the raw file
with Content-Length. The body is read in chunks and each chunk goes straight into a libvirt
stream, so the panel holds at most a few chunks whatever the file size. Anything short of the
whole body aborts the stream and deletes the volume. Download: virt.streams.Download reads the
volume in bounded segments; the caller hands its chunks on as they come.

Each transfer is one declared operation (storage/operations.py) with one audit record: a download
when its stream starts (webkvm.operations.perform), an upload when it ends (its whole duration), or
when the panel refuses it first (webkvm.operations.refused).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from api.errors import from_host
from hosts import services
from hosts.models import Host
from storage import operations as ops
from storage.forms import UploadForm
from virt.errors import Said, Text, Unreachable, VirtError
from virt.storage_rules import StorageInputError
from virt.streams import Download, Upload
from virt.volumes import PoolDetail, pool_detail
from webkvm import audit
from webkvm.i18n import said
from webkvm.models import AuditResult
from webkvm.operations import perform, refused

CHUNK = 2 << 20  # bytes per hand-over between the event loop and a transfer's libvirt thread; little memory
BEGIN_TIMEOUT = 30.0
CHUNK_TIMEOUT = 60.0  # a hypervisor that takes longer for one chunk is treated as gone


class Interrupted(Said, Exception):
    """The browser went away, or sent less than it announced: an English template with named parameters
    (marked with gettext_noop), shown in the user's language by webkvm.i18n.said; str() is English."""

    def __init__(self, message: str, /, **params: object) -> None:
        super().__init__(self._say(message, params))


PAGES = {403: "403.html", 404: "404.html"}  # the panel's error pages
CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 502: "host_failed"}
# The API's codes for the same statuses (api/errors.py); a failure of the host has its own (from_host).
API_CODES = {400: "invalid", 401: "not_authenticated", 403: "permission_denied", 404: "not_found",
             409: "conflict", 411: "invalid", 429: "throttled", 502: "not_done", 503: "host_unavailable"}


def through_api(request: HttpRequest) -> bool:
    """Whether the transfer came through the API's URL (/api/v1/.../content): its answers are the API's
    JSON ({code, message, fields}). The ASGI path marks the request; under WSGI the API view has set
    `webkvm_via` (api/base.py)."""
    return bool(getattr(request, "webkvm_api", False) or getattr(request, "webkvm_via", ""))


def refusal(request: HttpRequest, status: int, message: str, code: str = "") -> HttpResponse:
    """A transfer that cannot go ahead, answered as any page of the panel would be: JSON
    ({"code", "message"}) for a client that asks for it (Accept: application/json) and for API callers
    (with the API's codes), the panel's error page for a browser, the words alone where the panel has no
    page for the status."""
    if through_api(request):
        return JsonResponse({"code": code or API_CODES.get(status, "error"), "message": message}, status=status)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"code": CODES.get(status, str(status)), "message": message}, status=status)
    if status in PAGES:
        return HttpResponse(render_to_string(PAGES[status], request=request), status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def failure(request: HttpRequest, status: int, message: str, code: str) -> JsonResponse:
    """A transfer that failed: the page's script reads {"error"}, API callers {"code", "message"}."""
    if through_api(request):
        return JsonResponse({"code": code, "message": message}, status=status)
    return JsonResponse({"error": message}, status=status)


def errors_response(request: HttpRequest, errors: dict[str, list[str]], status: int = 400) -> JsonResponse:
    """Field errors: {"errors"} for the page's script, the API's {"code": "invalid", "message", "fields"}."""
    if through_api(request):
        return JsonResponse({"code": "invalid", "message": _("Some fields are not valid."), "fields": errors},
                            status=status)
    return JsonResponse({"errors": errors}, status=status)


def error_response(request: HttpRequest, exc: VirtError, before: str = "") -> JsonResponse:
    """A failure of the host (`before` its words): input it refused is a field error; for API callers
    the status and code of api/errors.py (host_unavailable, invalid_state, not_done...) in the words a
    page shows this user."""
    if isinstance(exc, StorageInputError):
        return errors_response(request, {p.field: [said(p.message)] for p in exc.problems})
    if through_api(request):
        answer = from_host(exc, getattr(request, "user", None))
        codes = answer.get_codes()
        return failure(request, answer.status_code, before + str(answer.detail),
                       codes if isinstance(codes, str) else "not_done")
    return failure(request, 503 if isinstance(exc, Unreachable) else 502, before + said(exc), "")


def interrupted(request: HttpRequest, exc: Exception, left: str) -> JsonResponse:
    """An upload that ended short (or long): what was written is gone (or `left` says what is not)."""
    message = _("Upload interrupted: %(reason)s. Nothing was kept.") % {"reason": said(exc)}
    return failure(request, 400, f"{message} {said(left)}" if left else message, "upload_interrupted")


def check(request: HttpRequest, host: Host, pool: str,
          data: dict[str, Any]) -> tuple[PoolDetail | None, JsonResponse | None]:
    """Validate an announced upload: (pool detail, None) when it fits, else (None, a JSON error)."""
    try:
        detail = services.call(host, lambda conn: pool_detail(conn, pool))
    except VirtError as exc:
        return None, error_response(request, exc)
    if not detail.pool.active:
        return None, failure(request, 409, _("Pool %(pool)s is not active: start it first.") % {"pool": pool},
                             "invalid_state")
    form = UploadForm(detail, data)
    if not form.is_valid():
        return None, errors_response(request, {k: [str(m) for m in v] for k, v in form.errors.items()})
    return detail, None


@dataclass
class UploadSession:
    host: Host
    pool: str
    name: str
    size: int
    upload: Upload | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def received(self) -> int:
        return self.upload.sent if self.upload else 0

    def begin(self) -> None:
        self.upload = services.call(self.host, lambda conn: Upload.begin(conn, self.pool, self.name, self.size),
                                    BEGIN_TIMEOUT)

    def send(self, *parts: bytes) -> None:
        """Straight into the stream, in the caller's thread: this is the hot path of every byte, and
        a dead link still ends it (libvirt's keepalive closes the connection within about 20 s)."""
        assert self.upload is not None
        self.upload.send(*parts)

    def finish(self) -> dict[str, Any]:
        upload = self.upload
        assert upload is not None
        services.change(self.host, lambda _conn: upload.finish(), CHUNK_TIMEOUT)
        seconds = max(time.monotonic() - self.started, 1e-6)
        return {"pool": self.pool, "volume": self.name, "bytes": self.size, "seconds": round(seconds, 2),
                "rate": round(self.size / seconds)}

    def abort(self) -> str:
        """Abort the stream and delete the half-written volume; returns what was left behind, in words."""
        upload = self.upload
        if upload is None:
            return ""
        try:
            return services.change(self.host, lambda _conn: upload.abort(), BEGIN_TIMEOUT)
        except VirtError as exc:
            return Text(gettext_noop("The partial volume {name} could not be deleted ({error}): delete it by hand."),
                        name=self.name, error=Text.of(exc))

    def audit(self, request: HttpRequest, error: str = "") -> None:
        """The upload's one audit record, when it has ended (received in full, or not)."""
        if error:
            detail = f"{self.received} of {self.size} bytes, then: {error}"
        else:
            detail = f"{self.size} bytes in {time.monotonic() - self.started:.1f} s"
        op = ops.VOLUME_UPLOAD
        audit.record(request, op.name, object_type=op.target, object_name=f"{self.pool}/{self.name}"[:255],
                     host_name=self.host.name, result=AuditResult.FAILED if error else AuditResult.OK, detail=detail,
                     duration_ms=int((time.monotonic() - self.started) * 1000))


def upload_name(request: HttpRequest, kwargs: dict[str, Any]) -> str:
    """The new volume's name: the API's URL names it, the page's PUT has it in the query."""
    return str(kwargs["volume"]) if "volume" in kwargs else request.GET.get("name", "")


def open_upload(request: HttpRequest, host_name: str, pool: str, name: str) -> UploadSession | JsonResponse:
    """Check a PUT (size from Content-Length) and open its stream.

    Login, CSRF and the admin check come first, from the caller."""
    host = get_object_or_404(Host, name=host_name)
    length = request.META.get("CONTENT_LENGTH") or ""
    if not length.isdigit():
        refused(request, ops.VOLUME_UPLOAD, host=host, name=f"{pool}/{name}"[:255], reason="no Content-Length")
        return errors_response(request, {"file": [_("Send the file with its Content-Length (no chunked encoding).")]},
                               411)
    _detail, refusal = check(request, host, pool, {"name": name, "size": length})
    if refusal is not None:
        refused(request, ops.VOLUME_UPLOAD, host=host, name=f"{pool}/{name}"[:255],
                reason=refusal.content.decode()[:500])
        return refusal
    session = UploadSession(host, pool, name, int(length))
    try:
        session.begin()
    except VirtError as exc:
        session.audit(request, str(exc))
        return error_response(request, exc)
    return session


def uploaded(request: HttpRequest, session: UploadSession, result: dict[str, Any]) -> JsonResponse:
    """201: the volume is written. API callers also get a message and the new volume's URL."""
    if not through_api(request):
        return JsonResponse(result, status=201)
    url = reverse("api:volume", args=[session.host.name, session.pool, session.name])
    message = _("Volume %(name)s uploaded: %(size)s bytes.") % {"name": result["volume"], "size": result["bytes"]}
    response = JsonResponse({"message": message, **result}, status=201)
    response["Location"] = request.build_absolute_uri(url)
    return response


def open_download(request: HttpRequest, host_name: str, pool: str, volume: str) -> tuple[Host, Download] | HttpResponse:
    """Start a download (after the caller's login and admin checks): its one audit record says whether
    the stream started (and how long the volume is); an unknown volume is a 404."""
    host = get_object_or_404(Host, name=host_name)
    outcome = perform(request, ops.VOLUME_DOWNLOAD, host=host, name=f"{pool}/{volume}",
                      work=lambda: services.call(host, lambda conn: Download.begin(conn, pool, volume), BEGIN_TIMEOUT),
                      done=lambda download: f"{download.length} bytes", quiet=True)
    if outcome.value is None:
        before = _("%(host)s did not start the download: ") % {"host": host.name}
        if through_api(request) and outcome.exception is not None:
            return error_response(request, outcome.exception, before)
        return refusal(request, 502, before + (said(outcome.exception) if outcome.exception else outcome.error))
    return host, outcome.value


def download_headers(download: Download) -> dict[str, str]:
    return {"Content-Type": "application/octet-stream", "Content-Length": str(download.length),
            "Content-Disposition": content_disposition_header(as_attachment=True, filename=download.name)
            or "attachment"}
