"""The host form: every value that becomes part of a URI is validated by the virt layer's rules."""

from __future__ import annotations

from typing import Any

from django import forms

from hosts.models import Host, file_problems
from virt import uri as virt_uri
from virt.errors import InvalidInput
from virt.uri import Transport


class HostForm(forms.ModelForm[Host]):
    sasl_password = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown again. Leave empty to keep the current one.",
    )
    port = forms.IntegerField(required=False, min_value=1, max_value=65535)

    class Meta:
        model = Host
        fields = ["name", "transport", "hostname", "port", "username", "path", "tls_pkipath", "sasl_username",
                  "insecure_tcp"]
        labels = {
            "tls_pkipath": "TLS certificate directory",
            "sasl_username": "SASL user",
            "insecure_tcp": "Plain TCP without SASL (insecure, lab only)",
        }
        help_texts = {
            "hostname": "DNS name or IP address of the hypervisor (not used for local and test hosts).",
            "username": "ssh login on the hypervisor, e.g. root or a member of group libvirt.",
            "path": "'system' or 'session'; for the test driver 'default' or a world file of the panel's own.",
            "tls_pkipath": "Folder holding cacert.pem, clientcert.pem and clientkey.pem, below WEBKVM_PKI_ROOTS.",
        }

    def _check(self, field: str, check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except InvalidInput as exc:
            self.add_error(field, str(exc))
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
            self.add_error("path", "Choose 'system' or 'session'.")
        if transport == Transport.LOCAL:
            data["hostname"], data["username"], data["port"] = "", "", None
            return data
        hostname = (data.get("hostname") or "").strip()
        if not hostname:
            self.add_error("hostname", "A remote host needs a host name or address.")
        else:
            data["hostname"] = self._check("hostname", virt_uri.validate_hostname, hostname) or hostname
        username = (data.get("username") or "").strip()
        if username:
            self._check("username", virt_uri.validate_username, username)
        elif transport == Transport.SSH:
            self.add_error("username", "ssh needs a login name, e.g. root.")
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
            self.add_error("tls_pkipath", "TLS needs the folder of the client certificate.")
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
                self.add_error("sasl_password", "Enter the SASL password.")
        elif not data.get("insecure_tcp"):
            self.add_error("insecure_tcp", "Plain TCP sends everything unencrypted and unauthenticated: "
                                           "use SASL, TLS or ssh, or tick this box for a lab.")

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
