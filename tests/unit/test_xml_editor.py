"""The raw XML editor on libvirt's test driver (which validates against libvirt's schema too):
hostile and foreign documents, size cap, stale edits, history, rollback, secrets, permissions.
libvirt is asked after every step."""

from __future__ import annotations

import importlib
import io
import time
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from lxml import etree

import virt.xmledit
from hosts import services
from hosts.models import Host
from instances.models import DomainDefinition
from tests.conftest import DB_01_UUID, PASSWORD, WEB_01_UUID
from tests.unit.xml.test_xml_parser import BILLION_LAUGHS, XXE_FILE
from virt import xmledit
from virt.errors import Unreachable
from virt.xml import Domain
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db
FAST = 0.5  # seconds: an expanding or fetching parser would blow far past this
SECRET = "vnc-s3cret-42"
READ = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


def definition(host: Host, uuid: str = WEB_01_UUID) -> str:
    return services.call(host, lambda conn: conn.lookupByUUIDString(uuid).XMLDesc(READ))


def live(host: Host, uuid: str = WEB_01_UUID) -> str:
    return services.call(host, lambda conn: conn.lookupByUUIDString(uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))


def redefine(host: Host, change, uuid: str = WEB_01_UUID) -> None:
    """Change a definition behind the editor's back, as virsh would."""
    dom = Domain.from_xml(definition(host, uuid))
    change(dom)
    services.call(host, lambda conn: conn.defineXML(dom.to_xml()))


def set_password(dom: Domain) -> None:
    dom.graphics[0].passwd = SECRET


def edit_url(host: Host, uuid: str = WEB_01_UUID) -> str:
    return reverse("instances:xml_edit", args=[host.name, uuid])


def history_url(host: Host, uuid: str = WEB_01_UUID) -> str:
    return reverse("instances:xml_history", args=[host.name, uuid])


def open_editor(client: Client, host: Host, uuid: str = WEB_01_UUID) -> dict[str, Any]:
    page = client.get(edit_url(host, uuid))
    assert page.status_code == 200
    return {"xml": page.context["text"], "base": page.context["base"], "original": page.context["original"]}


def save(client: Client, host: Host, form: dict[str, Any], uuid: str = WEB_01_UUID, **extra: Any):
    return client.post(edit_url(host, uuid), form, **extra)


# -- virt/xmledit.py ---------------------------------------------------------------------------------

def test_mask_hides_passwords_and_keeps_everything_else_byte_for_byte() -> None:
    xml = ("<domain>\n  <description>passwd='visible' is just text</description>\n"
           "  <devices><graphics type='vnc' passwd='a&apos;b' port='-1'/>\n"
           '  <graphics type="spice" passwd="x y"><listen type="address"/></graphics></devices>\n</domain>\n')
    masked = xmledit.mask(xml)
    assert "a&apos;b" not in masked and "x y" not in masked
    assert masked == xml.replace("'a&apos;b'", "'********'").replace('"x y"', "'********'")
    assert xmledit.mask(masked) == masked


def test_masked_password_is_restored_by_position_and_a_new_one_kept() -> None:
    current = ("<domain><devices><graphics type='spice' passwd='one'/><graphics type='vnc' passwd='two'/>"
               "<graphics type='vnc' passwd='three'/></devices></domain>")
    edited = xmledit.check_document(
        "<domain><uuid>11111111-1111-4111-8111-111111111111</uuid><devices>"
        "<graphics type='vnc' passwd='new'/><graphics type='vnc' passwd='********'/>"
        "<graphics type='spice' passwd='********'/></devices></domain>", WEB_01_UUID)
    assert xmledit.restore_secrets(edited, current) == 2
    assert [g.get("passwd") for g in edited.iter("graphics")] == ["new", "three", "one"]


