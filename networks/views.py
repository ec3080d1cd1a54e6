"""Network pages (admin only): every host's networks, one host's list, detail, create, host interfaces.

Changes (start, stop, delete, fixed addresses) are in networks/actions.py; the create page, like theirs,
is generated from its declaration (webkvm/operation_views.py).
"""

from __future__ import annotations

from typing import Any, cast

import libvirt
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from hosts import services
from hosts.models import Host
from networks import operations as ops
from networks.forms import FixedHostForm, NetworkForm
from virt.errors import NotFound, VirtError
from virt.interfaces import host_interfaces
from virt.networks import (
    HostNetworks,
    NetworkInputError,
    NetworkSpec,
    create_network,
    host_networks,
    network_detail,
)
from virt.reads import NETWORKS
from webkvm.i18n import said
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import ADMIN, Outcome, host_or_404, page, refused, route
from webkvm.views_base import host_page, on_host_checked

# Reading every VM's XML (who uses a network) can outlast one call's deadline.
DETAIL_TIMEOUT = 20.0


@require_GET
@route(page(ADMIN))
def index(request: HttpRequest) -> HttpResponse:
    outcomes = services.read_many(list(Host.objects.all()), NETWORKS)
    return render(request, "networks/index.html", {"outcomes": outcomes})


@require_GET
@route(page(ADMIN))
def host_list(request: HttpRequest, host: str) -> HttpResponse:
    return host_page(request, host, "networks/list.html", "networks", NETWORKS)


@require_GET
@route(page(ADMIN))
def interfaces(request: HttpRequest, host: str) -> HttpResponse:
    return host_page(request, host, "networks/interfaces.html", "report", host_interfaces, DETAIL_TIMEOUT)


def render_detail(request: HttpRequest, target: Host, name: str, host_form: FixedHostForm | None = None,
                  status: int = 200) -> HttpResponse:
    context: dict[str, Any] = {"host": target, "name": name, "host_form": host_form or FixedHostForm()}
    try:
        context["detail"] = services.call(target, lambda conn: network_detail(conn, name), DETAIL_TIMEOUT)
    except NotFound:
        raise Http404(_("No such network on this host.")) from None
    except VirtError as exc:
        context["error"] = said(exc)
        return render(request, "networks/detail.html", context, status=503)
    return render(request, "networks/detail.html", context, status=status)


@require_GET
@route(page(ADMIN))
def detail(request: HttpRequest, host: str, name: str) -> HttpResponse:
    return render_detail(request, host_or_404(host), name)


def _describe(spec: NetworkSpec, start: bool, autostart: bool) -> str:
    parts = [f"mode {spec.mode}"]
    if spec.mode == "macvtap":
        parts.append(f"{spec.macvtap_mode} on {spec.dev}")
    elif spec.bridge:
        parts.append(f"bridge {spec.bridge}")
    if spec.dev and spec.mode != "macvtap":
        parts.append(f"via {spec.dev}")
    for addressing in (spec.ipv4, spec.ipv6):
        if addressing is not None:
            dhcp = f" DHCP {addressing.dhcp_start}-{addressing.dhcp_end}" if addressing.dhcp_start else ""
            parts.append(f"{addressing.address}{dhcp}")
    if spec.hosts:
        parts.append("fixed: " + ", ".join(h.label() for h in spec.hosts))
    if spec.domain:
        parts.append(f"domain {spec.domain}")
    parts += [p for p, on in (("started", start), ("autostart", autostart)) if on]
    return "; ".join(parts)


def host_facts(request: HttpRequest, target: Host, asked_name: str) -> HostNetworks:
    """What a new network must not clash with on `target` (the form checks against it). When the host
    cannot be asked, a POST is audited as refused (nothing was asked of libvirt) and the failure raised."""
    try:
        facts: HostNetworks = services.call(target, host_networks, DETAIL_TIMEOUT)
    except VirtError as exc:
        if request.method == "POST":
            refused(request, ops.CREATE, host=target, name=asked_name[:128],
                    reason=f"{target.name} could not be asked about its networks: {exc}")
        raise
    return facts


def create_network_from(request: HttpRequest, target: Host, form: NetworkForm, *,
                        quiet: bool = False) -> Outcome[str]:
    """network.create of a valid form (the page and the API): one audit record; the host's late refusal
    of the input becomes field errors on the form. Its value: the words said."""
    spec = form.to_spec()
    start, autostart = bool(form.cleaned_data.get("start")), bool(form.cleaned_data.get("autostart"))
    if start:
        done = _("Network %(name)s created on %(host)s and started.") % {"name": spec.name, "host": target.name}
    else:
        done = _("Network %(name)s created on %(host)s.") % {"name": spec.name, "host": target.name}

    def create(conn: libvirt.virConnect) -> str:
        create_network(conn, spec, start=start, autostart=autostart)
        return done

    # The host may have changed since the form was checked: its refusal is a field error too.
    return on_host_checked(
        request, ops.CREATE, target, spec.name, create, form=form, rejects=NetworkInputError,
        place=lambda problem: form.field_for(problem, spec.mode), done=done,
        detail=_describe(spec, start, autostart), quiet=quiet)


def _facts(call: Call) -> None:
    call.context["facts"] = host_facts(call.request, call.target, call.request.POST.get("name", ""))


def _unavailable(call: Call, exc: VirtError) -> str:
    return _("%(host)s could not be asked about its networks: %(reason)s") % {"host": call.target.name,
                                                                                "reason": said(exc)}


def _create(call: Call) -> Outcome[str]:
    return create_network_from(call.request, call.target, cast(NetworkForm, call.form))


def _created(call: Call, _outcome: Outcome[str]) -> str:
    return reverse("networks:detail", args=[call.target.name, cast(NetworkForm, call.form).to_spec().name])


create = operation_view(OperationPage(
    ops.CREATE, template="networks/create.html", find=_facts, unavailable=_unavailable,
    form=lambda call, data: NetworkForm(call.context["facts"], data), run=_create, then=_created))
