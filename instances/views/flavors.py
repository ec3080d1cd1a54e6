"""Flavors: admin-defined VM sizes; "create from this flavor" opens the create form pre-filled.
Create, edit and delete are generated from their declarations (webkvm/operation_views.py)."""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from instances import operations as ops
from instances.forms_create import FlavorForm
from instances.models import Flavor
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import ADMIN, Operation, Outcome, View, page, perform, route


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


# --- the pages, generated from the declarations (webkvm/operation_views.py) ------------------------


def _flavor(call: Call) -> None:
    call.context["flavor"] = get_object_or_404(Flavor, pk=call.args["pk"]) if "pk" in call.args else None


def _to_list(call: Call, _outcome: Any = None) -> str:
    return reverse("instances:flavors")


def _editing(op: Operation) -> View:
    return operation_view(OperationPage(
        op, host="", template="instances/flavor_form.html", find=_flavor, then=_to_list,
        form=lambda call, data: FlavorForm(data, instance=call.context["flavor"]),
        run=lambda call: save_flavor(call.request, call.op, cast(FlavorForm, call.form))))


flavor_create = _editing(ops.FLAVOR_CREATE)
flavor_edit = _editing(ops.FLAVOR_UPDATE)
flavor_delete = operation_view(OperationPage(
    ops.FLAVOR_DELETE, host="", template="instances/flavor_delete.html", find=_flavor, then=_to_list,
    run=lambda call: delete_flavor(call.request, call.context["flavor"])))
