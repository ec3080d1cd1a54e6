"""Creating and deleting VMs, and flavors, on libvirt's test driver; libvirt is asked afterwards."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from instances.forms_create import CreateVMForm
from instances.models import DomainDefinition, Flavor
from tests.conftest import BASIC_WORLD, PASSWORD, WEB_01_UUID, need
from virt.capabilities import BIOS, UEFI, HostOffer, PoolOffer, _domcaps_facts, host_offer
from virt.create import NIC, DiskSource, NewVM, NewVolume, PoolVolume, build_domain_xml, create_vm, volume_name
from virt.delete import delete_vm, undefine
from virt.errors import InvalidInput, VirtError
from virt.osinfo import DEFAULT_DB, catalogue
from virt.xml import Domain, parse_xml
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db
XSS_UUID = "33333333-3333-4333-8333-333333333333"
CREATE_URL = reverse("instances:create") + "?host=testhost"
FIXTURE_DB = Path(__file__).resolve().parents[1] / "osinfo"

# A valid form post; tests change one value at a time.
GOOD_FORM = {
    "name": "app-01", "os": "", "size": "custom", "vcpus": "2", "memory": "512M", "firmware": "bios", "machine": "",
    "cpu_mode": "host-model", "disk_source": "new", "disk_pool": "images", "disk_size": "2G", "disk_format": "qcow2",
    "existing_volume": "", "iso": "", "nic1_source": "network:lan", "nic1_model": "virtio",
    "nic2_source": "", "nic2_model": "virtio", "nic3_source": "", "nic3_model": "virtio",
}


def world(host: Host) -> tuple[list[str], list[str]]:
    """What libvirt has: domain names and volume names in pool images."""
    def look(conn: libvirt.virConnect) -> tuple[list[str], list[str]]:
        return (sorted(d.name() for d in conn.listAllDomains()),
                sorted(conn.storagePoolLookupByName("images").listVolumes()))
    return services.call(host, look)


def add_volume(host: Host, name: str, size: int = 1 << 20) -> None:
    xml = f"<volume><name>{name}</name><capacity>{size}</capacity></volume>"
    services.call(host, lambda conn: conn.storagePoolLookupByName("images").createXML(xml, 0).name())


def make_vm(host: Host, name: str = "doomed", **changes: Any) -> str:
    spec = NewVM(name=name, vcpus=1, memory_mib=64, disk=NewVolume("images", 64), domain_type="test", **changes)
    return services.call(host, lambda conn: create_vm(conn, spec).UUIDString())


def vm_events(action: str = "vm.create") -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(action=action).order_by("id").values_list("object_name", "result"))


# --- the virt layer -------------------------------------------------------------


def test_offer_of_the_test_driver(test_host: Host) -> None:
    offer = services.call(test_host, host_offer)
    assert offer.domain_type == "test" and offer.arch == "x86_64"
    assert offer.firmwares == (BIOS,)  # getDomainCapabilities is not supported there
    assert offer.cpu_modes == ("host-passthrough", "host-model", "default")
    assert [p.name for p in offer.pools] == ["images"] and offer.pools[0].available_bytes == 100 << 30
    assert offer.networks == ("lan",) and offer.bridges == ()
    assert {"web-01", "db-01"} <= offer.domain_names


def test_domain_capabilities_decide_uefi_and_cpu_modes() -> None:
    domcaps = parse_xml("""<domainCapabilities><vcpu max='288'/>
      <os supported='yes'><enum name='firmware'><value>efi</value></enum></os>
      <cpu><mode name='host-passthrough' supported='yes'/><mode name='maximum' supported='no'/>
           <mode name='host-model' supported='yes'/><mode name='custom' supported='yes'/></cpu>
    </domainCapabilities>""")
    assert _domcaps_facts(domcaps) == ((BIOS, UEFI), ("host-passthrough", "host-model", "default"), 288)
    no_firmware = parse_xml("<domainCapabilities><os supported='yes'><enum name='firmware'/></os></domainCapabilities>")
    assert _domcaps_facts(no_firmware)[0] == (BIOS,)


def test_domain_xml_is_built_from_typed_objects() -> None:
    spec = NewVM(name="web-9", vcpus=2, memory_mib=1024, disk=NewVolume("images", 10), firmware=UEFI,
                 machine="pc-q35-7.2", cpu_mode="host-passthrough", iso=PoolVolume("isos", "d.iso"),
                 nics=(NIC(network="lan"), NIC(bridge="br0", model="e1000e")))
    xml = build_domain_xml(spec, DiskSource("file", path="/img/web-9.qcow2", format="qcow2"),
                           DiskSource("file", path="/iso/d.iso", format="raw"))
    dom = Domain.from_xml(xml)
    assert (dom.type, dom.name, dom.vcpus, dom.memory) == ("kvm", "web-9", 2, 1024 * 1024)
    assert (dom.os.arch, dom.os.machine, dom.os.firmware, dom.cpu_mode) == ("x86_64", "pc-q35-7.2", "efi",
                                                                            "host-passthrough")
    assert dom.os.boot_devices == ["cdrom", "hd"]
    assert [(d.device, d.source_file, d.target_bus, d.readonly) for d in dom.disks] == [
        ("disk", "/img/web-9.qcow2", "virtio", False), ("cdrom", "/iso/d.iso", "sata", True)]
    assert [(i.type, i.source_network or i.source_bridge, i.model) for i in dom.interfaces] == [
        ("network", "lan", "virtio"), ("bridge", "br0", "e1000e")]
    vnc = dom.graphics[0]
    assert (vnc.type, vnc.listen, vnc.autoport) == ("vnc", "127.0.0.1", True)
    assert [s.type for s in dom.serials] == ["pty"] and dom.consoles[0].target_type == "serial"
    agent = dom.guest_agent  # the QEMU guest agent's port; libvirt picks the socket path
    assert agent is not None and (agent.type, agent.target_type, agent.source_path) == ("unix", "virtio", None)


def test_spec_refuses_junk_even_without_the_form() -> None:
    for bad in ("a/b", "<b>x</b>", "", "x" * 64, "-rf"):
        spec = NewVM(name=bad, vcpus=1, memory_mib=64, disk=NewVolume("images", 1))
        assert spec.problems(), bad
    assert NewVM(name="ok", vcpus=0, memory_mib=0, disk=NewVolume("p", 0, "vmdk"), nics=(NIC(),)).problems()


def test_volume_names_never_reuse_an_existing_one() -> None:
    assert volume_name(set(), "vm", "qcow2") == "vm.qcow2"
    assert volume_name({"vm.img", "vm-2.img"}, "vm", "raw") == "vm-3.img"


def test_create_vm_defines_without_starting(test_host: Host) -> None:
    uuid = make_vm(test_host, "fresh")
    state, volumes = services.call(test_host, lambda conn: (conn.lookupByUUIDString(uuid).isActive(),
                                                            conn.storagePoolLookupByName("images").listVolumes()))
    assert not state and volumes == ["fresh.qcow2"]


def test_create_vm_refuses_an_existing_name_before_making_anything(test_host: Host) -> None:
    before = world(test_host)
    with pytest.raises(InvalidInput, match="already exists"):
        make_vm(test_host, "web-01")
    assert world(test_host) == before


def test_failed_define_removes_the_new_volume(test_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    before = world(test_host)

    def refuse(self: libvirt.virConnect, xml: str, flags: int = 0) -> None:
        raise libvirt.libvirtError("XML error: refused by this test")

    monkeypatch.setattr(libvirt.virConnect, "defineXMLFlags", refuse)
    with pytest.raises(VirtError, match="refused by this test"):
        make_vm(test_host, "half-made")
    assert world(test_host) == before


def test_failed_start_removes_definition_and_volume(test_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    before = world(test_host)

    def refuse(self: libvirt.virDomain, flags: int = 0) -> None:
        raise libvirt.libvirtError("not enough memory (this test)")

    monkeypatch.setattr(libvirt.virDomain, "create", refuse)
    spec = NewVM(name="no-start", vcpus=1, memory_mib=64, disk=NewVolume("images", 8), domain_type="test")
    with pytest.raises(VirtError, match="not enough memory"):
        services.call(test_host, lambda conn: create_vm(conn, spec, start=True))
    assert world(test_host) == before


def test_undefine_falls_back_to_the_flags_the_driver_knows(test_host: Host) -> None:
    uuid = make_vm(test_host, "plain")
    services.call(test_host, lambda conn: undefine(conn.lookupByUUIDString(uuid)))  # test driver refuses NVRAM
    assert "plain" not in world(test_host)[0]


def test_delete_vm_only_deletes_volumes_of_that_vm(test_host: Host) -> None:
    add_volume(test_host, "precious.img")
    uuid = make_vm(test_host, "victim")
    with pytest.raises(InvalidInput, match="not disks of this VM"):
        services.call(test_host, lambda conn: delete_vm(conn.lookupByUUIDString(uuid),
                                                        ["/var/lib/libvirt/images/precious.img"]))
    assert world(test_host) == (["<img src=x onerror=alert(1)>", "db-01", "victim", "web-01"],
                                ["precious.img", "victim.qcow2"])


# --- the create page ------------------------------------------------------------


def test_the_only_host_is_preselected(admin_client: Client, test_host: Host) -> None:
    response = admin_client.get(reverse("instances:create"))
    form = response.context["form"]
    assert response.status_code == 200 and form["host"].value() == "testhost"
    assert [c[0] for c in form.fields["host"].choices] == ["testhost"]
    assert form["start"].value() is True  # started when created, unless unticked


def test_several_hosts_are_a_choice_that_rereads_the_form(admin_client: Client, test_host: Host,
                                                          tmp_path: Path) -> None:
    """Another host's choices come with a "refresh" post, which creates nothing and keeps what was typed."""
    world_path = tmp_path / "bridged.xml"
    world_path.write_text(BASIC_WORLD.read_text().replace("<pool", "<network><name>other-net</name>"
                                                          "<bridge name='virbr7'/></network><pool"))
    Host.objects.create(name="second", transport="test", path=str(world_path))
    form = admin_client.get(reverse("instances:create")).context["form"]
    assert [c[0] for c in form.fields["host"].choices] == ["second", "testhost"]
    before = world(test_host)
    response = admin_client.post(CREATE_URL, {**GOOD_FORM, "host": "second", "refresh": "1"})
    form = response.context["form"]
    assert response.status_code == 200 and form["host"].value() == "second" and form["name"].value() == "app-01"
    assert [c[0] for c in form.fields["nic1_source"].choices] == ["", "network:lan", "network:other-net"]
    assert form["start"].value() is False  # not ticked in the post
    assert world(test_host) == before and vm_events() == []


