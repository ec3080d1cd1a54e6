"""Hostile admin input: every admin field that names a path, filled with paths of the panel's own machine.

libvirt's test driver reads its world file, and TLS its client certificates, inside the panel's own
process; pool paths name folders and devices of the hypervisor. Each row of PATH_ROWS is one field with
one hostile value: it must give a field error, save nothing, never ask libvirt and never show a file's
content. Covering a new field (or a new trick) is one more row.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from tests.conftest import BASIC_WORLD
from webkvm.management.commands import bootstrap
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db

SECRET = "SECRET-first-line-5b1e0c9d"
TLS_FILES = ("cacert.pem", "clientcert.pem", "clientkey.pem")


@dataclass(frozen=True)
class Row:
    form: str  # "host", or the pool type whose create form has the field
    field: str
    value: str  # {secret}: a file whose first line is SECRET; {worlds}, {pki}, {outside}: folders (see `places`)
    error: str  # part of the field error


PATH_ROWS = [
    # libvirt's test driver: world files only below the project's folder of worlds
    Row("host", "path", "{secret}", "below the panel's folder of test worlds"),
    Row("host", "path", "/proc/self/root{secret}", "symbolic links"),
    Row("host", "path", "/proc/self/cwd/var/secret_key", "symbolic links"),
    Row("host", "path", "/proc/self/environ", "symbolic links"),
    Row("host", "path", "/etc/hostname", "below the panel's folder of test worlds"),
    Row("host", "path", "{worlds}/../secret", "without '..'"),
    Row("host", "path", "{worlds}/escape.xml", "symbolic links"),  # a link inside the folder, pointing out
    Row("host", "path", "{worlds}/linked", "symbolic links"),  # a linked folder inside it
    Row("host", "path", "{worlds}/", "symbolic links"),  # not written as its real path
    Row("host", "path", "{worlds}", "not a file"),
    Row("host", "path", "{worlds}/missing.xml", "No such file"),
    Row("host", "path", "worlds/basic.xml", "absolute path"),
    Row("host", "path", "{worlds}/basic.xml\x00", "Null characters"),
    Row("host", "path", "{worlds}/basic.xml?x=1", "absolute path"),
    # TLS client certificates: a real folder below WEBKVM_PKI_ROOTS, holding the three files there too
    Row("host", "tls_pkipath", "{outside}", "below a folder of WEBKVM_PKI_ROOTS"),
    Row("host", "tls_pkipath", "/proc/self/root{outside}", "symbolic links"),
    Row("host", "tls_pkipath", "{pki}/linked", "symbolic links"),  # inside the root, pointing out
    Row("host", "tls_pkipath", "{pki}/leaky", "symbolic links"),  # clientkey.pem points out
    Row("host", "tls_pkipath", "{pki}/good/../../outside", "without '..'"),
    Row("host", "tls_pkipath", "{pki}//good", "symbolic links"),
    Row("host", "tls_pkipath", "{pki}/good/cacert.pem", "not a folder"),
    Row("host", "tls_pkipath", "{pki}/partial", "Missing in that folder: clientkey.pem"),
    Row("host", "tls_pkipath", "pki/good", "absolute path"),
    Row("host", "tls_pkipath", "/dev/shm", "below a folder of WEBKVM_PKI_ROOTS"),
    # storage pools: paths of the hypervisor (WEBKVM_POOL_ROOTS is "/" here: the system folders still are refused)
    Row("dir", "target_path", "/proc/self/cwd", "system folder"),
    Row("dir", "target_path", "/sys/kernel", "system folder"),
    Row("dir", "target_path", "/dev/shm", "system folder"),
    Row("dir", "target_path", "/proc", "system folder"),
    Row("dir", "target_path", "/srv/libvirt/../../etc", "'..'"),
    Row("dir", "target_path", "srv/libvirt/x", "absolute path"),
    Row("dir", "target_path", "/srv/libvirt/x\x00y", "Null characters"),
    Row("dir", "target_path", "/srv/libvirt//x", "doubled '/'"),
    Row("dir", "target_path", "/srv/libvirt/x\ny", "control characters"),
    Row("netfs", "target_path", "/proc/fs/nfs", "system folder"),
    Row("netfs", "target_path", "/srv/libvirt/./m", "'.'"),
    Row("netfs", "source_dir", "../export", "absolute path"),
    Row("netfs", "source_dir", "/export/../etc", "'..'"),
    Row("logical", "devices", "/etc/passwd", "/dev/"),
    Row("logical", "devices", "/dev/../etc/shadow", "'..'"),
    Row("disk", "devices", "/proc/self/fd/0", "/dev/"),
    Row("disk", "devices", "/dev", "/dev/"),
]

# Everything else a valid form of each kind needs, so that only the row's field is wrong.
VALID = {
    "host-path": {"name": "new-host", "transport": "test"},
    "host-tls_pkipath": {"name": "new-host", "transport": "tls", "hostname": "kvm1", "path": "system"},
    "dir": {"name": "t-dir"},
    "netfs": {"name": "t-nfs", "hosts": "nas", "source_dir": "/export", "target_path": "/srv/libvirt/m"},
    "logical": {"name": "t-lvm", "source_name": "vg", "build": "on"},
    "disk": {"name": "t-disk", "source_format": "gpt"},
}


@pytest.fixture
def places(tmp_path: Path, settings: Any) -> dict[str, str]:
    """A secret file; a folder of test worlds with links pointing out; a PKI root with good, partial and
    leaky folders and a link pointing out; a PKI folder outside the root. The settings name these folders."""
    secret = tmp_path / "secret"
    secret.write_text(f"{SECRET}\nsecond line\n")
    worlds = tmp_path / "worlds"
    worlds.mkdir()
    shutil.copy(BASIC_WORLD, worlds / "basic.xml")
    (worlds / "escape.xml").symlink_to(secret)
    (worlds / "linked").symlink_to(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    pki = tmp_path / "pki"
    for folder in (outside, pki / "good", pki / "partial", pki / "leaky"):
        folder.mkdir(parents=True, exist_ok=True)
        for name in TLS_FILES:
            (folder / name).write_text(f"{SECRET}\n")
    (pki / "partial" / "clientkey.pem").unlink()
    (pki / "leaky" / "clientkey.pem").unlink()
    (pki / "leaky" / "clientkey.pem").symlink_to(secret)
    (pki / "linked").symlink_to(outside)
    settings.WEBKVM_TEST_DRIVER = True
    settings.WEBKVM_TEST_WORLDS = [str(worlds), str(BASIC_WORLD.parent)]  # the second for test_host
    settings.WEBKVM_PKI_ROOTS = [str(pki)]
    settings.WEBKVM_POOL_ROOTS = ["/"]
    return {"secret": str(secret), "worlds": str(worlds), "pki": str(pki), "outside": str(outside)}


def _post(client: Client, row: Row, value: str) -> Any:
    if row.form == "host":
        data = {**VALID[f"host-{row.field}"], row.field: value}
        return client.post(reverse("hosts:create"), data)
    data = {**VALID[row.form], row.field: value}
    return client.post(reverse("storage:pool_new", args=["testhost", row.form]), data)


def _audit_text() -> str:
    return " ".join(f"{e.object_name} {e.detail}" for e in AuditEvent.objects.all())


@pytest.mark.parametrize("row", PATH_ROWS, ids=[f"{r.form}-{r.field}-{r.value[:40]!r}" for r in PATH_ROWS])
def test_a_hostile_path_is_a_field_error(admin_client: Client, test_host: Host, places: dict[str, str],
                                         libvirt_opens: list[str], row: Row) -> None:
    hosts_before = list(Host.objects.values_list("name", "path", "tls_pkipath"))
    response = _post(admin_client, row, row.value.format(**places))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert any(row.error in message for message in errors.get(row.field, [])), errors
    page = response.content.decode()
    assert f'id="field-{row.field}"' in page
    assert SECRET not in page and SECRET not in _audit_text()
    assert libvirt_opens == []
    assert list(Host.objects.values_list("name", "path", "tls_pkipath")) == hosts_before
    if row.form != "host":
        pools = services.call(test_host, lambda conn: conn.listAllStoragePools())
        assert {pool.name() for pool in pools} == {"images"}


def test_valid_paths_of_each_field_are_accepted(admin_client: Client, places: dict[str, str]) -> None:
    """The rows above fail for their hostile value, not because the rest of the form is wrong."""
    world = f"{places['worlds']}/basic.xml"
    response = admin_client.post(reverse("hosts:create"), {**VALID["host-path"], "path": world})
    assert response.status_code == 302, response.context["form"].errors
    response = admin_client.post(reverse("hosts:create"), {**VALID["host-tls_pkipath"], "name": "tls-host",
                                                           "tls_pkipath": f"{places['pki']}/good"})
    assert response.status_code == 302, response.context["form"].errors
    assert Host.objects.get(name="tls-host").tls_pkipath == f"{places['pki']}/good"


# --- a world file that does not parse: its content never reaches a page or the audit log ---------------


def test_a_world_file_that_does_not_parse_is_named_without_its_content(admin_client: Client,
                                                                      places: dict[str, str]) -> None:
    broken = Path(places["worlds"]) / "broken.xml"
    broken.write_text(f"{SECRET}\nsecond line\n")
    response = admin_client.post(reverse("hosts:create"), {**VALID["host-path"], "path": str(broken)})
    assert response.status_code == 302, response.context["form"].errors
    detail = admin_client.get(reverse("hosts:detail", args=["new-host"])).content.decode()
    assert "broken.xml:1: Start tag expected" in detail  # what failed, and where
    listing = admin_client.get(reverse("hosts:list")).content.decode()
    tested = admin_client.post(reverse("hosts:test", args=["new-host"]), follow=True).content.decode()
    assert "Test connection: not done:" in tested and "broken.xml:1:" in tested
    usage = admin_client.get(reverse("hosts:usage", args=["new-host"])).content.decode()
    for text in (detail, listing, tested, usage, _audit_text()):
        assert SECRET not in text and "second line" not in text


def test_a_stored_path_that_breaks_the_rule_is_never_opened(admin_client: Client, places: dict[str, str],
                                                            libvirt_opens: list[str]) -> None:
    """A row written before the rule (or behind the model's back) is refused when used, not opened."""
    host = Host.objects.create(name="old", transport="test", path=f"{places['worlds']}/basic.xml")
    Host.objects.filter(pk=host.pk).update(path=places["secret"])
    detail = admin_client.get(reverse("hosts:detail", args=["old"])).content.decode()
    tested = admin_client.post(reverse("hosts:test", args=["old"]), follow=True).content.decode()
    assert "folder of test worlds" in detail
    assert SECRET not in detail + tested + _audit_text()
    assert libvirt_opens == []


def test_the_model_refuses_what_the_form_refuses(places: dict[str, str]) -> None:
    """bootstrap, the shell and any later API save through the model: the same rule holds there."""
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="below the panel's folder of test worlds"):
        Host.objects.create(name="sneaky", transport="test", path=places["secret"])
    with pytest.raises(ValidationError, match="WEBKVM_PKI_ROOTS"):
        Host.objects.create(name="sneaky", transport="tls", hostname="kvm1", tls_pkipath=places["outside"])
    assert not Host.objects.filter(name="sneaky").exists()


