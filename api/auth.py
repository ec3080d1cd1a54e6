"""How API callers authenticate: a personal token (`Authorization: Bearer wkvm_...`) or the browser's
session (with CSRF, for the panel's own JavaScript). A token carries exactly its user's permissions;
a read-only one refuses every unsafe method."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from api.models import ApiToken


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("The Authorization header is 'Bearer TOKEN'."), code="bad_token")
        try:
            text = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(_("This token is not valid."), code="bad_token") from None
        token = ApiToken.find(text)
        if token is None:
            raise exceptions.AuthenticationFailed(_("This token is not valid."), code="bad_token")
        if token.revoked is not None:
            raise exceptions.AuthenticationFailed(_("This token was revoked."), code="token_revoked")
        if token.expired:
            raise exceptions.AuthenticationFailed(_("This token has expired."), code="token_expired")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("This token's user is disabled."), code="user_inactive")
        token.touch()
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword  # makes DRF answer 401 (not 403) to a caller without credentials


class TokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """How the schema describes the token: HTTP bearer."""

    target_class = "api.auth.TokenAuthentication"
    name = "token"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A personal API token: wkvm_..."}


def via(request: Request) -> str:
    """How the caller came in, as the audit record says it."""
    token = request.auth
    if isinstance(token, ApiToken):
        return f"through the API, token {token.name}"
    return "through the API, session"


class ReadOnlyTokens(permissions.BasePermission):
    message = gettext_lazy("This token is read-only: it may only read.")
    code = "read_only_token"

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        return not (isinstance(token, ApiToken) and token.read_only and request.method not in permissions.SAFE_METHODS)
