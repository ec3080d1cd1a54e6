"""Personal API tokens: shown once when made, stored as a sha256 of the secret only.

A token reads `wkvm_<prefix>_<secret>`: the prefix (8 hex characters, stored in clear) finds the row, the
secret (32 random bytes) is compared by its hash in constant time. sha256 without salt or stretching is
enough because the secret has full entropy (unlike a password, there is nothing to guess)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

PREFIX = "wkvm_"
LAST_USED_EVERY = timedelta(minutes=1)  # last_used is written at most this often per token


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)
    read_only = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({PREFIX}{self.prefix}_…)"

    @classmethod
    def make(cls, user: object, name: str, *, expires: datetime | None = None,
             read_only: bool = False) -> tuple[ApiToken, str]:
        """A new token and its one-time text (never stored, never shown again)."""
        secret = secrets.token_urlsafe(32)
        while True:
            prefix = secrets.token_hex(4)
            if not cls.objects.filter(prefix=prefix).exists():
                break
        token = cls.objects.create(user=user, name=name, prefix=prefix, secret_hash=digest(secret),
                                   expires=expires, read_only=read_only)
        return token, f"{PREFIX}{prefix}_{secret}"

    @classmethod
    def find(cls, text: str) -> ApiToken | None:
        """The token `text` is, whatever its state (the caller tells expired and revoked apart); None when
        no token matches."""
        if not text.startswith(PREFIX):
            return None
        prefix, _, secret = text.removeprefix(PREFIX).partition("_")
        if not prefix or not secret or len(prefix) > 16:
            return None
        token = cls.objects.select_related("user").filter(prefix=prefix).first()
        if token is None or not hmac.compare_digest(token.secret_hash, digest(secret)):
            return None
        return token

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now()

    @property
    def usable(self) -> bool:
        return self.revoked is None and not self.expired

    def touch(self) -> None:
        """Record a use, at most once a minute (one UPDATE, and only when due)."""
        now = timezone.now()
        if self.last_used is None or now - self.last_used >= LAST_USED_EVERY:
            ApiToken.objects.filter(pk=self.pk).update(last_used=now)
            self.last_used = now
