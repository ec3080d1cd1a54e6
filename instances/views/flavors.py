"""Flavors: admin-defined VM sizes; "create from this flavor" opens the create form pre-filled."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from instances.forms_create import FlavorForm
from instances.models import Flavor
from webkvm import audit
from webkvm.views_base import admin_required


@require_GET
@admin_required
def flavor_list(request: HttpRequest) -> HttpResponse:
    return render(request, "instances/flavor_list.html", {"flavors": Flavor.objects.all()})


def _edit(request: HttpRequest, flavor: Flavor | None) -> HttpResponse:
    form = FlavorForm(request.POST if request.method == "POST" else None, instance=flavor)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        audit.record(request, "flavor.create" if flavor is None else "flavor.update", object_type="flavor",
                     object_name=saved.name, detail=str(saved))
        messages.success(request, f"Flavor {saved.name} saved.")
        return redirect("instances:flavors")
    return render(request, "instances/flavor_form.html", {"form": form, "flavor": flavor})


@require_http_methods(["GET", "POST"])
@admin_required
def flavor_create(request: HttpRequest) -> HttpResponse:
    return _edit(request, None)


@require_http_methods(["GET", "POST"])
@admin_required
def flavor_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _edit(request, get_object_or_404(Flavor, pk=pk))


@require_http_methods(["GET", "POST"])
@admin_required
def flavor_delete(request: HttpRequest, pk: int) -> HttpResponse:
    flavor = get_object_or_404(Flavor, pk=pk)
    if request.method != "POST":
        return render(request, "instances/flavor_delete.html", {"flavor": flavor})
    name = flavor.name
    flavor.delete()  # VMs made from it keep their sizes: a flavor is only a form pre-fill
    audit.record(request, "flavor.delete", object_type="flavor", object_name=name)
    messages.success(request, f"Flavor {name} deleted.")
    return redirect("instances:flavors")
