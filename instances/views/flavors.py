"""Flavors: admin-defined VM sizes; "create from this flavor" opens the create form pre-filled."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from instances import operations as ops
from instances.forms_create import FlavorForm
from instances.models import Flavor
from webkvm.operations import ADMIN, Operation, Outcome, page, perform, route


@require_GET
@route(page(ADMIN))
def flavor_list(request: HttpRequest) -> HttpResponse:
    return render(request, "instances/flavor_list.html", {"flavors": Flavor.objects.all()})


def save_flavor(request: HttpRequest, op: Operation, form: FlavorForm, *, quiet: bool = False) -> Outcome[Flavor]:
    """flavor.create or flavor.update of a valid form (the page and the API): one audit record."""
    return perform(request, op, host=None, name=form.cleaned_data["name"], work=form.save,
                   done=lambda saved: _("Flavor {name} saved.").format(name=saved.name), detail=str,
                   audited_name=lambda saved: saved.name,
                   quiet=quiet)


def delete_flavor(request: HttpRequest, flavor: Flavor, *, quiet: bool = False) -> Outcome[Any]:
    """flavor.delete (the page and the API). VMs made from it keep their sizes: a flavor is only a form pre-fill."""
    return perform(request, ops.FLAVOR_DELETE, host=None, name=flavor.name, work=flavor.delete,
                   done=_("Flavor {name} deleted.").format(name=flavor.name), detail=f"Flavor {flavor.name} deleted.",
                   quiet=quiet)


def _edit(request: HttpRequest, op: Operation, flavor: Flavor | None) -> HttpResponse:
    form = FlavorForm(request.POST if request.method == "POST" else None, instance=flavor)
    if request.method == "POST" and form.is_valid():
        save_flavor(request, op, form)
        return redirect("instances:flavors")
    return render(request, "instances/flavor_form.html", {"form": form, "flavor": flavor})


@require_http_methods(["GET", "POST"])
@route(ops.FLAVOR_CREATE)
def flavor_create(request: HttpRequest) -> HttpResponse:
    return _edit(request, ops.FLAVOR_CREATE, None)


@require_http_methods(["GET", "POST"])
@route(ops.FLAVOR_UPDATE)
def flavor_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _edit(request, ops.FLAVOR_UPDATE, get_object_or_404(Flavor, pk=pk))


@require_http_methods(["GET", "POST"])
@route(ops.FLAVOR_DELETE)
def flavor_delete(request: HttpRequest, pk: int) -> HttpResponse:
    flavor = get_object_or_404(Flavor, pk=pk)
    if request.method != "POST":
        return render(request, "instances/flavor_delete.html", {"flavor": flavor})
    delete_flavor(request, flavor)
    return redirect("instances:flavors")
