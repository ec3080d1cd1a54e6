"""The console page and the ticket it asks for before each connection."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from console import tickets
from instances.lookup import VMRef
from virt import lifecycle
from virt.domains import domain_detail
from virt.errors import VirtError
from webkvm.i18n import said
from webkvm.middleware import POLICY
from webkvm.models import VMPermission
from webkvm.operations import page, told, vm_route
from webkvm.permissions import can

CONSOLE = VMPermission.CONSOLE.value

# xterm.js measures the font and writes cell sizes and colours into <style> elements it creates,
# which a strict style-src blocks. Only this page allows inline styles; scripts stay 'self' only,
# and console output is drawn as text, never parsed as markup.
SERIAL_POLICY = POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


@require_GET
@vm_route(page(CONSOLE))
def console_page(request: HttpRequest, ref: VMRef) -> HttpResponse:
    context: dict[str, object] = {"ref": ref, "ws_path": f"/console/ws/{ref.host.name}/{ref.uuid}/"}
    try:
        info = ref.call(domain_detail)
    except VirtError as exc:
        return render(request, "console/console.html", {**context, "error": told(request.user, exc)},
                      status=503)
    allowed = {p: can(request.user, p, host=ref.host, vm_uuid=ref.uuid) for p in ("power", "change")}
    # Power actions beside the screen; autostart and the like stay on the detail page.
    actions = [a for a in lifecycle.available(info.state_code, info.managed_save)
               if a.permission == "power" and allowed["power"]]
    return render(request, "console/console.html", {
        **context, "vm": info, "actions": actions, "fkeys": range(1, 13),
        "here": reverse("console:page", args=[ref.host.name, ref.uuid]),
    })


WS_PATHS = {"vnc": "/console/ws/{host}/{vm}/", "serial": "/console/serial/ws/{host}/{vm}/"}


def grant(request: HttpRequest, ref: VMRef, kind: str = "vnc") -> dict[str, Any]:
    """A one-time ticket for the VM's `kind` console ("vnc" or "serial") and where its WebSocket is: what the
    console pages ask for before each connection, and the API's console ticket. Raises tickets.Refused."""
    token = tickets.mint(request, ref.host, ref.uuid, kind=kind)
    return {"ticket": token, "expires_in": tickets.TICKET_SECONDS, "protocols": tickets.protocols(token),
            "ws_path": WS_PATHS[kind].format(host=ref.host.name, vm=ref.uuid)}


def _ticket_answer(request: HttpRequest, ref: VMRef, kind: str) -> JsonResponse:
    try:
        return JsonResponse(grant(request, ref, kind))
    except tickets.Refused as exc:
        return JsonResponse({"error": said(exc)}, status=403)


@require_POST
@vm_route(page(CONSOLE))
def ticket(request: HttpRequest, ref: VMRef) -> JsonResponse:
    return _ticket_answer(request, ref, "vnc")


@require_GET
@vm_route(page(CONSOLE))
def serial_page(request: HttpRequest, ref: VMRef) -> HttpResponse:
    context: dict[str, object] = {"ref": ref}
    try:
        context["vm"] = ref.call(domain_detail)
        status = 200
    except VirtError as exc:
        context["error"], status = told(request.user, exc), 503
    response = render(request, "console/serial.html", context, status=status)
    response["Content-Security-Policy"] = SERIAL_POLICY
    return response


@require_POST
@vm_route(page(CONSOLE))
def serial_ticket(request: HttpRequest, ref: VMRef) -> JsonResponse:
    return _ticket_answer(request, ref, "serial")
