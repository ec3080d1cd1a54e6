"""What an admin opens of a host to users (networks, bridges, pools, ISO libraries), and the rules for
users who are not admins on a VM's disk, NIC and VNC pages (tests/tenants.py describes the world).
The test driver cannot attach or update devices: those calls are recorded (tests/unit/test_vm_devices.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from tests.conftest import WEB_01_UUID
from tests.tenants import LIBRARY_ISO, furnish, private_named
from tests.unit import test_vm_devices
from tests.unit.test_vm_devices import BOX_UUID, GOOD_ATTACH, GOOD_NIC, Recorder, define_box, messages_of, url, xml_of
from virt.xml import Disk, Domain, Interface
from webkvm.models import AuditEvent, SharedResource, VMGrant

pytestmark = pytest.mark.django_db
recorded = test_vm_devices.recorded  # the fixture: device calls the test driver lacks, recorded


@pytest.fixture
def tenant(user_client: Client, granted_user: Any, test_host: Host) -> Client:
    """The granted user with every grant on web-01 and the change grant on box (a VM with a CD-ROM drive and a NIC)."""
    furnish(test_host)
    define_box(test_host)
    VMGrant.objects.filter(user=granted_user).update(can_change=True, can_delete=True)
    VMGrant.objects.create(user=granted_user, host=test_host, vm_uuid=BOX_UUID, vm_name="box", can_change=True)
    return user_client


# ---- the admin side ------------------------------------------------------------------------


def test_an_admin_opens_and_closes_what_users_may_use(admin_client: Client, test_host: Host) -> None:
    share = reverse("hosts:share", args=["testhost"])
    for kind, name in (("network", "lan"), ("pool", "images"), ("iso_library", "images")):
        assert admin_client.post(share, {"kind": kind, "name": name}).status_code == 302
    detail = admin_client.get(reverse("hosts:detail", args=["testhost"])).content.decode()
    assert 'id="shared"' in detail
    for kind, name in (("network", "lan"), ("pool", "images"), ("iso_library", "images")):
        assert f'data-kind="{kind}" data-name="{name}"' in detail
    assert sorted(SharedResource.objects.values_list("kind", "name")) == [
        ("iso_library", "images"), ("network", "lan"), ("pool", "images")]
    opened = SharedResource.objects.get(kind="network")
    assert admin_client.post(reverse("hosts:unshare", args=["testhost", opened.pk])).status_code == 302
    assert not SharedResource.objects.filter(kind="network").exists()
    assert list(AuditEvent.objects.filter(action__startswith="host.").order_by("id")
                .values_list("action", "object_name", "result")) == [
        ("host.share", "network lan", "ok"), ("host.share", "pool images", "ok"),
        ("host.share", "iso_library images", "ok"), ("host.unshare", "network lan", "ok")]


@pytest.mark.parametrize(("kind", "name"), [("network", "nope"), ("pool", "lan"), ("iso_library", "nope"),
                                            ("bridge", "br0"), ("network", ""), ("magic", "lan"),
                                            ("network", "x" * 300)])
def test_a_name_the_host_lacks_is_a_field_error(admin_client: Client, test_host: Host, kind: str,
                                                name: str) -> None:
    response = admin_client.post(reverse("hosts:share", args=["testhost"]), {"kind": kind, "name": name})
    assert response.status_code == 200 and 'class="field-error"' in response.content.decode()
    assert set(response.context["form"].errors) <= {"kind", "name"} and response.context["form"].errors
    assert not SharedResource.objects.exists() and not AuditEvent.objects.filter(action="host.share").exists()


# ---- disks and CD-ROMs ---------------------------------------------------------------------


def test_users_choose_only_open_pools_and_library_isos(tenant: Client, admin_client: Client) -> None:
    page = tenant.get(url("disks", BOX_UUID))
    assert page.status_code == 200
    assert [c[0] for c in page.context["attach"].fields["pool"].choices] == ["images"]
    assert "volume" not in page.context["attach"].fields  # no list of the host's volumes
    assert [c[0] for c in page.context["insert"].fields["iso"].choices] == [f"isos/{LIBRARY_ISO}"]
    assert private_named(page.content.decode()) == []
    # Admins keep every pool, volume and ISO of the host.
    admin = admin_client.get(url("disks", BOX_UUID))
    assert {c[0] for c in admin.context["insert"].fields["iso"].choices} >= {"images/payroll.iso",
                                                                             "vault/vault-installer.iso"}
    assert "vault" in {c[0] for c in admin.context["attach"].fields["pool"].choices}


@pytest.mark.parametrize(("name", "data", "field"), [
    ("disk_attach", {**GOOD_ATTACH, "pool": "vault"}, "pool"),
    ("disk_attach", {**GOOD_ATTACH, "pool": "isos"}, "pool"),
    ("disk_attach", {**GOOD_ATTACH, "source": "existing", "volume": "vault/vault-disk.qcow2"}, "source"),
    ("cdrom_add", {"iso": "images/payroll.iso"}, "iso"),
    ("cdrom_add", {"iso": "vault/vault-installer.iso"}, "iso"),
])
def test_users_reach_no_closed_pool_or_volume(tenant: Client, test_host: Host, recorded: dict[str, Recorder],
                                              name: str, data: dict[str, str], field: str) -> None:
    services.call(test_host, lambda conn: conn.lookupByUUIDString(BOX_UUID).destroy())
    before = xml_of(test_host, BOX_UUID)
    response = tenant.post(url(name, BOX_UUID), data)
    form = response.context["attach" if name == "disk_attach" else "add_cdrom"]
    assert response.status_code == 200 and field in form.errors, form.errors
    assert not any(r.calls for r in recorded.values()) and xml_of(test_host, BOX_UUID) == before


@pytest.mark.parametrize("iso", ["images/payroll.iso", "vault/vault-installer.iso"])
def test_users_insert_only_library_isos(tenant: Client, recorded: dict[str, Recorder], iso: str) -> None:
    page = messages_of(tenant, tenant.post(url("cdrom_insert", BOX_UUID), {"target": "hdc", "iso": iso}))
    assert "ISO image:" in page and not recorded["updateDeviceFlags"].calls


def test_a_library_iso_goes_in_read_only(tenant: Client, recorded: dict[str, Recorder]) -> None:
    page = messages_of(tenant, tenant.post(url("cdrom_insert", BOX_UUID), {"target": "hdc",
                                                                            "iso": f"isos/{LIBRARY_ISO}"}))
    assert f"isos/{LIBRARY_ISO} inserted in hdc." in page
    drives = [Disk.from_xml(xml) for xml, _ in recorded["updateDeviceFlags"].calls]
    assert drives and all(d.readonly and d.source_file == f"/var/lib/libvirt/isos/{LIBRARY_ISO}" for d in drives)


def test_users_make_volumes_in_open_pools(tenant: Client, recorded: dict[str, Recorder]) -> None:
    page = messages_of(tenant, tenant.post(url("disk_attach"), {**GOOD_ATTACH, "volume_name": "mine.qcow2"}))
    assert "new volume images/mine.qcow2 attached as vda (virtio)." in page
    assert recorded["attachDeviceFlags"].calls


# ---- NICs ----------------------------------------------------------------------------------


def test_users_attach_nics_only_to_open_networks_with_generated_macs(tenant: Client, test_host: Host,
                                                                     recorded: dict[str, Recorder]) -> None:
    page = tenant.get(url("nics", BOX_UUID))
    assert [c[0] for c in page.context["add"].fields["source"].choices] == ["network:lan"]
    assert "mac" not in page.context["add"].fields and 'name="mac" maxlength' not in page.content.decode()
    assert private_named(page.content.decode()) == []
    response = tenant.post(url("nic_add", BOX_UUID), {**GOOD_NIC, "source": "network:backnet"})
    assert response.status_code == 200 and "source" in response.context["add"].errors
    assert not recorded["attachDeviceFlags"].calls
    # A posted MAC is not used: the panel generates one.
    messages_of(tenant, tenant.post(url("nic_add", BOX_UUID), {**GOOD_NIC, "mac": "52:54:00:de:ad:01"}))
    nic = Interface.from_xml(recorded["attachDeviceFlags"].calls[-1][0])
    assert nic.source_network == "lan" and nic.mac and nic.mac != "52:54:00:de:ad:01"


def test_users_move_nics_only_to_open_networks(tenant: Client, admin_client: Client,
                                               recorded: dict[str, Recorder]) -> None:
    mac = "52:54:00:aa:bb:cc"
    page = messages_of(tenant, tenant.post(url("nic_source", BOX_UUID), {"mac": mac, "source": "network:backnet"}))
    assert "Network or bridge:" in page and not recorded["updateDeviceFlags"].calls
    messages_of(admin_client, admin_client.post(url("nic_source", BOX_UUID), {"mac": mac, "source": "network:backnet"}))
    assert recorded["updateDeviceFlags"].calls  # admins keep every network of the host


def host_bridges(host: Host, *names: str) -> None:
    """Bridges of the host itself (not of a libvirt network), as libvirt's test driver can define them."""
    def define(conn: Any) -> None:
        for number, name in enumerate(names):
            conn.interfaceDefineXML(f"<interface type='bridge' name='{name}'><start mode='onboot'/><bridge stp='off'>"
                                    f"<interface type='ethernet' name='eth{number + 10}'/></bridge></interface>",
                                    0).create(0)
    services.call(host, define)