def test_bridges_of_libvirt_networks_are_not_offered(admin_client: Client, test_host: Host, tmp_path: Path) -> None:
    world_path = tmp_path / "bridges.xml"
    world_path.write_text(BASIC_WORLD.read_text().replace("</node>", """
      <interface type="bridge" name="br0"><start mode="onboot"/><bridge stp="off"/></interface>
      <interface type="bridge" name="virbr9"><start mode="onboot"/><bridge stp="off"/></interface></node>"""))
    Host.objects.create(name="bridged", transport="test", path=str(world_path))
    form = admin_client.get(reverse("instances:create") + "?host=bridged").context["form"]
    # virbr9 is the bridge of network lan: a NIC joins it as "network lan"
    assert [c[0] for c in form.fields["nic1_source"].choices] == ["", "network:lan", "bridge:br0"]


def test_form_offers_only_what_the_host_has(admin_client: Client, test_host: Host) -> None:
    add_volume(test_host, "debian-12.iso")
    response = admin_client.get(CREATE_URL)
    assert response.status_code == 200
    form = response.context["form"]
    assert [c[0] for c in form.fields["firmware"].choices] == ["bios"]
    assert [c[0] for c in form.fields["nic1_source"].choices] == ["", "network:lan"]
    assert [c[0] for c in form.fields["iso"].choices] == ["", "images/debian-12.iso"]
    assert form["nic1_source"].value() == "network:lan"  # one NIC on the first network by default
    assert [c[0] for c in form.fields["existing_volume"].choices] == [""]  # an ISO is never a boot disk