def test_a_mask_where_libvirt_has_no_password_is_refused_with_its_line() -> None:
    root = xmledit.check_document(
        "<domain>\n<uuid>11111111-1111-4111-8111-111111111111</uuid>\n<devices>\n"
        "<graphics type='vnc' passwd='********'/></devices></domain>", WEB_01_UUID)
    with pytest.raises(xmledit.DocumentRejected, match="no password there to keep") as caught:
        xmledit.restore_secrets(root, "<domain><devices><graphics type='vnc'/></devices></domain>")
    assert caught.value.line == 4


@pytest.mark.parametrize(("document", "message", "line"), [
    ("<network><uuid>x</uuid></network>", "root element must be <domain>", 1),
    ("<domain>\n<name>web-01</name>\n<uuid>22222222-2222-4222-8222-222222222222</uuid></domain>",
     "must keep this VM's <uuid>", 3),
    ("<domain><name>web-01</name></domain>", "must keep this VM's <uuid>", 1),
    ("<domain><uuid>11111111-1111-4111-8111-111111111111</uuid><uuid>11111111-1111-4111-8111-111111111111</uuid>"
     "<name>web-01</name></domain>", "must keep this VM's <uuid>", 1),
    ("<domain><uuid>11111111111141118111111111111111</uuid><name>web-02</name></domain>",
     "must keep this VM's <name>web-01</name>", 1),
    ("<domain>\n<uuid>\n", "malformed XML: line 3: Premature end of data in tag uuid line 2", 2),  # left open
])
def test_documents_that_are_not_this_vm_are_refused(document: str, message: str, line: int) -> None:
    with pytest.raises(xmledit.DocumentRejected, match=message) as caught:
        xmledit.check_document(document, WEB_01_UUID, "web-01")
    assert caught.value.line == line


def test_the_schema_error_line_is_found_with_the_panels_copy_of_libvirts_schema() -> None:
    xml = ("<domain type='kvm'>\n  <name>a</name>\n  <memory>1024</memory>\n  <os><type>hvm</type></os>\n"
           "  <bogus/>\n</domain>")
    assert xmledit.error_line("XML document failed to validate against schema: extra content: bogus", xml) == 5
    assert xmledit.error_line("(domain_definition):7: expected '>'", xml) == 7
    assert xmledit.error_line("operation failed: domain 'a' already exists", xml) is None


# -- the editor page ---------------------------------------------------------------------------------

def test_admin_sees_the_persistent_definition_masked(admin_client: Client, test_host: Host) -> None:
    redefine(test_host, set_password)
    page = admin_client.get(edit_url(test_host))
    html = page.content.decode()
    assert page.status_code == 200
    assert SECRET not in html
    assert "passwd=&#x27;********&#x27;" in html and "&lt;uuid&gt;11111111-1111-4111-8111-111111111111" in html
    assert page.context["text"] == xmledit.mask(definition(test_host))
    assert "/static/vendor/codemirror/lib/codemirror.js" in html and "/static/js/xml-editor.js" in html
    # web-01 runs: what is pending until its next boot is shown (here: the new password, masked).
    assert 'id="xml-pending"' in html and "Pending until next boot" in html
    detail = admin_client.get(reverse("instances:detail", args=[test_host.name, WEB_01_UUID])).content.decode()
    assert edit_url(test_host) in detail


def test_an_edit_is_defined_and_the_previous_definition_kept(admin_client: Client, admin_user,
                                                             test_host: Host) -> None:
    before = definition(test_host)
    form = open_editor(admin_client, test_host)
    form["xml"] = form["xml"].replace("<vcpu placement='static'>2</vcpu>", "<vcpu placement='static'>3</vcpu>")
    response = save(admin_client, test_host, form)
    assert response.status_code == 302 and response["Location"] == edit_url(test_host)
    after = definition(test_host)
    assert "<vcpu placement='static'>3</vcpu>" in after
    assert "<vcpu placement='static'>2</vcpu>" in live(test_host)  # running: pending until its next boot
    entry = DomainDefinition.objects.get()
    assert (entry.xml, entry.user, entry.username, entry.reason) == (xmledit.without_secrets(before), admin_user,
                                                                     "root-admin", "edit")
    assert "-  <vcpu placement='static'>2</vcpu>" in entry.diff and "+  <vcpu placement='static'>3</vcpu>" in entry.diff
    event = AuditEvent.objects.get(action="vm.xml.edit")
    assert (event.result, event.object_name) == ("ok", "web-01") and f"history #{entry.pk}" in event.detail
    page = admin_client.get(response["Location"]).content.decode()
    assert "applies at its next boot" in page
    assert "<span class=\"del\">-  &lt;vcpu placement=&#x27;static&#x27;&gt;3&lt;/vcpu&gt;</span>" not in page
    assert "&lt;vcpu placement=&#x27;static&#x27;&gt;3&lt;/vcpu&gt;" in page  # the pending diff


