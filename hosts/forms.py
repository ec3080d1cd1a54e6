"""The host form: every value that becomes part of a URI is validated by the virt layer's rules."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.functional import lazy
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop, pgettext_lazy

from hosts.models import Host, file_problems
from virt import uri as virt_uri
from virt.errors import InvalidInput
from virt.uri import Transport
from webkvm.i18n import said


def _with_code(text: str) -> str:
    """A help text whose translation may set values to type in <code> (the English stays plain text)."""
    return lazy(lambda: mark_safe(_(text)), SafeString)()  # noqa: S308  # our own catalog's text


TRANSPORT_CHOICES = [
    ("", "---------"),
    (Transport.SSH.value, pgettext_lazy("transport", "ssh")),
    (Transport.TLS.value, pgettext_lazy("transport", "tls")),
    (Transport.TCP.value, pgettext_lazy("transport", "tcp")),
    (Transport.LOCAL.value, pgettext_lazy("transport", "local")),
    (Transport.TEST.value, pgettext_lazy("transport", "test")),
]


class HostForm(forms.ModelForm[Host]):
    sasl_password = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(render_value=False),
        label=gettext_lazy("SASL password"),
        help_text=gettext_lazy("Stored encrypted and never shown again. Leave empty to keep the current one."),
    )
    port = forms.IntegerField(label=gettext_lazy("Port"), required=False, min_value=1, max_value=65535)

    class Meta:
        model = Host
        fields = ["name", "transport", "hostname", "port", "username", "path", "tls_pkipath", "sasl_username",
                  "insecure_tcp"]
        labels = {
            "name": gettext_lazy("Name"),
            "transport": gettext_lazy("Transport"),
            "hostname": gettext_lazy("Hostname"),
            "username": gettext_lazy("Username"),
            "path": gettext_lazy("Path"),
            "tls_pkipath": gettext_lazy("TLS certificate directory"),
            "sasl_username": gettext_lazy("SASL user"),
            "insecure_tcp": gettext_lazy("Plain TCP without SASL (insecure, lab only)"),
        }
        error_messages = {"name": {"unique": gettext_lazy("A host with this name already exists.")}}
        help_texts = {
            "name": _with_code(gettext_noop("A short label used in the panel and its URLs, e.g. kvm-01.")),
            "hostname": gettext_lazy("DNS name or IP address of the hypervisor (not used for local and test hosts)."),
            "username": _with_code(gettext_noop("ssh login on the hypervisor, e.g. root or a member of group "
                                                "libvirt.")),
            "path": _with_code(gettext_noop("'system' or 'session'; for the test driver 'default' or a world file "
                                            "of the panel's own.")),
            "tls_pkipath": _with_code(gettext_noop("Folder holding cacert.pem, clientcert.pem and clientkey.pem, "
                                                   "below WEBKVM_PKI_ROOTS.")),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["transport"]
        if isinstance(field, forms.ChoiceField):
            field.choices = TRANSPORT_CHOICES

    def _check(self, field: str, check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except InvalidInput as exc:
            self.add_error(field, said(exc))
            return None

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        transport = data.get("transport")
        if transport is None:
            return data
        path = (data.get("path") or "").strip()
        data["path"] = path
        if transport == Transport.TEST:
            self._add_file_problems(transport, path, "")
            for field in ("hostname", "username", "port"):
                data[field] = None if field == "port" else ""
            return data
        if path not in virt_uri.LOCAL_PATHS:
            self.add_error("path", _("Choose 'system' or 'session'."))
        if transport == Transport.LOCAL:
            data["hostname"], data["username"], data["port"] = "", "", None
            return data
        hostname = (data.get("hostname") or "").strip()
        if not hostname:
            self.add_error("hostname", _("A remote host needs a host name or address."))
        else:
            data["hostname"] = self._check("hostname", virt_uri.validate_hostname, hostname) or hostname
        username = (data.get("username") or "").strip()
        if username:
            self._check("username", virt_uri.validate_username, username)
        elif transport == Transport.SSH:
            self.add_error("username", _("ssh needs a login name, e.g. root."))
        if transport == Transport.TLS:
            self._clean_tls(data)
        if transport == Transport.TCP:
            self._clean_tcp(data)
        return data

    def _clean_tls(self, data: dict[str, Any]) -> None:
        pki = (data.get("tls_pkipath") or "").strip()
        if "tls_pkipath" in self.errors:
            return
        if not pki:
            self.add_error("tls_pkipath", _("TLS needs the folder of the client certificate."))
        else:
            self._add_file_problems(Transport.TLS, "", pki)

    def _add_file_problems(self, transport: str, path: str, pki: str) -> None:
        for field, message in file_problems(transport, path, pki, present=True).items():
            if field not in self.errors:  # a field already refused (e.g. a NUL character) gets no second message
                self.add_error(field, message)

    def _clean_tcp(self, data: dict[str, Any]) -> None:
        sasl_user = (data.get("sasl_username") or "").strip()
        if sasl_user:
            self._check("sasl_username", virt_uri.validate_sasl_username, sasl_user)
            has_password = bool(data.get("sasl_password")) or bool(self.instance.sasl_password_encrypted)
            if not has_password:
                self.add_error("sasl_password", _("Enter the SASL password."))
        elif not data.get("insecure_tcp"):
            self.add_error("insecure_tcp", _("Plain TCP sends everything unencrypted and unauthenticated: "
                                             "use SASL, TLS or ssh, or tick this box for a lab."))

    def save(self, commit: bool = True) -> Host:
        host: Host = super().save(commit=False)
        if host.transport != Transport.TCP:
            host.sasl_username = ""
            host.sasl_password_encrypted = ""
        elif self.cleaned_data.get("sasl_password"):
            host.set_sasl_password(self.cleaned_data["sasl_password"])
        if host.transport != Transport.SSH:
            host.ssh_host_keys = ""
        if commit:
            host.save()
        return host
