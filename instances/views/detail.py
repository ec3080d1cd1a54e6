"""One VM: its detail page and the counters its usage graphs poll."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from hosts import services
from instances import operations as ops
from instances import state_since
from instances.lookup import VMRef
from virt import image_meta, lifecycle
from virt.domains import DomainDetail, domain_detail
from virt.errors import VirtError
from virt.reads import vm_sample
from webkvm.operations import host_trouble, page, told, vm_route
from webkvm.permissions import can

# The actions that matter most in each state, shown up front; the rest wait in the page's "More" menu.
PRIMARY = ("start", "restore", "shutdown", "resume")
# Each action's icon (Lucide, webkvm/templatetags/icons.py).
ICONS = {"start": "play", "restore": "play", "shutdown": "power", "resume": "play", "reboot": "rotate-cw",
         "suspend": "pause", "managedsave": "save", "reset": "rotate-ccw", "destroy": "power-off",
         "discard-save": "trash", "autostart-on": "power", "autostart-off": "power-off"}
# A guest asked to shut down that still runs after this long is offered Force off beside the request's notice;
# after WATCH_SHUTDOWN_SECONDS the notice is old news and goes.
FORCE_OFF_AFTER_SECONDS = 30
WATCH_SHUTDOWN_SECONDS = 15 * 60


@dataclass
class Menu:
    """The VM's actions as the page groups them: up front, in "More", and (apart) those that lose data."""

    primary: list[Entry] = field(default_factory=list)
    more: list[Entry] = field(default_factory=list)
    danger: list[Entry] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    action: lifecycle.Action
    icon: str


def menu(actions: list[lifecycle.Action]) -> Menu:
    grouped = Menu()
    for action in actions:
        group = grouped.primary if action.name in PRIMARY else grouped.danger if action.confirm else grouped.more
        group.append(Entry(action, ICONS.get(action.name, "circle")))
    return grouped


@dataclass(frozen=True)
class ShutdownPending:
    """The guest was asked to shut down (ACPI) and still runs: when, and when Force off is offered."""

    asked: float
    force_off_at: float

    @property
    def force_off_now(self) -> bool:
        return time.time() >= self.force_off_at

    @property
    def force_off_in(self) -> int:
        """Seconds until Force off is offered (the page's script counts them down: no clock to agree on)."""
        return max(0, int(self.force_off_at - time.time() + 0.999))

    @property
    def asked_words(self) -> str:
        return state_since.Since(self.asked, state_since.StateSince.PANEL).words()


def shutdown_pending(since: state_since.Since, active: bool) -> ShutdownPending | None:
    asked = since.shutdown_asked
    if not active or asked is None or time.time() - asked > WATCH_SHUTDOWN_SECONDS:
        return None
    return ShutdownPending(asked, asked + FORCE_OFF_AFTER_SECONDS)


@require_GET
@vm_route(page(ops.VIEW))
def detail(request: HttpRequest, ref: VMRef) -> HttpResponse:
    try:
        info, image = ref.call(lambda dom: (domain_detail(dom), image_meta.of_domain(dom)))
    except VirtError as exc:
        words = told(request.user, exc, host_trouble(exc))
        return render(request, "instances/detail.html", {"ref": ref, "error": words}, status=503)
    since = state_since.of_vm(ref.host, info.uuid, info.name, info.state)
    allowed = {p: can(request.user, p, host=ref.host, vm_uuid=ref.uuid)
               for p in ("power", "change", "delete", "console")}
    actions = [a for a in lifecycle.available(info.state_code, info.managed_save, info.autostart)
               if allowed[a.permission]]
    pending = shutdown_pending(since, info.active)
    return render(request, "instances/detail.html", {
        "ref": ref, "vm": info, "actions": actions, "menu": menu(actions), "allowed": allowed, "since": since,
        "shutdown": pending, "force_off": lifecycle.ACTIONS["destroy"] if allowed["power"] else None,
        "force_off_after": FORCE_OFF_AFTER_SECONDS, "image": image, "ssh": ssh_commands(info, image),
    })


def ssh_commands(info: DomainDetail, image: image_meta.ImageMeta | None) -> list[str]:
    """`ssh USER@IP` for each address of a VM made from a cloud image (the login cloud-init made), IPv4 first."""
    if image is None or not image.user:
        return []
    found = [addr.partition("/")[0] for nic in info.nics for addr in nic.addresses]
    found.sort(key=lambda ip: ":" in ip)
    return [f"ssh {image.user}@{ip}" for ip in dict.fromkeys(found)
            if not ip.startswith("fe80:")]


@require_GET
@vm_route(page(ops.VIEW, polled=True))
def stats(request: HttpRequest, ref: VMRef) -> HttpResponse:
    try:
        sample = services.read(ref.host, vm_sample(ref.uuid))
    except VirtError as exc:
        words = told(request.user, exc, host_trouble(exc))
        return JsonResponse({"error": words}, status=503)
    return JsonResponse(sample.as_dict())
