"""One-time console tickets: the only way into a VM's screen."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ConsoleTicket(models.Model):
    """A single-use, short-lived permission to open one VM's console.

    Only the sha256 of the random ticket is stored, so a database dump opens no console.
    The ticket is bound to the user, the host, the VM and what it was minted through: the login session
    (session_hash) or, for an API caller, the API token (api_token; session_hash is then empty).
    """

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_tickets")
    session_hash = models.CharField(max_length=64, blank=True,
                                    help_text="sha256 of the login session's key (empty for a token's ticket).")
    # Minted through an API token: only a handshake presenting that token (Authorization: Bearer) opens it.
    api_token = models.ForeignKey("api.ApiToken", on_delete=models.CASCADE, null=True, blank=True,
                                  related_name="console_tickets")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="console_tickets")
    vm_uuid = models.UUIDField()
    # A VNC ticket cannot open the serial console and the other way round.
    kind = models.CharField(max_length=8, choices=[("vnc", "VNC"), ("serial", "serial")], default="vnc")
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"console ticket of {self.user} for {self.vm_uuid}@{self.host}"
