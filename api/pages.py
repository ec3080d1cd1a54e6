"""The pages where a user makes, lists and revokes their personal API tokens (admins see everybody's).

A new token's text is shown once, on the answer to its creation, and never stored. Making and revoking are
pages only (webkvm/user_operations.py says why); their pages are generated from the declarations
(webkvm/operation_views.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from api.models import ApiToken
from webkvm import permissions
from webkvm import user_operations as ops
from webkvm.operation_views import Call, OperationPage, operation_view
from webkvm.operations import LOGIN, OWNER, Outcome, page, perform

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


def make_token(request: HttpRequest, form: TokenForm) -> Outcome[tuple[ApiToken, str]]:
    """api.token.create of a valid form, for the user asking: the token and its text, which only the answer to
    this request shows (so no message: quiet); the audit record never holds the secret."""
    days, name = form.cleaned_data["days"], form.cleaned_data["name"]
    return perform(request, ops.TOKEN_CREATE, host=None, name=name, quiet=True,
                   work=lambda: ApiToken.make(request.user, name, read_only=form.cleaned_data["read_only"],
                                              expires=timezone.now() + timedelta(days=days) if days else None),
                   done="", detail=lambda pair: _made_words(pair[0]))


def revoke_token(request: HttpRequest, token: ApiToken, *, quiet: bool = False) -> Outcome[int]:
    """api.token.revoke of a token the caller may revoke (theirs, or any for an admin)."""
    return perform(request, ops.TOKEN_REVOKE, host=None, name=token.name,
                   work=lambda: ApiToken.objects.filter(pk=token.pk).update(revoked=timezone.now()),
                   done=_("Token %(name)s revoked.") % {"name": token.name},
                   detail=f"prefix {token.prefix}; user {token.user.get_username()}", quiet=quiet)


# --- the pages of the operations, generated from the declarations (webkvm/operation_views.py) -------

TEMPLATE = "api/tokens.html"


def _listed(call: Call) -> None:
    """What the page lists: the user's own tokens (admins: everybody's)."""
    admin = permissions.is_admin(call.request.user)
    tokens = ApiToken.objects.select_related("user")
    if not admin:
        tokens = tokens.filter(user_id=call.request.user.pk or 0)
    call.context.update(tokens=tokens, shown="", all_users=admin)


def _made(call: Call, made: Outcome[tuple[ApiToken, str]]) -> HttpResponse:
    """The answer to a new token: the list (with it) and an empty form, and the token's text shown this once
    (never kept in a cache)."""
    _listed(call)
    shown = made.value[1] if made.value is not None else ""
    response = render(call.request, TEMPLATE, {**call.context, "form": TokenForm(), "shown": shown})
    if shown:
        response["Cache-Control"] = "no-store"
    return response


def _list(call: Call, _result: object = None) -> str:
    return reverse("api-tokens:list")


# GET lists the tokens with the form to make one; POST makes one (anybody logged in, as the operation declares).
token_list = operation_view(OperationPage(
    ops.TOKEN_CREATE, host="", access=TOKENS, template=TEMPLATE, find=_listed, form=lambda call, data: TokenForm(data),
    run=lambda call: make_token(call.request, cast(TokenForm, call.form)), answer=_made, then=_list))


def _revoke(call: Call) -> Outcome[int] | None:
    """Revoke the token the URL names when it is the user's (admins: anybody's); 403, audited, otherwise."""
    request, pk = call.request, call.args["pk"]
    token = ApiToken.objects.filter(pk=pk).first()
    if token is None or (token.user_id != request.user.pk and not permissions.is_admin(request.user)):
        permissions.require_admin(request, object_name=f"token {pk}")  # 403, audited (admins: fall through)
    if token is None:
        messages.error(request, _("No such token."))
        return None
    if token.revoked is not None:
        return None  # revoked already: nothing to do
    return revoke_token(request, token)


token_revoke = operation_view(OperationPage(ops.TOKEN_REVOKE, host="", access=REVOKE, run=_revoke, then=_list))


def _made_words(token: ApiToken) -> str:
    """The audit record's detail of a new token (never its secret)."""
    return (f"prefix {token.prefix}" + ("; read-only" if token.read_only else "")
            + (f"; expires {token.expires:%Y-%m-%d %H:%M %Z}" if token.expires else ""))


