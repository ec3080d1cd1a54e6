"""The pages where a user makes, lists and revokes their personal API tokens (admins see everybody's).

A new token's text is shown once, on the answer to its creation, and never stored."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from api.models import ApiToken
from webkvm import permissions
from webkvm import user_operations as ops
from webkvm.operations import LOGIN, OWNER, page, perform, route

# Making and revoking run as the operations webkvm/user_operations.py declares (TOKEN_CREATE, TOKEN_REVOKE).
TOKENS = page(LOGIN)  # anybody logged in: their own tokens (admins: everybody's), and making one
REVOKE = page(OWNER)  # the token's user or an admin


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, label=gettext_lazy("Name"),
                           help_text=gettext_lazy("What it is for, e.g. 'nightly backup script'."))
    days = forms.IntegerField(min_value=1, max_value=3650, required=False, label=gettext_lazy("Expires after (days)"),
                              help_text=gettext_lazy("Empty: it never expires (revoke it when done)."))
    read_only = forms.BooleanField(required=False, label=gettext_lazy("Read-only (GET only)"))

    def clean_name(self) -> str:
        return str(self.cleaned_data["name"]).strip()


@require_http_methods(["GET", "POST"])
@route(TOKENS)
def token_list(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    shown = ""
    if request.method == "POST" and form.is_valid():
        days, name = form.cleaned_data["days"], form.cleaned_data["name"]
        made = perform(request, ops.TOKEN_CREATE, host=None, name=name, quiet=True,  # the page shows the token
                       work=lambda: ApiToken.make(request.user, name, read_only=form.cleaned_data["read_only"],
                                                  expires=timezone.now() + timedelta(days=days) if days else None),
                       done="", detail=lambda pair: _made_words(pair[0]))
        shown = made.value[1] if made.value is not None else ""
        form = TokenForm()
    tokens = ApiToken.objects.select_related("user")
    if not permissions.is_admin(request.user):
        tokens = tokens.filter(user_id=request.user.pk or 0)
    response = render(request, "api/tokens.html", {"form": form, "tokens": tokens, "shown": shown,
                                                   "all_users": permissions.is_admin(request.user)})
    if shown:
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@route(REVOKE)
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = ApiToken.objects.filter(pk=pk).first()
    if token is None or (token.user_id != request.user.pk and not permissions.is_admin(request.user)):
        permissions.require_admin(request, object_name=f"token {pk}")  # 403, audited (admins: fall through)
    if token is None:
        messages.error(request, _("No such token."))
        return redirect("api-tokens:list")
    if token.revoked is None:
        perform(request, ops.TOKEN_REVOKE, host=None, name=token.name,
                work=lambda: ApiToken.objects.filter(pk=token.pk).update(revoked=timezone.now()),
                done=_("Token %(name)s revoked.") % {"name": token.name},
                detail=f"prefix {token.prefix}; user {token.user.get_username()}")
    return redirect("api-tokens:list")


def _made_words(token: ApiToken) -> str:
    """The audit record's detail of a new token (never its secret)."""
    return (f"prefix {token.prefix}" + ("; read-only" if token.read_only else "")
            + (f"; expires {token.expires:%Y-%m-%d %H:%M %Z}" if token.expires else ""))