def test_crlf_from_a_browser_and_an_unchanged_save_define_nothing(admin_client: Client, test_host: Host) -> None:
    form = open_editor(admin_client, test_host)
    form["xml"] = form["xml"].replace("\n", "\r\n")
    response = save(admin_client, test_host, form, follow=True)
    assert "Nothing changed" in response.content.decode()
    assert not DomainDefinition.objects.exists()
    assert not AuditEvent.objects.filter(action="vm.xml.edit").exists()  # nothing changed: nothing to audit


def test_vnc_password_survives_an_edit_and_never_reaches_a_page(admin_client: Client, test_host: Host) -> None:
    redefine(test_host, set_password)
    form = open_editor(admin_client, test_host)
    assert SECRET not in str(form)
    form["xml"] = form["xml"].replace("<memory unit='KiB'>1048576</memory>", "<memory unit='KiB'>2097152</memory>")
    assert save(admin_client, test_host, form).status_code == 302
    after = Domain.from_xml(definition(test_host))
    assert after.graphics[0].passwd == SECRET and after.memory == 2 * 1024 * 1024  # KiB
    entry = DomainDefinition.objects.get()
    assert SECRET not in entry.xml and SECRET not in entry.diff  # kept definitions hold no secret
    for url in (edit_url(test_host), history_url(test_host)):
        assert SECRET not in admin_client.get(url).content.decode()
    # A password typed over the mask replaces it; removing the attribute removes it.
    form = open_editor(admin_client, test_host)
    form["xml"] = form["xml"].replace("passwd='********'", "passwd='brand-new-1'")
    assert save(admin_client, test_host, form).status_code == 302
    assert Domain.from_xml(definition(test_host)).graphics[0].passwd == "brand-new-1"
    assert "brand-new-1" not in admin_client.get(history_url(test_host)).content.decode()