# (what the user asks, the data, the refusal: "" when it is done): br-open is opened to users, br-closed is not.
BRIDGE_CASES = [
    ("nic_add", {**GOOD_NIC, "source": "bridge:br-open"}, ""),
    ("nic_add", {**GOOD_NIC, "source": "bridge:br-closed"}, "bridge:br-closed is not one of the available choices"),
    ("nic_source", {"mac": "52:54:00:aa:bb:cc", "source": "bridge:br-open"}, ""),
    ("nic_source", {"mac": "52:54:00:aa:bb:cc", "source": "bridge:br-closed"}, "Network or bridge:"),
]


@pytest.mark.parametrize(("name", "data", "refusal"), BRIDGE_CASES,
                         ids=[f"{n} {d['source']}" for n, d, _ in BRIDGE_CASES])
def test_users_use_only_bridges_an_admin_opened(tenant: Client, admin_client: Client, test_host: Host,
                                                recorded: dict[str, Recorder], name: str, data: dict[str, str],
                                                refusal: str) -> None:
    host_bridges(test_host, "br-open", "br-closed")
    opened = admin_client.post(reverse("hosts:share", args=["testhost"]), {"kind": "bridge", "name": "br-open"})
    assert opened.status_code == 302 and SharedResource.objects.filter(kind="bridge", name="br-open").exists()
    page = tenant.get(url("nics", BOX_UUID))
    offered = [c[0] for c in page.context["add"].fields["source"].choices]
    assert offered == ["network:lan", "bridge:br-open"] and "br-closed" not in page.content.decode()
    admin_offer = [c[0] for c in admin_client.get(url("nics", BOX_UUID)).context["add"].fields["source"].choices]
    assert {"bridge:br-open", "bridge:br-closed"} <= set(admin_offer)  # admins keep every bridge of the host
    call = "attachDeviceFlags" if name == "nic_add" else "updateDeviceFlags"
    said = messages_of(tenant, tenant.post(url(name, BOX_UUID), data))
    if not refusal:
        nic = Interface.from_xml(recorded[call].calls[-1][0])
        assert (nic.type, nic.source_bridge) == ("bridge", "br-open")
    else:
        assert not recorded[call].calls and refusal in said