def test_create_then_land_on_the_detail_page(admin_client: Client, test_host: Host) -> None:
    add_volume(test_host, "debian-12.iso")
    response = admin_client.post(CREATE_URL, {**GOOD_FORM, "iso": "images/debian-12.iso", "start": "on"})
    assert response.status_code == 302, response.context and response.context["form"].errors
    uuid = response["Location"].rstrip("/").split("/")[-1]
    assert response["Location"] == reverse("instances:detail", args=["testhost", uuid])

    def facts(conn: libvirt.virConnect) -> tuple[bool, Domain]:
        dom = conn.lookupByUUIDString(uuid)
        return bool(dom.isActive()), Domain.from_xml(dom.XMLDesc(0))

    running, dom = services.call(test_host, facts)
    assert running and dom.name == "app-01" and dom.memory == 512 * 1024 and dom.vcpus == 2
    assert [d.source_file for d in dom.disks] == ["/var/lib/libvirt/images/app-01.qcow2",
                                                  "/var/lib/libvirt/images/debian-12.iso"]
    assert [i.source_network for i in dom.interfaces] == ["lan"]
    assert vm_events() == [("app-01", "ok")]


def test_create_from_an_existing_volume(admin_client: Client, test_host: Host) -> None:
    add_volume(test_host, "golden.img", 1 << 30)
    data = {**GOOD_FORM, "disk_source": "existing", "existing_volume": "images/golden.img", "disk_pool": "",
            "disk_size": "", "nic1_source": ""}
    assert admin_client.post(CREATE_URL, data).status_code == 302
    assert world(test_host)[1] == ["golden.img"]  # no new volume
    xml = services.call(test_host, lambda conn: conn.lookupByName("app-01").XMLDesc(0))
    assert Domain.from_xml(xml).disks[0].source_file == "/var/lib/libvirt/images/golden.img"


