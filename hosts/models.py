"""A hypervisor connection as the admin configured it."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from virt.ssh import HostKey, SshIdentity
from virt.uri import ConnectionSpec, Transport
from webkvm import credentials

HOST_NAME_RE = r"^[a-z0-9](?:[a-z0-9-]{0,62})$"


class Host(models.Model):
    name = models.CharField(
        max_length=63, unique=True,
        validators=[RegexValidator(HOST_NAME_RE, "Use lower-case letters, digits and hyphens (a short label).")],
        help_text="A short label used in the panel and its URLs, e.g. kvm-01.",
    )
    transport = models.CharField(max_length=8, choices=[(t.value, t.value) for t in Transport])
    hostname = models.CharField(max_length=253, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    username = models.CharField(max_length=32, blank=True)
    path = models.CharField(max_length=255, default="system")
    ssh_host_keys = models.TextField(blank=True, help_text="Pinned ssh host keys, one 'type base64' per line.")
    tls_pkipath = models.CharField(max_length=255, blank=True)
    sasl_username = models.CharField(max_length=64, blank=True)
    sasl_password_encrypted = models.TextField(blank=True)
    insecure_tcp = models.BooleanField(default=False)
    # The hypervisor's own host UUID, recorded when the host is first reached: grants name VMs of this
    # machine. A different UUID later (the host re-pointed at another machine) lands in unconfirmed_uuid,
    # and the host's grants are suspended until an admin confirms the new machine.
    hypervisor_uuid = models.CharField(max_length=36, blank=True)
    unconfirmed_uuid = models.CharField(max_length=36, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def pinned_keys(self) -> list[HostKey]:
        return [HostKey.parse(line) for line in self.ssh_host_keys.splitlines() if line.strip()]

    def set_sasl_password(self, password: str) -> None:
        self.sasl_password_encrypted = credentials.encrypt(password) if password else ""

    def spec(self) -> ConnectionSpec:
        identity = SshIdentity(settings.WEBKVM_SSH_DIR)
        transport = Transport(self.transport)
        return ConnectionSpec(
            transport=transport,
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            path=self.path,
            ssh_keyfile=str(identity.private_key) if transport == Transport.SSH else "",
            ssh_command=str(identity.wrapper) if transport == Transport.SSH else "",
            tls_pkipath=self.tls_pkipath,
            sasl_username=self.sasl_username,
            sasl_password=credentials.decrypt(self.sasl_password_encrypted),
        )

    def display_uri(self) -> str:
        try:
            return self.spec().display_uri()
        except Exception:  # a stored value that no longer validates must not break listing pages
            return f"{self.transport}://{self.hostname} (invalid)"