@pytest.mark.parametrize("document", [XXE_FILE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_hostile_documents_are_refused_fast_and_libvirt_never_sees_them(admin_client: Client, test_host: Host,
                                                                        document: str, monkeypatch) -> None:
    before = definition(test_host)
    monkeypatch.setattr(xmledit, "define", lambda *a, **k: pytest.fail("libvirt must not see it"))
    form = open_editor(admin_client, test_host)
    start = time.monotonic()
    response = save(admin_client, test_host, {**form, "xml": document})
    assert time.monotonic() - start < FAST
    assert response.status_code == 400
    assert "DOCTYPE is not allowed" in response.content.decode()
    assert definition(test_host) == before and not DomainDefinition.objects.exists()
    assert AuditEvent.objects.get(action="vm.xml.edit").result == "failed"


def test_an_oversized_body_is_413_before_anything_parses_it(admin_client: Client, test_host: Host,
                                                            monkeypatch) -> None:
    before = definition(test_host)
    form = open_editor(admin_client, test_host)
    monkeypatch.setattr(virt.xmledit, "parse_xml", lambda *a, **k: pytest.fail("parsed an oversized body"))
    padding = "<!--" + "x" * (1 << 20) + "-->"
    response = save(admin_client, test_host, {**form, "xml": form["xml"] + padding})
    assert response.status_code == 413 and "larger than 1.0 MiB" in response.content.decode()
    # A body larger than any legitimate form is refused on its Content-Length, CSRF check included.
    huge = save(admin_client, test_host, {**form, "xml": padding, "original": padding * 2})
    assert huge.status_code == 413
    assert definition(test_host) == before
    assert AuditEvent.objects.filter(action="vm.xml.edit", result="failed").count() == 2


def test_a_foreign_uuid_or_name_is_400_with_a_message(admin_client: Client, test_host: Host) -> None:
    before = definition(test_host)
    form = open_editor(admin_client, test_host)
    foreign = save(admin_client, test_host, {**form, "xml": form["xml"].replace(WEB_01_UUID, DB_01_UUID)})
    assert foreign.status_code == 400
    assert "must keep this VM&#x27;s &lt;uuid&gt;11111111-1111-4111-8111-111111111111" in foreign.content.decode()
    assert foreign.context["error_line"] == 3
    renamed = save(admin_client, test_host, {**form, "xml": form["xml"].replace("web-01", "web-99")})
    assert renamed.status_code == 400 and "rename it from the VM" in renamed.content.decode()
    assert definition(test_host) == before and definition(test_host, DB_01_UUID).count(DB_01_UUID) == 1


def test_schema_invalid_xml_shows_libvirts_message_and_the_old_definition_stays(admin_client: Client,
                                                                              test_host: Host) -> None:
    before = definition(test_host)
    form = open_editor(admin_client, test_host)
    broken = form["xml"].replace("<clock offset='utc'/>", "<clock offset='utc'/>\n  <bogus-element/>")
    response = save(admin_client, test_host, {**form, "xml": broken})
    html = response.content.decode()
    assert response.status_code == 400
    assert "libvirt refused the definition" in html and "failed to validate against schema" in html
    assert response.context["error_line"] == broken.split("\n").index("  <bogus-element/>") + 1
    assert 'data-error-line="' in html and response.context["text"] == broken  # the admin's text is kept
    assert definition(test_host) == before and not DomainDefinition.objects.exists()
    assert "failed to validate against schema" in AuditEvent.objects.get(action="vm.xml.edit", result="failed").detail


def test_malformed_xml_marks_its_line(admin_client: Client, test_host: Host) -> None:
    form = open_editor(admin_client, test_host)
    lines = form["xml"].split("\n")
    lines[5] = lines[5].replace("</vcpu>", "</vcpux>")
    response = save(admin_client, test_host, {**form, "xml": "\n".join(lines)})
    assert response.status_code == 400 and response.context["error_line"] == 6
    assert "malformed XML: line 6" in response.content.decode()


def test_a_stale_edit_is_409_with_the_diff_and_nothing_is_saved(admin_client: Client, test_host: Host) -> None:
    form = open_editor(admin_client, test_host)
    redefine(test_host, lambda dom: setattr(dom, "description", "changed by someone else"))
    meanwhile = definition(test_host)
    mine = form["xml"].replace("<vcpu placement='static'>2</vcpu>", "<vcpu placement='static'>4</vcpu>")
    response = save(admin_client, test_host, {**form, "xml": mine})
    html = response.content.decode()
    assert response.status_code == 409
    assert "changed since you opened the editor" in html
    assert '<span class="add">+  &lt;description&gt;changed by someone else&lt;/description&gt;</span>' in html
    assert definition(test_host) == meanwhile and not DomainDefinition.objects.exists()
    # The page now carries the current definition's hash: saving again after reading the diff works.
    assert response.context["text"] == mine
    again = save(admin_client, test_host, {"xml": mine, "base": response.context["base"],
                                           "original": response.context["original"]})
    assert again.status_code == 302 and "<vcpu placement='static'>4</vcpu>" in definition(test_host)


def test_a_change_while_saving_is_caught_under_the_lock(admin_client: Client, test_host: Host,
                                                        monkeypatch) -> None:
    form = open_editor(admin_client, test_host)
    real = xmledit.define

    def racing(dom, xml, expected, lines=None):
        dom.connect().defineXML(expected.replace("<vcpu placement='static'>2", "<vcpu placement='static'>5"))
        return real(dom, xml, expected, lines)

    monkeypatch.setattr(xmledit, "define", racing)
    mine = form["xml"].replace("<vcpu placement='static'>2</vcpu>", "<vcpu placement='static'>3</vcpu>")
    response = save(admin_client, test_host, {**form, "xml": mine})
    assert response.status_code == 409
    assert "<vcpu placement='static'>5</vcpu>" in definition(test_host) and not DomainDefinition.objects.exists()


def test_busy_vm_refuses_the_edit_and_keeps_no_history(admin_client: Client, test_host: Host) -> None:
    before = definition(test_host)
    form = open_editor(admin_client, test_host)
    services.vm_locks.acquire(str(test_host.pk), WEB_01_UUID)
    try:
        response = save(admin_client, test_host, {**form, "xml": form["xml"].replace(">2</vcpu>", ">3</vcpu>")})
    finally:
        services.vm_locks.release(str(test_host.pk), WEB_01_UUID)
    assert response.status_code == 503 and "Another action on this VM" in response.content.decode()
    assert definition(test_host) == before and not DomainDefinition.objects.exists()


def test_no_answer_from_libvirt_keeps_the_previous_definition_marked(admin_client: Client, test_host: Host,
                                                                    monkeypatch) -> None:
    before = definition(test_host)
    form = open_editor(admin_client, test_host)

    def silent(*_: object, **__: object) -> None:
        raise Unreachable("no answer within 30 s")

    monkeypatch.setattr(xmledit, "define", silent)
    response = save(admin_client, test_host, {**form, "xml": form["xml"].replace(">2</vcpu>", ">3</vcpu>")})
    assert response.status_code == 503 and "no answer within 30 s" in response.content.decode()
    entry = DomainDefinition.objects.get()  # whether libvirt took it is unknown: what was there is kept
    assert entry.xml == xmledit.without_secrets(before) and entry.reason == "edit (libvirt did not confirm it)"


def test_rollback_restores_byte_for_byte_and_is_itself_in_the_history(admin_client: Client, test_host: Host) -> None:
    redefine(test_host, set_password)
    original = definition(test_host)
    form = open_editor(admin_client, test_host)
    form["xml"] = form["xml"].replace(">2</vcpu>", ">3</vcpu>").replace("<clock offset='utc'/>",
                                                                        "<clock offset='localtime'/>")
    assert save(admin_client, test_host, form).status_code == 302
    edited = definition(test_host)
    entry = DomainDefinition.objects.get()
    page = admin_client.get(history_url(test_host))
    html = page.content.decode()
    assert f'id="change-{entry.pk}"' in html and "root-admin" in html and SECRET not in html
    assert "+  &lt;clock offset=&#x27;localtime&#x27;/&gt;" in html
    rollback = reverse("instances:xml_rollback", args=[test_host.name, WEB_01_UUID, entry.pk])
    response = admin_client.post(rollback, {"base": page.context["base"]})
    assert response.status_code == 302 and response["Location"] == history_url(test_host)
    assert definition(test_host) == original  # byte for byte, the password (the current one) included
    newest = DomainDefinition.objects.first()
    assert newest.pk != entry.pk and newest.xml == xmledit.without_secrets(edited)
    assert newest.reason == f"rollback to the definition before change #{entry.pk}"
    assert AuditEvent.objects.get(action="vm.xml.rollback").result == "ok"
    # The rollback form of a page opened before that rollback is stale now.
    stale = admin_client.post(rollback, {"base": page.context["base"]})
    assert stale.status_code == 409 and definition(test_host) == original
    assert admin_client.get(rollback).status_code == 405


def test_history_holds_no_secret_and_a_rollback_keeps_the_current_password(admin_client: Client,
                                                                            test_host: Host) -> None:
    redefine(test_host, set_password)
    form = open_editor(admin_client, test_host)
    form["xml"] = form["xml"].replace(">2</vcpu>", ">3</vcpu>")
    assert save(admin_client, test_host, form).status_code == 302
    first = DomainDefinition.objects.get()
    form = open_editor(admin_client, test_host)
    form["xml"] = form["xml"].replace("passwd='********'", "passwd='newer-pass-7'").replace(">3</vcpu>", ">4</vcpu>")
    assert save(admin_client, test_host, form).status_code == 302
    dump = io.StringIO()
    call_command("dumpdata", "instances.DomainDefinition", stdout=dump)
    stored = dump.getvalue()
    assert DomainDefinition.objects.count() == 2 and SECRET not in stored and "newer-pass" not in stored
    page = admin_client.get(history_url(test_host))
    rollback = reverse("instances:xml_rollback", args=[test_host.name, WEB_01_UUID, first.pk])
    assert admin_client.post(rollback, {"base": page.context["base"]}).status_code == 302
    after = Domain.from_xml(definition(test_host))
    assert after.vcpus == 2 and after.graphics[0].passwd == "newer-pass-7"  # the old definition, today's password
    # A VM without a password now gets none back from a definition that had one.
    redefine(test_host, lambda dom: setattr(dom.graphics[0], "passwd", None))
    page = admin_client.get(history_url(test_host))
    assert admin_client.post(rollback, {"base": page.context["base"]}).status_code == 302
    assert Domain.from_xml(definition(test_host)).graphics[0].passwd is None


def test_the_migration_takes_the_secrets_out_of_definitions_kept_before(test_host: Host) -> None:
    from django.apps import apps

    strip_secrets = importlib.import_module("instances.migrations.0003_history_without_secrets").strip_secrets
    redefine(test_host, set_password)
    entry = DomainDefinition.objects.create(host=test_host, vm_uuid=WEB_01_UUID, reason="edit", xml="<domain/>")
    DomainDefinition.objects.filter(pk=entry.pk).update(xml=definition(test_host))  # as an older panel stored it
    strip_secrets(apps, None)
    entry.refresh_from_db()
    assert SECRET not in entry.xml and "<uuid>" in entry.xml


@pytest.mark.parametrize(("xml", "kept"), [
    ("<domain><devices><graphics type='vnc' passwd='s3cret' port='-1'/>"
     "<graphics type='spice' passwd='s3cret'/></devices></domain>",
     '<domain><devices><graphics type="vnc" port="-1"/><graphics type="spice"/></devices></domain>'),
    ("<domain><devices><disk type='network' device='cdrom'><source protocol='https' name='/x.iso'>"
     "<host name='example.org' port='443'/><cookies><cookie name='t'>s3cret</cookie></cookies></source>"
     "<target dev='sdb'/></disk></devices></domain>",
     '<domain><devices><disk type="network" device="cdrom"><source protocol="https" name="/x.iso">'
     '<host name="example.org" port="443"/></source><target dev="sdb"/></disk></devices></domain>'),
], ids=["graphics-passwords", "disk-cookies"])
def test_kept_definitions_lose_every_secret_and_a_rollback_takes_the_current_ones(xml: str, kept: str) -> None:
    assert xmledit.without_secrets(xml) == kept and "s3cret" not in kept
    current = xml.replace("s3cret", "today")
    root = etree.fromstring(kept)
    xmledit.carry_secrets(root, current)
    carried = etree.tostring(root, encoding="unicode")
    assert xmledit.without_secrets(carried) == kept and carried.count("today") == current.count("today") > 0


def test_rollback_of_another_vms_entry_is_404(admin_client: Client, test_host: Host) -> None:
    entry = DomainDefinition.objects.create(host=test_host, vm_uuid=DB_01_UUID, reason="edit",
                                            xml=definition(test_host, DB_01_UUID))
    url = reverse("instances:xml_rollback", args=[test_host.name, WEB_01_UUID, entry.pk])
    assert admin_client.post(url, {"base": "x"}).status_code == 404


def _api_delete(admin_user: Any, uuid: str) -> Any:
    from api.models import ApiToken
    from tests.unit.test_api_access import TokenClient

    return TokenClient(ApiToken.make(admin_user, "deleter")[1]).call(
        "DELETE", f"/api/v1/vms/testhost/{uuid}/?force_off=true")


# (way to delete a VM, the request: (admin client, admin user, UUID) -> response, the status it answers)
DELETES = [
    ("the VM's delete page", lambda client, _user, uuid: client.post(
        reverse("instances:delete", args=["testhost", uuid]), {"force_off": "1"}), 302),
    ("the VM list's bulk delete", lambda client, _user, uuid: client.post(reverse("instances:bulk"), {
        "action": "delete", "vm": f"testhost/{uuid}", "confirm": "yes", "volumes": "keep", "force_off": "1"}), 302),
    ("the API", lambda _client, user, uuid: _api_delete(user, uuid), 200),
]


@pytest.mark.parametrize(("way", "delete", "status"), DELETES, ids=[d[0] for d in DELETES])
def test_deleting_a_vm_after_an_edit_leaves_no_history(admin_client: Client, admin_user, test_host: Host, way: str,
                                                        delete, status: int) -> None:
    """A VM that is gone can be rolled back by nobody: its kept definitions go with it (another VM's stay)."""
    form = open_editor(admin_client, test_host)
    form["xml"] = form["xml"].replace("<vcpu placement='static'>2</vcpu>", "<vcpu placement='static'>3</vcpu>")
    assert save(admin_client, test_host, form).status_code == 302
    assert DomainDefinition.objects.filter(vm_uuid=WEB_01_UUID).count() == 1
    other = DomainDefinition.objects.create(host=test_host, vm_uuid=DB_01_UUID, reason="edit",
                                            xml=definition(test_host, DB_01_UUID))
    response = delete(admin_client, admin_user, WEB_01_UUID)
    assert response.status_code == status, response.content.decode()[:500]
    names = services.call(test_host, lambda conn: [d.name() for d in conn.listAllDomains(0)])
    assert "web-01" not in names  # libvirt: the VM is gone
    assert not DomainDefinition.objects.filter(vm_uuid=WEB_01_UUID).exists()
    assert list(DomainDefinition.objects.all()) == [other]


def test_a_shut_off_vm_says_nothing_is_pending(admin_client: Client, test_host: Host) -> None:
    services.call(test_host, lambda conn: conn.lookupByUUIDString(DB_01_UUID).destroy())
    html = admin_client.get(edit_url(test_host, DB_01_UUID)).content.decode()
    assert 'id="xml-pending"' not in html
    form = open_editor(admin_client, test_host, DB_01_UUID)
    form["xml"] = form["xml"].replace(">4</vcpu>", ">2</vcpu>")
    page = save(admin_client, test_host, form, DB_01_UUID, follow=True).content.decode()
    assert "definition saved" in page and "next boot" not in page


def test_unknown_vm_is_404_for_admins(admin_client: Client, test_host: Host) -> None:
    assert admin_client.get(edit_url(test_host, "99999999-9999-4999-8999-999999999999")).status_code == 404


def test_post_without_csrf_token_is_refused(admin_user, test_host: Host) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    before = definition(test_host)
    form = open_editor(client, test_host)
    form["xml"] = form["xml"].replace(">2</vcpu>", ">3</vcpu>")
    assert client.post(edit_url(test_host), form).status_code == 403
    assert definition(test_host) == before


@pytest.fixture
def all_grants_client(test_host: Host) -> Client:
    user = get_user_model().objects.create_user("bob", "", PASSWORD)
    VMGrant.objects.create(user=user, host=test_host, vm_uuid=WEB_01_UUID, vm_name="web-01", can_console=True,
                           can_power=True, can_change=True, can_delete=True)
    client = Client()
    client.force_login(user)
    return client


def test_only_admins_may_use_the_editor(test_host: Host, all_grants_client: Client, outsider_client: Client,
                                        admin_client: Client) -> None:
    before = definition(test_host)
    form = open_editor(admin_client, test_host)
    entry = DomainDefinition.objects.create(host=test_host, vm_uuid=WEB_01_UUID, reason="edit", xml=before)
    urls = {
        "get": [edit_url(test_host), history_url(test_host)],
        "post": [edit_url(test_host), reverse("instances:xml_rollback", args=[test_host.name, WEB_01_UUID, entry.pk])],
    }
    for client in (all_grants_client, outsider_client):
        for url in urls["get"]:
            assert client.get(url).status_code == 403, url
        for url in urls["post"]:
            assert client.post(url, {**form, "xml": form["xml"].replace(">2<", ">3<")}).status_code == 403, url
        detail = client.get(reverse("instances:detail", args=[test_host.name, WEB_01_UUID]))
        assert edit_url(test_host) not in detail.content.decode()
    anonymous = Client()
    for url in urls["get"] + urls["post"]:
        response = anonymous.post(url, form) if url in urls["post"] else anonymous.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    assert definition(test_host) == before
    # The editor's refusals (the detail page refusing the outsider is audited too, as denied:view).
    denied = AuditEvent.objects.filter(result="denied").exclude(action="denied:view")
    # Each user's identical refusals are counted on one row.
    assert sum(e.repeats for e in denied) == 8 and {e.username for e in denied} == {"bob", "mallory"}


def _broken(text: str, how: str) -> tuple[str, int]:
    """The editor's text broken as `how` says, and the line (1-based) of the user's mistake."""
    lines = text.split("\n")

    def at(start: str) -> int:
        return next(i for i, line in enumerate(lines) if line.lstrip().startswith(start))

    if how == "name left open":  # libxml2 notices only at </domain>, but names the open tag's line
        i = at("<name>")
        lines[i] = lines[i].replace("</name>", "")
    elif how == "os left open":
        i = at("</os>")
        lines[i] = ""
        i = at("<os>")
    elif how == "tag without >":
        i = at("<name>")
        lines[i] = lines[i].replace("<name>", "<name")
    elif how == "bare ampersand":
        i = at("<name>")
        lines[i] = lines[i].replace("web", "w&b")
    elif how == "schema error after a start tag written over two lines":
        # libvirt is sent lxml's serialisation, where the tag takes one line: the line must be the user's
        i = at("<memory")
        lines[i] = lines[i].replace("<memory unit", "<memory\n      unit")
        lines = "\n".join(lines).split("\n")
        i = at("<clock")
        lines.insert(i + 1, "  <bogus-element/>")
        i += 1
    elif how == "schema error after a comment before the root":
        lines.insert(0, "<!-- kept\n  by the editor -->")
        lines = "\n".join(lines).split("\n")
        i = at("<clock")
        lines.insert(i + 1, "  <bogus-element/>")
        i += 1
    return "\n".join(lines), i + 1


@pytest.mark.parametrize("how", [
    "name left open", "os left open", "tag without >", "bare ampersand",
    "schema error after a start tag written over two lines", "schema error after a comment before the root",
])
def test_the_error_line_is_the_line_of_the_users_mistake(admin_client: Client, test_host: Host, how: str) -> None:
    form = open_editor(admin_client, test_host)
    text, line = _broken(form["xml"], how)
    response = save(admin_client, test_host, {**form, "xml": text})
    assert response.status_code == 400
    assert response.context["error_line"] == line, (how, response.context["error"])
    assert f'data-error-line="{line}"' in response.content.decode()


def test_a_rollback_says_which_version_it_restored(admin_client: Client, test_host: Host) -> None:
    from webkvm.formats import when

    form = open_editor(admin_client, test_host)
    edited = form["xml"].replace(">2</vcpu>", ">3</vcpu>")
    assert save(admin_client, test_host, {**form, "xml": edited}).status_code == 302
    entry = DomainDefinition.objects.get()
    page = admin_client.get(history_url(test_host))
    rollback = reverse("instances:xml_rollback", args=[test_host.name, WEB_01_UUID, entry.pk])
    html = admin_client.post(rollback, {"base": page.context["base"]}, follow=True).content.decode()
    assert f"Rolled back to the version of {when(entry.time)}" in html
    assert "definition saved" not in html
    assert ">2</vcpu>" in definition(test_host)