def test_allocating_the_whole_disk_is_offered_for_a_new_volume_only(admin_client: Client, test_host: Host) -> None:
    """The checkbox sits with the boot disk; with an existing volume it changes nothing (no job, no new volume)."""
    form = admin_client.get(CREATE_URL).context["form"]
    assert "disk_allocate" in [field.name for field in form.advanced()]
    add_volume(test_host, "golden.img", 1 << 30)
    data = {**GOOD_FORM, "disk_source": "existing", "existing_volume": "images/golden.img", "disk_allocate": "on"}
    response = admin_client.post(CREATE_URL, data)
    assert response.status_code == 302 and response["Location"].startswith("/instances/testhost/")
    assert world(test_host)[1] == ["golden.img"] and vm_events() == [("app-01", "ok")]


BAD_INPUT = [
    ("name", {"name": "web-01"}),  # duplicate
    ("name", {"name": "a/b"}),
    ("name", {"name": "<b>x</b>"}),
    ("name", {"name": "<img src=x onerror=alert(1)>"}),
    ("name", {"name": "../../etc/passwd"}),
    ("name", {"name": "x" * 5000}),
    ("name", {"name": ""}),
    ("memory", {"memory": "0"}),
    ("memory", {"memory": "8M"}),  # below the smallest VM
    ("memory", {"memory": "17G"}),  # the host has 16 GiB
    ("memory", {"memory": "99999999999999999999999"}),
    ("memory", {"memory": "-5"}),
    ("memory", {"memory": "lots"}),
    ("memory", {"memory": "2 parsecs"}),
    ("memory", {"memory": ""}),
    ("vcpus", {"vcpus": "0"}),
    ("vcpus", {"vcpus": "many"}),
    ("vcpus", {"vcpus": ""}),
    ("disk_size", {"disk_size": "200G"}),  # the pool has 100 GiB free
    ("disk_size", {"disk_size": "-1"}),
    ("disk_size", {"disk_size": "10Q"}),
    ("disk_size", {"disk_size": ""}),
    ("size", {"size": "flavor:999"}),
    ("size", {"size": "huge"}),
    ("os", {"os": "http://nowhere.test/os/1"}),
    ("os", {"os": "<script>"}),
    ("machine", {"machine": "isapc"}),  # special purpose, and not asked for
    ("virt_type", {"virt_type": "kvm"}),  # the test driver offers its own type only
    ("disk_bus", {"disk_bus": "ide"}),
    ("disk_source", {"disk_source": "floppy"}),
    ("disk_pool", {"disk_pool": "nowhere"}),
    ("disk_pool", {"disk_pool": "../images"}),
    ("nic1_source", {"nic1_source": "network:nonet"}),
    ("nic1_source", {"nic1_source": "bridge:br0"}),  # the test driver has no bridges
    ("nic2_model", {"nic2_source": "network:lan", "nic2_model": "<script>"}),
    ("firmware", {"firmware": "efi"}),  # not offered by this host
    ("machine", {"machine": "pc'/><qemu:commandline"}),
    ("cpu_mode", {"cpu_mode": "custom"}),
    ("disk_format", {"disk_format": "vmdk"}),
    ("existing_volume", {"disk_source": "existing", "existing_volume": ""}),
    ("existing_volume", {"disk_source": "existing", "existing_volume": "images/../../etc/shadow"}),
    ("host", {"host": "<b>"}),
    ("iso", {"iso": "images/nothere.iso"}),
]


