"""Hosts over qemu+tls on the real lab libvirtd: the client certificate is the authentication."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from hosts.models import Host
from lab import labctl

pytestmark = [pytest.mark.django_db, pytest.mark.lab]


@pytest.fixture(autouse=True)
def _pki_roots(settings: Any, lab: dict[str, Any], tmp_path: Path) -> None:
    """The lab's PKI and each test's own folder are where its TLS client certificates may lie."""
    settings.WEBKVM_PKI_ROOTS = [str(Path(lab["tls"]["pkipath"]).parent), str(tmp_path)]


def tls_form(name: str, pkipath: str | Path) -> dict[str, str]:
    return {"name": name, "transport": "tls", "hostname": "127.0.0.1", "port": "16514", "path": "system",
            "tls_pkipath": str(pkipath)}


def test_lab_pki_is_a_pkipath_directory(lab: dict[str, Any]) -> None:
    tls = lab["tls"]
    assert tls["port"] == 16514
    assert tls["uri"] == f"qemu+tls://127.0.0.1:16514/system?pkipath={tls['pkipath']}"
    assert sorted(p.name for p in Path(tls["pkipath"]).iterdir()) == ["cacert.pem", "clientcert.pem",
                                                                     "clientkey.pem"]
    assert labctl.make_pki(Path(tls["pkipath"]).parent) == []  # nothing is made again


def test_add_over_tls_with_the_lab_certificate(admin_client, lab: dict[str, Any]) -> None:
    response = admin_client.post(reverse("hosts:create"), tls_form("lab-tls", lab["tls"]["pkipath"]))
    assert response.status_code == 302
    assert Host.objects.get(name="lab-tls").transport == "tls"
    page = admin_client.post(reverse("hosts:test", args=["lab-tls"]), follow=True).content.decode()
    assert "connected to QEMU" in page, page[:2000]
    page = admin_client.get(reverse("hosts:detail", args=["lab-tls"])).content.decode()
    assert 'class="state up"' in page


def test_certificate_from_another_ca_is_refused(admin_client, lab: dict[str, Any], tmp_path: Path) -> None:
    # Same file names and subject names as the lab's PKI, but another CA key signed them.
    made = labctl.make_pki(tmp_path / "pki")
    assert made == ["ca", "server", "client"]
    foreign = tmp_path / "pki" / "client"
    assert (foreign / "cacert.pem").read_bytes() != Path(lab["tls"]["ca_cert"]).read_bytes()
    response = admin_client.post(reverse("hosts:create"), tls_form("lab-tls-foreign", foreign))
    assert response.status_code == 302
    page = admin_client.post(reverse("hosts:test", args=["lab-tls-foreign"]), follow=True).content.decode()
    assert "Test connection: not done:" in page, page[:2000]
    assert "connected to QEMU" not in page

    # Trusting both CAs gets the client past its own checks, so the daemon sees the foreign
    # certificate, and refuses it: it only trusts the lab CA.
    both = tmp_path / "both"
    shutil.copytree(foreign, both)
    (both / "cacert.pem").write_bytes((foreign / "cacert.pem").read_bytes()
                                      + Path(lab["tls"]["ca_cert"]).read_bytes())
    log = Path(lab["state_dir"]) / "libvirtd.log"
    log_size = log.stat().st_size
    admin_client.post(reverse("hosts:create"), tls_form("lab-tls-both", both))
    page = admin_client.post(reverse("hosts:test", args=["lab-tls-both"]), follow=True).content.decode()
    assert "Test connection: not done:" in page, page[:2000]
    with log.open() as f:
        f.seek(log_size)
        assert "Failed to verify peer's certificate" in f.read()

def test_missing_certificate_file_is_a_form_error(admin_client, lab: dict[str, Any], tmp_path: Path) -> None:
    partial = tmp_path / "client"
    shutil.copytree(lab["tls"]["pkipath"], partial)
    (partial / "clientkey.pem").unlink()
    response = admin_client.post(reverse("hosts:create"), tls_form("lab-tls-partial", partial))
    assert response.status_code == 200
    assert not Host.objects.filter(name="lab-tls-partial").exists()
    errors = response.context["form"].errors
    assert list(errors) == ["tls_pkipath"]
    assert "clientkey.pem" in errors["tls_pkipath"][0]
