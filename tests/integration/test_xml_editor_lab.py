"""The XML editor against the lab's real libvirtd: libvirt's own schema and semantic checks, with
virsh asked after every step that the definition is what it must be."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from instances.models import DomainDefinition
from tests.conftest import PASSWORD
from tests.lab import domain_xml, remove_domain
from tests.unit.xml.test_xml_parser import BILLION_LAUGHS, XXE_FILE
from virt import xmledit
from virt.xml import Domain
from webkvm.models import AuditEvent, VMGrant

pytestmark = [pytest.mark.django_db, pytest.mark.lab]
FAST = 1.0  # seconds for the whole request; expanding a billion laughs would take far longer
READ = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
SECRET = "vnc-pw-7"  # VNC allows at most 8 characters


def _quiet(*_: object) -> None:
    """libvirt prints every error to stderr by default; the exceptions are enough."""


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def dumpxml(name: str) -> str:
    """The persistent definition as libvirt has it, passwords included (virsh adds one newline)."""
    out = virsh("dumpxml", "--inactive", "--security-info", name)
    assert out.endswith("\n\n")
    return out[:-1]


@pytest.fixture
def tcp_host(lab: dict[str, Any]) -> Host:
    return Host.objects.create(name="lab-tcp", transport="tcp", hostname="127.0.0.1", port=16509, path="system",
                               insecure_tcp=True)


@pytest.fixture
def lab_vm(lab: dict[str, Any]) -> Iterator[Callable[..., libvirt.virDomain]]:
    """Factory: a shut-off test-* VM with a VNC password (started on request); removed afterwards."""
    libvirt.registerErrorHandler(_quiet, None)
    conn = libvirt.open(lab["unix_uri"])
    made: list[libvirt.virDomain] = []

    def make(start: bool = False) -> libvirt.virDomain:
        dom_xml = Domain.from_xml(domain_xml(f"test-xml-{uuid.uuid4().hex[:8]}", lab["domain_type"]))
        dom_xml.graphics[0].passwd = SECRET
        dom = conn.defineXML(dom_xml.to_xml())
        made.append(dom)
        if start:
            dom.create()
        return dom

    yield make
    for dom in made:
        remove_domain(dom)
    conn.close()


def urls(host: Host, dom: libvirt.virDomain) -> tuple[str, str]:
    return (reverse("instances:xml_edit", args=[host.name, dom.UUIDString()]),
            reverse("instances:xml_history", args=[host.name, dom.UUIDString()]))


def open_editor(client: Client, url: str) -> dict[str, str]:
    page = client.get(url)
    assert page.status_code == 200, page.content[:300]
    assert SECRET not in page.content.decode()
    return {"xml": page.context["text"], "base": page.context["base"], "original": page.context["original"]}


def test_hostile_oversized_and_foreign_documents_never_reach_libvirt(admin_client: Client, tcp_host: Host,
                                                                     lab_vm) -> None:
    dom = lab_vm()
    edit, _ = urls(tcp_host, dom)
    before = dumpxml(dom.name())
    form = open_editor(admin_client, edit)
    for document in (XXE_FILE, BILLION_LAUGHS):
        start = time.monotonic()
        response = admin_client.post(edit, {**form, "xml": document})
        assert time.monotonic() - start < FAST
        assert response.status_code == 400 and "DOCTYPE is not allowed" in response.content.decode()
    oversized = admin_client.post(edit, {**form, "xml": form["xml"] + "<!--" + "x" * (1 << 20) + "-->"})
    assert oversized.status_code == 413
    foreign = admin_client.post(edit, {**form, "xml": form["xml"].replace(dom.UUIDString(), str(uuid.uuid4()))})
    assert foreign.status_code == 400 and "must keep this VM&#x27;s &lt;uuid&gt;" in foreign.content.decode()
    assert dumpxml(dom.name()) == before
    assert not DomainDefinition.objects.exists()
    assert AuditEvent.objects.filter(action="vm.xml.edit", result="failed").count() == 4


def test_invalid_definitions_show_libvirts_message_and_keep_the_old_one(admin_client: Client, tcp_host: Host,
                                                                        lab_vm) -> None:
    dom = lab_vm()
    edit, _ = urls(tcp_host, dom)
    before = dumpxml(dom.name())
    form = open_editor(admin_client, edit)
    # Against libvirt's schema: the line it objects to is marked.
    broken = form["xml"].replace("<on_crash>", "<no-such-setting/>\n  <on_crash>")
    response = admin_client.post(edit, {**form, "xml": broken})
    assert response.status_code == 400
    assert "failed to validate against schema" in response.content.decode()
    assert response.context["error_line"] == broken.split("\n").index("  <no-such-setting/>") + 1
    # Schema-valid but impossible on this host: libvirt's own words.
    missing = form["xml"].replace("<emulator>", "<emulator>/nonexistent")
    assert "/nonexistent" in missing
    response = admin_client.post(edit, {**form, "xml": missing})
    assert response.status_code == 400 and "/nonexistent" in response.context["error"]
    assert dumpxml(dom.name()) == before
    assert not DomainDefinition.objects.exists()


def test_a_stale_edit_is_409_with_a_diff(admin_client: Client, tcp_host: Host, lab_vm) -> None:
    dom = lab_vm()
    edit, _ = urls(tcp_host, dom)
    form = open_editor(admin_client, edit)
    virsh("desc", dom.name(), "--config", "--new-desc", "set with virsh meanwhile")
    meanwhile = dumpxml(dom.name())
    response = admin_client.post(edit, {**form, "xml": form["xml"].replace("<vcpu placement='static'>1",
                                                                           "<vcpu placement='static'>2")})
    assert response.status_code == 409
    html = response.content.decode()
    assert "changed since you opened the editor" in html
    assert "+  &lt;description&gt;set with virsh meanwhile&lt;/description&gt;" in html
    assert dumpxml(dom.name()) == meanwhile


def test_edit_keeps_the_vnc_password_and_rollback_restores_byte_for_byte(admin_client: Client, tcp_host: Host,
                                                                         lab_vm) -> None:
    dom = lab_vm()
    name = dom.name()
    edit, history = urls(tcp_host, dom)
    original = dumpxml(name)
    assert f"passwd='{SECRET}'" in original
    form = open_editor(admin_client, edit)
    form["xml"] = form["xml"].replace("<memory unit='KiB'>65536</memory>", "<memory unit='KiB'>98304</memory>")
    response = admin_client.post(edit, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    edited = dumpxml(name)
    assert "<memory unit='KiB'>98304</memory>" in edited and f"passwd='{SECRET}'" in edited
    entry = DomainDefinition.objects.get()
    assert entry.xml == xmledit.without_secrets(original) and SECRET not in entry.xml  # kept without secrets
    for url in (edit, history):
        assert SECRET not in admin_client.get(url).content.decode()
    page = admin_client.get(history)
    rollback = reverse("instances:xml_rollback", args=[tcp_host.name, dom.UUIDString(), entry.pk])
    assert admin_client.post(rollback, {"base": page.context["base"]}).status_code == 302
    assert dumpxml(name) == original == dom.XMLDesc(READ)  # the password too: it is still the current one
    assert DomainDefinition.objects.first().xml == xmledit.without_secrets(edited)
    assert list(AuditEvent.objects.filter(action__startswith="vm.xml.").values_list("action", "result")) == [
        ("vm.xml.rollback", "ok"), ("vm.xml.edit", "ok")]


def test_a_running_vm_gets_the_new_definition_at_its_next_boot(admin_client: Client, tcp_host: Host,
                                                               lab_vm) -> None:
    dom = lab_vm(start=True)
    edit, _ = urls(tcp_host, dom)
    form = open_editor(admin_client, edit)
    form["xml"] = form["xml"].replace("<memory unit='KiB'>65536</memory>", "<memory unit='KiB'>98304</memory>")
    page = admin_client.post(edit, form, follow=True).content.decode()
    assert "applies at its next boot" in page and "Pending until next boot" in page
    assert "+  &lt;memory unit=&#x27;KiB&#x27;&gt;98304&lt;/memory&gt;" in page
    assert SECRET not in page
    assert dom.isActive() and dom.info()[1] == 65536  # the running VM is untouched
    dom.destroy()
    dom.create()
    assert dom.info()[1] == 98304
    assert f"passwd='{SECRET}'" in virsh("dumpxml", "--security-info", dom.name())


def test_only_admins(tcp_host: Host, lab_vm, outsider_client: Client) -> None:
    dom = lab_vm()
    before = dumpxml(dom.name())
    user = get_user_model().objects.create_user("carol", "", PASSWORD)
    VMGrant.objects.create(user=user, host=tcp_host, vm_uuid=dom.UUIDString(), can_console=True, can_power=True,
                           can_change=True, can_delete=True)
    granted = Client()
    granted.force_login(user)
    edit, history = urls(tcp_host, dom)
    for client in (granted, outsider_client):
        assert client.get(edit).status_code == 403
        assert client.get(history).status_code == 403
        assert client.post(edit, {"xml": before, "base": "", "original": ""}).status_code == 403
    assert Client().get(edit)["Location"].startswith("/login/")
    assert dumpxml(dom.name()) == before
    # Identical refusals of one client are counted on one row (webkvm/audit.py).
    assert sum(AuditEvent.objects.filter(action="denied:admin").values_list("repeats", flat=True)) == 6