@pytest.mark.parametrize(("field", "change"), BAD_INPUT, ids=[f"{f}={list(c.values())[-1][:20]}" for f, c in BAD_INPUT])
def test_bad_input_is_a_field_error_and_creates_nothing(admin_client: Client, test_host: Host, field: str,
                                                        change: dict[str, str]) -> None:
    before = world(test_host)
    response = admin_client.post(CREATE_URL, {**GOOD_FORM, **change})
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert 'class="field-error"' in response.content.decode()
    assert world(test_host) == before
    assert vm_events() == []


def test_empty_post_is_field_errors_not_a_500(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post(CREATE_URL, {})
    assert response.status_code == 200 and {"name", "size", "disk_source"} <= set(response.context["form"].errors)


def test_markup_in_a_name_is_shown_escaped(admin_client: Client, test_host: Host) -> None:
    page = admin_client.post(CREATE_URL, {**GOOD_FORM, "name": "<img src=x onerror=alert(1)>"}).content.decode()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_failure_half_way_is_shown_in_words_and_leaves_nothing(admin_client: Client, test_host: Host,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = world(test_host)

    def refuse(self: libvirt.virConnect, xml: str, flags: int = 0) -> None:
        raise libvirt.libvirtError("XML error: refused by this test")

    monkeypatch.setattr(libvirt.virConnect, "defineXMLFlags", refuse)
    response = admin_client.post(CREATE_URL, GOOD_FORM)
    assert response.status_code == 200
    assert "did not create the VM: XML error: refused by this test" in response.content.decode()
    assert world(test_host) == before
    assert vm_events() == [("app-01", "failed")]


def test_an_unreachable_host_is_a_message_not_a_500(admin_client: Client, test_host: Host) -> None:
    Host.objects.create(name="dead", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    response = admin_client.get(reverse("instances:create") + "?host=dead")
    assert response.status_code == 503 and "connection refused" in response.content.decode()
    response = admin_client.post(reverse("instances:create") + "?host=dead", GOOD_FORM)
    assert response.status_code == 503 and vm_events() == [("app-01", "failed")]
    assert admin_client.get(reverse("instances:create") + "?host=nope").status_code == 404


# --- flavors --------------------------------------------------------------------


def test_flavor_crud_is_audited(admin_client: Client) -> None:
    form = {"name": "m1.small", "vcpus": "1", "memory_mib": "2048", "disk_gib": "20", "description": "small"}
    assert admin_client.post(reverse("instances:flavor_create"), form).status_code == 302
    flavor = Flavor.objects.get(name="m1.small")
    edit = reverse("instances:flavor_edit", args=[flavor.pk])
    assert admin_client.post(edit, {**form, "vcpus": "2"}).status_code == 302
    flavor.refresh_from_db()
    assert flavor.vcpus == 2
    assert "m1.small" in admin_client.get(reverse("instances:flavors")).content.decode()
    assert admin_client.get(reverse("instances:flavor_delete", args=[flavor.pk])).status_code == 200
    assert admin_client.post(reverse("instances:flavor_delete", args=[flavor.pk])).status_code == 302
    assert not Flavor.objects.exists()
    assert list(AuditEvent.objects.filter(action__startswith="flavor.").order_by("id")
                .values_list("action", flat=True)) == [
        "flavor.create", "flavor.update", "flavor.delete"]


BAD_FLAVORS = [{"name": "<b>x</b>"}, {"vcpus": "0"}, {"memory_mib": "0"}, {"memory_mib": str(10**12)},
               {"disk_gib": "0"}, {"name": ""}]


@pytest.mark.parametrize("change", BAD_FLAVORS)
def test_bad_flavors_are_field_errors(admin_client: Client, change: dict[str, str]) -> None:
    form = {"name": "m1.tiny", "vcpus": "1", "memory_mib": "512", "disk_gib": "1", **change}
    response = admin_client.post(reverse("instances:flavor_create"), form)
    assert response.status_code == 200 and set(change) <= set(response.context["form"].errors)
    assert not Flavor.objects.exists()


def test_create_from_a_flavor_in_two_clicks(admin_client: Client, test_host: Host) -> None:
    flavor = Flavor.objects.create(name="m1.medium", vcpus=4, memory_mib=4096, disk_gib=40)
    listing = admin_client.get(reverse("instances:flavors")).content.decode()
    link = f"{reverse('instances:create')}?flavor={flavor.pk}"
    assert link in listing
    form_page = admin_client.get(link, follow=True)  # one host: straight to its form
    form = form_page.context["form"]
    assert form["size"].value() == f"flavor:{flavor.pk}"
    response = admin_client.post(f"{CREATE_URL}&flavor={flavor.pk}", {**GOOD_FORM, "size": f"flavor:{flavor.pk}"})
    assert response.status_code == 302
    xml = Domain.from_xml(services.call(test_host, lambda conn: conn.lookupByName("app-01").XMLDesc(0)))
    assert (xml.vcpus, xml.memory) == (4, 4096 * 1024)
    assert services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").storageVolLookupByName(
        "app-01.qcow2").info()[1]) == 40 << 30
    # Junk flavor ids pre-fill nothing and never fail.
    for junk in ("abc", "999", "-1", "1e3"):
        assert admin_client.get(f"{CREATE_URL}&flavor={junk}").status_code == 200


# --- delete ---------------------------------------------------------------------


def test_confirmation_lists_the_volumes(admin_client: Client, test_host: Host) -> None:
    add_volume(test_host, "installer.iso")
    uuid = make_vm(test_host, "listed", iso=PoolVolume("images", "installer.iso"))
    page = admin_client.get(reverse("instances:delete", args=["testhost", uuid]))
    html = page.content.decode()
    assert page.status_code == 200
    assert [v.name for v in page.context["deletable"]] == ["listed.qcow2"]
    assert [v.name for v in page.context["kept"]] == ["installer.iso"]  # CD-ROM images are never offered
    assert 'value="/var/lib/libvirt/images/listed.qcow2"' in html and "force_off" not in html


def test_delete_with_its_volume(admin_client: Client, test_host: Host) -> None:
    uuid = make_vm(test_host, "gone")
    grantee = VMGrant.objects.create(user=_user("bob"), host=test_host, vm_uuid=uuid, can_delete=True)
    for vm in (uuid, WEB_01_UUID):  # the XML editor's history of the VM goes with it, another VM's stays
        DomainDefinition.objects.create(host=test_host, vm_uuid=vm, reason="edit", xml="<domain/>")
    response = admin_client.post(reverse("instances:delete", args=["testhost", uuid]),
                                 {"volume": "/var/lib/libvirt/images/gone.qcow2"})
    assert response.status_code == 302 and response["Location"] == reverse("instances:host", args=["testhost"])
    assert world(test_host) == (["<img src=x onerror=alert(1)>", "db-01", "web-01"], [])
    assert vm_events("vm.delete") == [("gone", "ok")]
    assert not VMGrant.objects.filter(pk=grantee.pk).exists()
    assert [str(d.vm_uuid) for d in DomainDefinition.objects.all()] == [WEB_01_UUID]


def test_delete_keeping_the_volume(admin_client: Client, test_host: Host) -> None:
    uuid = make_vm(test_host, "kept")
    assert admin_client.post(reverse("instances:delete", args=["testhost", uuid])).status_code == 302
    assert world(test_host)[1] == ["kept.qcow2"]
    assert "kept" not in world(test_host)[0]


def test_a_running_vm_is_refused_unless_forced_off(admin_client: Client, test_host: Host) -> None:
    url = reverse("instances:delete", args=["testhost", WEB_01_UUID])
    assert 'name="force_off"' in admin_client.get(url).content.decode()
    refused = admin_client.post(url, follow=True)
    assert "web-01 is running" in refused.content.decode()
    assert "web-01" in world(test_host)[0]
    assert vm_events("vm.delete") == [(WEB_01_UUID, "failed")]
    assert admin_client.post(url, {"force_off": "1"}).status_code == 302
    assert "web-01" not in world(test_host)[0]
    assert vm_events("vm.delete")[-1] == ("web-01", "ok")


def test_a_foreign_volume_key_deletes_nothing(admin_client: Client, test_host: Host) -> None:
    add_volume(test_host, "other.img")
    uuid = make_vm(test_host, "mine")
    before = world(test_host)
    response = admin_client.post(reverse("instances:delete", args=["testhost", uuid]),
                                 {"volume": "/var/lib/libvirt/images/other.img"}, follow=True)
    assert "not disks of this VM" in response.content.decode()
    assert world(test_host) == before


def test_delete_while_another_action_runs_is_busy(admin_client: Client, test_host: Host) -> None:
    uuid = make_vm(test_host, "locked")
    services.vm_locks.acquire(str(test_host.pk), uuid)
    try:
        response = admin_client.post(reverse("instances:delete", args=["testhost", uuid]), follow=True)
    finally:
        services.vm_locks.release(str(test_host.pk), uuid)
    assert response.status_code == 200
    assert "not deleted: Another action on this VM is still running" in response.content.decode()
    assert "locked" in world(test_host)[0]
    assert vm_events("vm.delete") == [(uuid, "failed")]


def test_delete_page_escapes_the_vm_name(admin_client: Client, test_host: Host) -> None:
    html = admin_client.get(reverse("instances:delete", args=["testhost", XSS_UUID])).content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html


def test_unknown_vm_is_404(admin_client: Client, test_host: Host) -> None:
    url = reverse("instances:delete", args=["testhost", "99999999-9999-4999-8999-999999999999"])
    assert admin_client.get(url).status_code == 404
    assert admin_client.post(url).status_code == 404


# --- permissions ----------------------------------------------------------------


def _user(name: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(name, "", PASSWORD)


def test_delete_needs_the_delete_grant(personas: dict[str, Client], test_host: Host, granted_user: Any) -> None:
    url = reverse("instances:delete", args=["testhost", WEB_01_UUID])
    # granted_user may view, use the console and power web-01, but not delete it.
    for persona in ("user", "outsider"):
        assert personas[persona].get(url).status_code == 403
        assert personas[persona].post(url, {"force_off": "1"}).status_code == 403
    assert personas["anonymous"].post(url).status_code == 302
    assert "web-01" in world(test_host)[0]
    VMGrant.objects.filter(user=granted_user).update(can_delete=True)
    assert personas["user"].get(url).status_code == 200
    assert personas["user"].post(url, {"force_off": "1"}).status_code == 302
    assert "web-01" not in world(test_host)[0]


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_are_405(admin_client: Client, test_host: Host, method: str) -> None:
    assert getattr(admin_client, method)(CREATE_URL).status_code == 405
    assert getattr(admin_client, method)(reverse("instances:delete", args=["testhost", WEB_01_UUID])).status_code == 405
    assert getattr(admin_client, method)(reverse("instances:flavors")).status_code == 405
    assert "web-01" in world(test_host)[0]


# --- the guided form: operating system, machine types, virtualization ----------


def _offered(virtio: bool) -> str:
    """An operating system of the installed database with (or without) virtio drivers."""
    need((DEFAULT_DB / "os").is_dir(), "osinfo-db is not installed (apt-get install osinfo-db)")
    return next(e.id for e in catalogue().offered(date.today()) if e.virtio_disk == virtio == e.virtio_net
                and not e.efi_only)


@pytest.mark.parametrize(("virtio", "bus", "model"), [(True, "virtio", "virtio"), (False, "sata", "e1000")])
def test_the_os_decides_the_devices_and_sizes(admin_client: Client, test_host: Host, virtio: bool, bus: str,
                                              model: str) -> None:
    add_volume(test_host, "installer.iso")
    os_id = _offered(virtio)
    entry = catalogue().entries[os_id]
    form = admin_client.get(CREATE_URL).context["form"]
    assert os_id in [value for _, group in form.fields["os"].choices[1:] for value, _ in group]
    data = {**GOOD_FORM, "os": os_id, "size": "recommended", "nic1_model": "", "iso": "images/installer.iso",
            "vcpus": "", "memory": "", "disk_size": ""}  # no script filled them: the server applies the OS's sizes
    assert admin_client.post(CREATE_URL, data).status_code == 302
    xml = Domain.from_xml(services.call(test_host, lambda conn: conn.lookupByName("app-01").XMLDesc(0)))
    assert [(d.device, d.target_bus) for d in xml.disks] == [("disk", bus), ("cdrom", "ide")]
    assert [i.model for i in xml.interfaces] == [model]
    assert (xml.vcpus, xml.memory) == (entry.vcpus, entry.memory_mib * 1024)
    capacity = services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").storageVolLookupByName(
        "app-01.qcow2").info()[1])
    assert capacity == entry.disk_gib << 30