# ---- VNC -----------------------------------------------------------------------------------


def vnc_of(host: Host) -> Any:
    xml = xml_of(host, WEB_01_UUID, 3)  # VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE: the saved definition
    return next(g for g in Domain.from_xml(xml).graphics if g.type == "vnc")


def test_users_set_only_the_keymap(tenant: Client, test_host: Host) -> None:
    vnc = reverse("instances:vnc", args=["testhost", WEB_01_UUID])
    page = tenant.get(vnc)
    assert list(page.context["form"].fields) == ["keymap"]
    assert 'name="listen"' not in page.content.decode() and 'name="password"' not in page.content.decode()
    response = tenant.post(vnc, {"keymap": "de"})
    assert response.status_code == 302
    saved = vnc_of(test_host)
    assert (saved.keymap, saved.listen, saved.passwd) == ("de", "127.0.0.1", None)


@pytest.mark.parametrize("data", [{"listen": "0.0.0.0"}, {"password_action": "set", "password": "Zq7#pw!x"},
                                  {"password_action": "clear"}, {"listen": "127.0.0.1"}])
def test_users_are_refused_listen_and_password(tenant: Client, test_host: Host, data: dict[str, str]) -> None:
    before = xml_of(test_host, WEB_01_UUID, 3)
    response = tenant.post(reverse("instances:vnc", args=["testhost", WEB_01_UUID]), {"keymap": "de", **data})
    assert response.status_code == 200 and response.context["form"].errors
    assert xml_of(test_host, WEB_01_UUID, 3) == before
    assert not AuditEvent.objects.filter(action="vm.vnc").exists()


