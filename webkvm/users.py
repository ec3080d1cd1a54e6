"""User management for admins: accounts, the admin flag, and per-VM grants."""

from __future__ import annotations

import uuid
from typing import Any

import libvirt
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import SetPasswordForm, UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hosts import services
from hosts.models import Host
from virt.errors import VirtError
from webkvm import user_operations as ops
from webkvm.models import VMGrant
from webkvm.operations import ADMIN, page, perform, route

User = get_user_model()


class UserFlagsForm(forms.ModelForm[Any]):
    class Meta:
        model = User
        fields = ["is_active", "is_superuser", "email"]
        labels = {"is_superuser": "Administrator (full access to every host and VM)"}


class GrantForm(forms.Form):
    host = forms.ModelChoiceField(queryset=Host.objects.all())
    vm = forms.CharField(max_length=200, label="VM name or UUID")
    can_console = forms.BooleanField(required=False, label="console")
    can_power = forms.BooleanField(required=False, label="power")
    can_change = forms.BooleanField(required=False, label="change")
    can_delete = forms.BooleanField(required=False, label="delete")

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        host, vm = data.get("host"), (data.get("vm") or "").strip()
        if host is None or not vm:
            return data

        def lookup(conn: libvirt.virConnect) -> tuple[str, str]:
            try:
                dom = conn.lookupByUUIDString(str(uuid.UUID(vm)))
            except ValueError:
                dom = conn.lookupByName(vm)
            return dom.UUIDString(), dom.name()

        try:
            data["vm_uuid"], data["vm_name"] = services.call(host, lookup)
        except VirtError as exc:
            self.add_error("vm", f"No such VM on {host}: {exc}")
        return data


@require_GET
@route(page(ADMIN))
def user_list(request: HttpRequest) -> HttpResponse:
    return render(request, "users/list.html", {"users": User.objects.order_by("username")})


@require_http_methods(["GET", "POST"])
@route(ops.USER_CREATE)
def user_create(request: HttpRequest) -> HttpResponse:
    form: UserCreationForm[Any] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["username"]
        outcome = perform(request, ops.USER_CREATE, host=None, name=name, work=form.save,
                          done=f"User {name} created.")
        if outcome.value is not None:
            return redirect("users:detail", pk=outcome.value.pk)
    return render(request, "users/create.html", {"form": form})


def _grant(target: Any, data: dict[str, Any]) -> None:
    VMGrant.objects.update_or_create(
        user=target, host=data["host"], vm_uuid=data["vm_uuid"],
        defaults={"vm_name": data["vm_name"], **{k: data[k] for k in
                  ("can_console", "can_power", "can_change", "can_delete")}},
    )


@require_http_methods(["GET", "POST"])
@route(page(ADMIN))  # each form posts one of user.update, user.set_password, grant.set (all admin)
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(User, pk=pk)
    flags = UserFlagsForm(request.POST if request.POST.get("form") == "flags" else None, instance=target)
    password = SetPasswordForm(target, request.POST if request.POST.get("form") == "password" else None)
    grant = GrantForm(request.POST if request.POST.get("form") == "grant" else None)
    if request.method == "POST":
        name = target.get_username()
        if flags.is_bound and flags.is_valid():
            if target == request.user and not flags.cleaned_data["is_superuser"]:
                flags.add_error("is_superuser", "You cannot take away your own admin rights.")
            else:
                perform(request, ops.USER_UPDATE, host=None, name=name, work=flags.save, done=f"{name} updated.",
                        detail=lambda saved: f"active={saved.is_active} admin={saved.is_superuser}")
                return redirect("users:detail", pk=pk)
        elif password.is_bound and password.is_valid():
            perform(request, ops.USER_SET_PASSWORD, host=None, name=name, work=password.save,
                    done=f"Password of {name} changed.")
            return redirect("users:detail", pk=pk)
        elif grant.is_bound and grant.is_valid():
            data = grant.cleaned_data
            perform(request, ops.GRANT_SET, host=data["host"], name=data["vm_name"], work=lambda: _grant(target, data),
                    done=f"{name} may now use {data['vm_name']} on {data['host']}.", detail=f"user={name}")
            return redirect("users:detail", pk=pk)
    return render(request, "users/detail.html", {
        "target": target, "flags": flags, "password": password, "grant": grant,
        "grants": target.vm_grants.select_related("host"),
    })


@require_POST
@route(ops.GRANT_REVOKE)
def grant_delete(request: HttpRequest, pk: int, grant_id: int) -> HttpResponse:
    grant = get_object_or_404(VMGrant, pk=grant_id, user_id=pk)
    perform(request, ops.GRANT_REVOKE, host=grant.host, name=grant.vm_name, work=grant.delete,
            done="Grant removed.", detail=f"user={grant.user.get_username()}")
    return redirect("users:detail", pk=pk)
