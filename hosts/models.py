"""A hypervisor connection as the admin configured it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.route_words import not_a_route_word
from virt import uri
from virt.errors import InvalidInput
from virt.ssh import HostKey, SshIdentity
from virt.uri import ConnectionSpec, Transport
from webkvm import credentials
from webkvm.i18n import said

HOST_NAME_RE = r"^[a-z0-9](?:[a-z0-9-]{0,62})$"
_FILE_FIELDS = {"transport", "path", "tls_pkipath"}


def file_problems(transport: str, path: str, tls_pkipath: str, *, present: bool = False) -> dict[str, str]:
    """The one rule for host fields naming files that the panel's own process opens (field -> message):
    libvirt's test driver reads its world file in-process, TLS its client certificate and key. The form,
    Host.save() (bootstrap, the shell, any API) and Host.spec() (every connection) all ask it.
    `present`: the files must exist too, as the form asks of a new value."""
    problems: dict[str, str] = {}
    if transport == Transport.TEST:
        if not settings.WEBKVM_TEST_DRIVER:
            problems["transport"] = _("libvirt's test driver is a demo and test aid, turned off here "
                                      "(WEBKVM_TEST_DRIVER=true turns it on).")
            return problems
        try:
            uri.validate_world(path, settings.WEBKVM_TEST_WORLDS, present=present)
        except InvalidInput as exc:
            problems["path"] = said(exc)
    if transport == Transport.TLS and tls_pkipath:
        try:
            uri.validate_pki_dir(tls_pkipath, settings.WEBKVM_PKI_ROOTS, present=present)
        except InvalidInput as exc:
            problems["tls_pkipath"] = said(exc)
    return problems


class Host(models.Model):
    name = models.CharField(
        max_length=63, unique=True,
        validators=[RegexValidator(HOST_NAME_RE,
                                   gettext_lazy("Use lower-case letters, digits and hyphens (a short label).")),
                    not_a_route_word],
        help_text=gettext_lazy("A short label used in the panel and its URLs, e.g. kvm-01."),
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

    def save(self, *args: Any, **kwargs: Any) -> None:
        fields = kwargs.get("update_fields")
        if fields is None or _FILE_FIELDS & set(fields):
            problems = file_problems(self.transport, self.path, self.tls_pkipath)
            if problems:
                raise ValidationError(problems)
        super().save(*args, **kwargs)

    @property
    def pinned_keys(self) -> list[HostKey]:
        return [HostKey.parse(line) for line in self.ssh_host_keys.splitlines() if line.strip()]

    def set_sasl_password(self, password: str) -> None:
        self.sasl_password_encrypted = credentials.encrypt(password) if password else ""

    def spec(self) -> ConnectionSpec:
        problems = file_problems(self.transport, self.path, self.tls_pkipath)
        if problems:  # stored before the rule, or behind the model's back: never opened
            raise InvalidInput(" ".join(problems.values()))
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