# ---- host errors in words ------------------------------------------------------------------


def test_a_failed_change_tells_users_no_libvirt_text(tenant: Client, admin_client: Client) -> None:
    """The test driver refuses attachDeviceFlags ("not supported"): admins read why, users only that it failed;
    the audit record keeps libvirt's words."""
    user_page = tenant.post(url("nic_add", BOX_UUID), GOOD_NIC).content.decode()
    admin_page = admin_client.post(url("nic_add", BOX_UUID), GOOD_NIC).content.decode()
    assert "Add NIC: not done" in user_page and "not supported" not in user_page
    assert "not supported" in admin_page
    assert all("not supported" in e.detail for e in AuditEvent.objects.filter(action="vm.nic.add"))


# ---- other VMs -----------------------------------------------------------------------------


def test_a_shared_disk_names_no_other_vm_to_users(tenant: Client, admin_client: Client) -> None:
    """web-01's disk common.qcow2 is db-01's too: kept when web-01 goes, and only admins read whose it is."""
    delete = reverse("instances:delete", args=["testhost", WEB_01_UUID])
    chosen = {"volume": "/var/lib/libvirt/images/common.qcow2", "force_off": "1"}
    for client, named in ((tenant, False), (admin_client, True)):
        page = client.get(delete).content.decode()
        refusal = client.post(delete, chosen).content.decode()
        assert "also used by" in page and "nothing was deleted" in refusal
        assert ("db-01" in page, "db-01" in refusal) == (named, named)


def test_a_live_change_the_vm_refused_is_said_without_libvirt_text(tenant: Client, admin_client: Client,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The test driver takes every live memory change: a refusal is stood in for (a real hypervisor refuses when
    the guest has no balloon driver). Admins read libvirt's words, users only that it waits for the next boot."""
    import libvirt

    real = libvirt.virDomain.setMemoryFlags

    def refuse_live(dom: libvirt.virDomain, memory: int, flags: int = 0) -> int:
        if flags & libvirt.VIR_DOMAIN_AFFECT_LIVE:
            raise libvirt.libvirtError("balloon says no: /secret/path")
        return int(real(dom, memory, flags))

    monkeypatch.setattr(libvirt.virDomain, "setMemoryFlags", refuse_live)
    resize = reverse("instances:resize", args=["testhost", WEB_01_UUID])
    for client, memory, told in ((tenant, "512", False), (admin_client, "768", True)):
        html = messages_of(client, client.post(resize, {"vcpus": "2", "max_vcpus": "2", "memory_mib": memory,
                                                         "max_memory_mib": "1024"}))
        assert "(the running VM did not take it)" in html
        assert ("/secret/path" in html) is told
    assert all("/secret/path" in e.detail for e in AuditEvent.objects.filter(action="vm.resize"))