# --- the test driver is off unless a setting turns it on ----------------------------------------------


def test_without_the_setting_the_test_driver_is_refused(admin_client: Client, places: dict[str, str],
                                                        settings: Any, libvirt_opens: list[str],
                                                        monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    Host.objects.create(name="demo", transport="test", path="default")
    settings.WEBKVM_TEST_DRIVER = False
    response = admin_client.post(reverse("hosts:create"), {**VALID["host-path"], "path": "default"})
    assert response.status_code == 200
    assert "WEBKVM_TEST_DRIVER" in response.context["form"].errors["transport"][0]
    detail = admin_client.get(reverse("hosts:detail", args=["demo"])).content.decode()
    assert "WEBKVM_TEST_DRIVER" in detail and libvirt_opens == []
    # bootstrap on a machine without libvirtd adds no demo host then, and says how to get one
    Host.objects.all().delete()
    monkeypatch.setattr(bootstrap, "LOCAL_SOCKET", "/nonexistent/libvirt-sock")
    call_command("bootstrap")
    assert not Host.objects.exists() and "WEBKVM_TEST_DRIVER=true" in capsys.readouterr().out


# --- every admin field that names a path has a row above ------------------------------------------------

# Fields that name a path although their name does not say so (a pool's devices: /dev/sdb ...).
PATH_NAMED = {"devices"}
PATH_ENDINGS = ("path", "dir", "folder", "file")


def _form_fields() -> dict[str, set[str]]:
    """Every form of hosts/ and storage/ by the name PATH_ROWS gives it ("host", a pool type, or the form
    class's own name), with its fields: the pool form once per pool type, with that type's fields."""
    import inspect

    from django import forms

    import hosts.forms
    import storage.forms

    found: dict[str, set[str]] = {}
    for module in (hosts.forms, storage.forms):
        for name, form in inspect.getmembers(module, inspect.isclass):
            if not issubclass(form, forms.BaseForm) or form.__module__ != module.__name__:
                continue
            if form is hosts.forms.HostForm:
                found["host"] = set(form.base_fields)
            elif form is storage.forms.PoolForm:
                found.update({kind: set(fields) for kind, fields in storage.forms.POOL_FIELDS.items()})
            else:
                found[name] = set(form.base_fields)
    return found


def _names_a_path(field: str) -> bool:
    return field in PATH_NAMED or field.lower().endswith(PATH_ENDINGS)


def test_every_admin_path_field_has_a_row() -> None:
    fields = _form_fields()
    assert {"host", "dir", "netfs", "logical", "disk"} <= set(fields)  # the walk found the forms
    wanted = {(form, field) for form, names in fields.items() for field in names if _names_a_path(field)}
    assert {("host", "path"), ("host", "tls_pkipath"), ("dir", "target_path")} <= wanted
    covered = {(row.form, row.field) for row in PATH_ROWS}
    missing = sorted(wanted - covered)
    assert not missing, f"admin fields naming a path without a row in PATH_ROWS: {missing}"
    # Every row names a field its form really has (a renamed field leaves no row behind unnoticed).
    assert not {(f, n) for f, n in covered if n not in fields.get(f, set())}
