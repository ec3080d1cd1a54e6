"""Log-ins, log-outs and failed log-ins go into the audit log."""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from webkvm import audit
from webkvm.models import AuditResult


@receiver(user_logged_in)
def logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit.record(request, "login", object_type="user", object_name=user.get_username())


@receiver(user_logged_out)
def logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit.record(request, "logout", object_type="user", object_name=user.get_username())


@receiver(user_login_failed)
def login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    if getattr(request, "axes_locked_out", False):
        # Not the typed name: a client locked out for its address would otherwise make a row per name it tries.
        audit.record(request, "login", object_type="user", result=AuditResult.DENIED,
                     detail="locked out: too many failed log-ins from this address or for this user")
        return
    audit.record(None if request is None else request, "login", object_type="user",
                 object_name=str(credentials.get("username", ""))[:150], result=AuditResult.FAILED)