def test_a_diskless_vm_boots_from_the_network(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post(CREATE_URL, {**GOOD_FORM, "disk_source": "none", "disk_size": "", "start": "on"})
    assert response.status_code == 302
    xml = Domain.from_xml(services.call(test_host, lambda conn: conn.lookupByName("app-01").XMLDesc(0)))
    assert list(xml.disks) == []
    assert xml.os.boot_devices == ["network"] and world(test_host)[1] == []


def _offer(**changes: Any) -> HostOffer:
    values: dict[str, Any] = dict(
        domain_type="kvm", domain_types=("kvm", "qemu"), firmwares=(BIOS, UEFI),
        cpu_modes=("host-passthrough", "host-model", "default"), max_vcpus=8, memory_mib=4096,
        pools=(PoolOffer("images", True, 50 << 30, ("disk.qcow2", "debian.iso")),), networks=("default",),
        bridges=(), machines=("pc", "q35", "pc-i440fx-7.2", "pc-i440fx-2.0", "pc-q35-7.2"),
        special_machines=("isapc", "microvm", "x-remote"), default_machine="pc-i440fx-7.2",
        machine_aliases=(("pc", "pc-i440fx-7.2"), ("q35", "pc-q35-7.2")))
    return HostOffer(**{**values, **changes})


def _form(data: dict[str, str] | None = None, **changes: Any) -> CreateVMForm:
    return CreateVMForm(_offer(**changes), data, catalogue=catalogue(FIXTURE_DB), hosts=["kvm-01"],
                        today=date(2026, 12, 5))


def _values(field: Any) -> list[str]:
    return [v for v, label in field.choices
            for v in ([x for x, _ in label] if isinstance(label, (tuple, list)) else [v])]


def test_machine_types_current_first_others_only_when_asked() -> None:
    assert _values(_form().fields["machine"]) == ["", "pc", "q35", "pc-q35-7.2"]
    asked = _form({"all_machines": "on"}).fields["machine"]
    assert _values(asked) == ["", "pc", "q35", "pc-q35-7.2", "pc-i440fx-2.0", "isapc", "microvm", "x-remote"]
    assert "pc-i440fx-7.2" in asked.choices[0][1]  # the default says what it is


FORM_DATA = {"name": "vm1", "os": "", "host": "kvm-01", "size": "custom", "vcpus": "1", "memory": "1G",
             "disk_size": "1G", "disk_source": "new", "disk_pool": "images", "disk_format": "qcow2",
             "firmware": "bios", "cpu_mode": "default", "virt_type": "kvm", "machine": ""}


@pytest.mark.parametrize(("field", "change"), [
    ("machine", {"machine": "microvm"}),  # special: only when asked
    ("machine", {"machine": "pc-i440fx-2.0"}),  # older: only when asked
    ("cpu_mode", {"virt_type": "qemu", "cpu_mode": "host-passthrough"}),
    ("firmware", {"os": "http://acme.test/gate/11"}),  # UEFI only
    ("existing_volume", {"disk_source": "existing", "existing_volume": "images/debian.iso"}),
    ("size", {"size": "recommended", "os": "http://acme.test/gate/11", "firmware": "efi",
              "disk_pool": "images"}),  # recommends 4 GiB: fine; see the next case for a host that lacks it
])
def test_guided_form_refusals(field: str, change: dict[str, str]) -> None:
    form = _form({**FORM_DATA, **change}, memory_mib=4095 if field == "size" else 4096)
    assert not form.is_valid() and field in form.errors, form.errors


def test_full_emulation_is_a_visible_choice_and_reaches_the_definition() -> None:
    form = _form({**FORM_DATA, "virt_type": "qemu", "machine": "q35", "os": "http://example.org/penguin/3",
                  "nic1_source": "network:default"})
    assert not form.hides_virt_type and "virt_type" in [f.name for f in form.steps()[5][1]]
    assert form.is_valid(), form.errors
    spec = form.to_spec()
    assert (spec.domain_type, spec.machine, spec.disk_bus, [n.model for n in spec.nics]) == (
        "qemu", "q35", "virtio", ["e1000e"])  # penguin 3 took virtio-net back: e1000e on q35
    assert _form(domain_types=("kvm",)).hides_virt_type
    assert "GRUB" in str(form.fields["virt_type"].help_text)
    default = _form({**FORM_DATA})
    assert default.is_valid() and default.to_spec().machine == "pc-i440fx-7.2"  # the default, named
