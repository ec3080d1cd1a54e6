"""Disk, CD-ROM and NIC pages on libvirt's test driver: forms, validation, permissions, what reaches libvirt.

The test driver cannot attach, detach or update devices ("not supported"), so where a test
needs those calls to succeed they are replaced by recorders that keep the XML and flags the
panel sent; tests/integration/test_vm_devices_lab.py does the same on a real hypervisor.
"""

from __future__ import annotations

import threading
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse
from lxml import etree

from hosts import services
from hosts.models import Host
from tests.conftest import DB_01_UUID, WEB_01_UUID
from virt import disks, macs, nics
from virt.devices import device_xml
from virt.xml import Disk, Domain, Interface, StorageVolume
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db
XSS_UUID = "33333333-3333-4333-8333-333333333333"
BOX_UUID = "66666666-6666-4666-8666-666666666666"
LIVE, CONFIG = libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG
GOOD_ATTACH = {"source": "new", "pool": "images", "volume_name": "", "size": "1G", "format": "qcow2",
               "volume": "", "bus": "virtio", "cache": "none"}
GOOD_NIC = {"source": "network:lan", "model": "virtio", "mac": ""}


def url(name: str, uuid: str = WEB_01_UUID) -> str:
    return reverse(f"instances:{name}", args=["testhost", uuid])


def add_volume(host: Host, name: str, size: int = 1 << 20) -> None:
    xml = StorageVolume.new(name=name, capacity=size, format="raw").to_xml()
    services.call(host, lambda conn: conn.storagePoolLookupByName("images").createXML(xml, 0).name())


def volumes(host: Host) -> list[str]:
    return services.call(host, lambda conn: sorted(conn.storagePoolLookupByName("images").listVolumes()))


def xml_of(host: Host, uuid: str = WEB_01_UUID, flags: int = 0) -> str:
    return services.call(host, lambda conn: conn.lookupByUUIDString(uuid).XMLDesc(flags))


def events(prefix: str = "vm.") -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(action__startswith=prefix).order_by("id").values_list("action", "result"))


def messages_of(client: Client, response: Any) -> str:
    """The page a change leads to: the redirect's target with its message, or the form shown again."""
    if response.status_code == 200:
        return str(response.content.decode())
    assert response.status_code == 302, response.content[:400]
    return client.get(response["Location"]).content.decode()


def define_box(host: Host, *, running: bool = True) -> str:
    """A VM with an empty IDE CD-ROM drive and a NIC on network lan."""
    dom = Domain.new(type="test", name="box", uuid=BOX_UUID)
    dom.memory = 256 * 1024
    dom.vcpus = 1
    dom.os.type, dom.os.arch = "hvm", "x86_64"
    dom.disks.add(disks.cdrom_element(target="hdc", bus="ide"))
    dom.interfaces.add(nics.nic_element(nics.NewNIC("network", "lan"), "52:54:00:aa:bb:cc"))
    xml = dom.to_xml()

    def define(conn: libvirt.virConnect) -> None:
        new = conn.defineXML(xml)
        if running:
            new.create()

    services.call(host, define)
    return BOX_UUID


class Recorder:
    """Stands in for a device call the test driver lacks: keeps (xml, flags), changes nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, xml: str, flags: int = 0) -> int:  # a plain callable: not bound to the domain
        self.calls.append((xml, flags))
        return 0


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    found = {name: Recorder() for name in ("attachDeviceFlags", "detachDeviceFlags", "updateDeviceFlags")}
    for name, recorder in found.items():
        monkeypatch.setattr(libvirt.virDomain, name, recorder)
    return found


# ---- pages ---------------------------------------------------------------------------------


def test_pages_offer_what_the_host_has(admin_client: Client, test_host: Host) -> None:
    add_volume(test_host, "debian-12.iso")
    add_volume(test_host, "data.qcow2")
    define_box(test_host)
    page = admin_client.get(url("disks", BOX_UUID))
    assert page.status_code == 200
    attach = page.context["attach"]
    assert [c[0] for c in attach.fields["pool"].choices] == ["images"]
    assert [c[0] for c in attach.fields["volume"].choices] == ["", "images/data.qcow2"]  # no ISOs as disks
    assert [c[0] for c in attach.fields["source"].choices] == ["new", "existing"]
    assert [c[0] for c in page.context["insert"].fields["iso"].choices] == ["images/debian-12.iso"]
    assert [(d.target, d.bus, d.source) for d in page.context["cdroms"]] == [("hdc", "ide", "")]
    html = page.content.decode()
    assert 'data-target="hdc"' in html and "(empty)" in html and "box is running" in html
    nic_page = admin_client.get(url("nics", BOX_UUID))
    assert [c[0] for c in nic_page.context["add"].fields["source"].choices] == ["network:lan"]
    assert '<option value="network:lan" selected>network lan</option>' in nic_page.content.decode()
    assert [(n.mac, n.source, n.model, n.link) for n in nic_page.context["nics"]] == [
        ("52:54:00:aa:bb:cc", "lan", "virtio", "up")]
    detail = admin_client.get(reverse("instances:detail", args=["testhost", BOX_UUID])).content.decode()
    assert 'id="change-disks"' in detail and 'id="change-nics"' in detail


def test_markup_in_a_vm_name_is_escaped(admin_client: Client, test_host: Host) -> None:
    for name in ("disks", "nics"):
        html = admin_client.get(url(name, XSS_UUID)).content.decode()
        assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html


def test_unknown_vm_is_404_and_an_unreachable_host_a_page(admin_client: Client, test_host: Host) -> None:
    assert admin_client.get(url("disks", "99999999-9999-4999-8999-999999999999")).status_code == 404
    Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=9, path="system", insecure_tcp=True)
    page = admin_client.get(reverse("instances:nics", args=["gone", WEB_01_UUID]))
    assert page.status_code == 503 and 'id="devices-error"' in page.content.decode()


# ---- attach and detach disks ---------------------------------------------------------------

BAD_ATTACH = [
    ("size", {"size": ""}),
    ("size", {"size": "lots"}),
    ("size", {"size": "10X"}),
    ("size", {"size": "-1G"}),
    ("size", {"size": "0"}),
    ("size", {"size": "100T"}),
    ("size", {"size": "200G"}),  # the pool has 90 GiB free
    ("size", {"size": "9" * 40}),
    ("volume_name", {"volume_name": "a/b"}),
    ("volume_name", {"volume_name": "../etc/passwd"}),
    ("volume_name", {"volume_name": "<b>x</b>"}),
    ("volume_name", {"volume_name": "taken.qcow2"}),
    ("volume_name", {"volume_name": "x" * 64}),
    ("pool", {"pool": "nope"}),
    ("pool", {"pool": ""}),
    ("bus", {"bus": "usb"}),
    ("cache", {"cache": "turbo"}),
    ("format", {"format": "vmdk"}),
    ("source", {"source": "magic"}),
    ("volume", {"source": "existing", "volume": ""}),
    ("volume", {"source": "existing", "volume": "images/nothere.img"}),
    ("volume", {"source": "existing", "volume": "../../etc/passwd"}),
]


@pytest.mark.parametrize(("field", "change"), BAD_ATTACH, ids=[f"{f}={next(iter(c.values()))[:12]}"
                                                               for f, c in BAD_ATTACH])
def test_bad_attach_input_is_a_field_error_and_changes_nothing(admin_client: Client, test_host: Host,
                                                               recorded: dict[str, Recorder], field: str,
                                                               change: dict[str, str]) -> None:
    add_volume(test_host, "taken.qcow2")
    before = (xml_of(test_host), volumes(test_host))
    response = admin_client.post(url("disk_attach"), {**GOOD_ATTACH, **change})
    assert response.status_code == 200
    assert field in response.context["attach"].errors, response.context["attach"].errors
    assert 'class="field-error"' in response.content.decode()
    assert (xml_of(test_host), volumes(test_host)) == before
    assert not recorded["attachDeviceFlags"].calls and not events()


def test_empty_post_is_field_errors_not_a_500(admin_client: Client, test_host: Host) -> None:
    for name in ("disk_attach", "nic_add"):
        assert admin_client.post(url(name), {}).status_code == 200
    for name in ("disk_detach", "cdrom_insert", "cdrom_eject", "cdrom_add", "cdrom_remove", "nic_remove",
                 "nic_source", "nic_link"):
        assert admin_client.post(url(name), {}).status_code in (200, 302), name


def test_only_admins_attach_existing_volumes(user_client: Client, granted_user: Any, test_host: Host,
                                             recorded: dict[str, Recorder]) -> None:
    """An existing volume may be another VM's disk: a user with the change grant only makes new ones."""
    VMGrant.objects.filter(user=granted_user).update(can_change=True)
    add_volume(test_host, "db-01.qcow2")
    page = user_client.get(url("disks"))
    assert [c[0] for c in page.context["attach"].fields["source"].choices] == ["new"]
    response = user_client.post(url("disk_attach"), {**GOOD_ATTACH, "source": "existing",
                                                     "volume": "images/db-01.qcow2"})
    assert "source" in response.context["attach"].errors
    assert not recorded["attachDeviceFlags"].calls


def test_attach_follows_the_bus_on_a_running_vm(admin_client: Client, test_host: Host,
                                                recorded: dict[str, Recorder]) -> None:
    attach = recorded["attachDeviceFlags"]
    page = messages_of(admin_client, admin_client.post(url("disk_attach"), {**GOOD_ATTACH, "volume_name": "web-a"}))
    assert "new volume images/web-a attached as vda (virtio)." in page
    xml, flags = attach.calls[-1]
    assert flags == LIVE | CONFIG
    disk = Disk.from_xml(xml)
    assert (disk.device, disk.target_dev, disk.target_bus, disk.driver_type, disk.driver_cache) == (
        "disk", "vda", "virtio", "qcow2", "none")
    assert disk.source_file == "/var/lib/libvirt/images/web-a"
    vol = services.call(test_host, lambda conn: conn.storagePoolLookupByName("images")
                        .storageVolLookupByName("web-a").XMLDesc(0))
    assert (StorageVolume.from_xml(vol).capacity, StorageVolume.from_xml(vol).format) == (1 << 30, "qcow2")

    page = messages_of(admin_client, admin_client.post(url("disk_attach"), {**GOOD_ATTACH, "bus": "sata",
                                                                              "cache": "default"}))
    assert "attached as sda (sata) from the next boot: a sata disk cannot be added to a running VM." in page
    xml, flags = attach.calls[-1]
    assert flags == CONFIG and Disk.from_xml(xml).driver_cache is None  # default: no cache attribute
    assert "web-01-data.qcow2" in volumes(test_host)  # named after the VM when no name is given
    assert events() == [("vm.disk.attach", "ok"), ("vm.disk.attach", "ok")]
    event = AuditEvent.objects.filter(action="vm.disk.attach").order_by("id").first()
    assert event is not None and event.object_name == "web-01" and "bus virtio, cache none" in event.detail
    assert event.duration_ms is not None  # one record per operation, with how long the host took


def test_attach_to_a_shut_off_vm_changes_only_its_definition(admin_client: Client, test_host: Host,
                                                             recorded: dict[str, Recorder]) -> None:
    services.call(test_host, lambda conn: conn.lookupByUUIDString(DB_01_UUID).destroy())
    add_volume(test_host, "shared.img")
    admin_client.post(url("disk_attach", DB_01_UUID), {**GOOD_ATTACH, "source": "existing",
                                                      "volume": "images/shared.img", "bus": "scsi"})
    xml, flags = recorded["attachDeviceFlags"].calls[-1]
    disk = Disk.from_xml(xml)
    assert flags == CONFIG and (disk.target_dev, disk.target_bus, disk.driver_type) == ("sda", "scsi", "raw")


def test_a_refused_attach_is_shown_in_words_and_removes_the_new_volume(admin_client: Client,
                                                                       test_host: Host) -> None:
    """The test driver refuses attachDeviceFlags: the page says so and the volume made for it goes."""
    before = volumes(test_host)
    response = admin_client.post(url("disk_attach"), {**GOOD_ATTACH, "volume_name": "doomed.qcow2"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Attach disk: not done:" in html and "not supported" in html and "The new volume was removed again." in html
    assert volumes(test_host) == before
    assert events() == [("vm.disk.attach", "failed")]


def test_volume_name_taken_meanwhile_is_a_field_error(admin_client: Client, test_host: Host,
                                                      recorded: dict[str, Recorder],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool gained the name after the form read the host: the virt layer's check answers on the field."""
    from instances.views import disks as disk_views

    real = disk_views.AttachDiskForm.clean

    def clean_then_race(form: Any) -> Any:
        data = real(form)
        add_volume(test_host, "racy.qcow2")
        return data

    monkeypatch.setattr(disk_views.AttachDiskForm, "clean", clean_then_race)
    response = admin_client.post(url("disk_attach"), {**GOOD_ATTACH, "volume_name": "racy.qcow2"})
    assert "already has a volume named racy.qcow2" in str(response.context["attach"].errors["volume_name"])
    assert not recorded["attachDeviceFlags"].calls and not events()


def test_detach(admin_client: Client, test_host: Host, recorded: dict[str, Recorder]) -> None:
    add_volume(test_host, "box-data.img")

    def with_disk(conn: libvirt.virConnect) -> None:
        dom = Domain.from_xml(conn.lookupByUUIDString(DB_01_UUID).XMLDesc(0))
        dom.disks.add(disks.disk_element(disks.disk_source(conn, disks.PoolVolume("images", "box-data.img")),
                                         target="vdb", bus="virtio"))
        conn.defineXML(dom.to_xml())

    services.call(test_host, with_disk)  # running: the new definition waits for the next boot
    page = messages_of(admin_client, admin_client.post(url("disk_detach", DB_01_UUID), {"target": "vdb"}))
    assert "vdb detached. Its volume stays in its pool." in page
    xml, flags = recorded["detachDeviceFlags"].calls[-1]
    assert flags == CONFIG and Disk.from_xml(xml).target_dev == "vdb"  # only the saved definition has it
    page = messages_of(admin_client, admin_client.post(url("disk_detach", DB_01_UUID), {"target": "vdz"}))
    assert "db-01 has no disk vdz." in page
    assert events() == [("vm.disk.detach", "ok"), ("vm.disk.detach", "failed")]
    assert "box-data.img" in volumes(test_host)


def test_detach_xml_leaves_out_guest_addresses() -> None:
    """Live and saved definitions may put a device at different addresses: libvirt matches by target or MAC."""
    disk = Disk.from_xml("<disk type='file' device='disk'><source file='/a'/><target dev='vdb' bus='virtio'/>"
                         "<alias name='virtio-disk1'/><address type='pci' slot='0x05'/></disk>")
    nic = Interface.from_xml("<interface type='network'><mac address='52:54:00:00:00:01'/><source network='n'/>"
                             "<address type='pci' slot='0x03'/></interface>")
    for device in (disk, nic):
        root = etree.fromstring(device_xml(device).encode())
        assert root.find("address") is None and root.find("alias") is None
        assert device.element.find("address") is not None  # the definition itself is untouched
    assert Disk.from_xml(device_xml(disk)).target_dev == "vdb"


# ---- CD-ROM --------------------------------------------------------------------------------


def test_insert_and_eject_change_each_definition(admin_client: Client, test_host: Host,
                                                 recorded: dict[str, Recorder]) -> None:
    add_volume(test_host, "debian-12.iso")
    define_box(test_host)
    update = recorded["updateDeviceFlags"]
    page = messages_of(admin_client, admin_client.post(url("cdrom_insert", BOX_UUID),
                                                       {"target": "hdc", "iso": "images/debian-12.iso"}))
    assert "images/debian-12.iso inserted in hdc." in page
    assert [flags for _, flags in update.calls] == [LIVE, CONFIG]  # the running VM first, then its definition
    for xml, _ in update.calls:
        drive = Disk.from_xml(xml)
        assert (drive.device, drive.target_dev, drive.source_file, drive.readonly) == (
            "cdrom", "hdc", "/var/lib/libvirt/images/debian-12.iso", True)
    update.calls.clear()
    page = messages_of(admin_client, admin_client.post(url("cdrom_eject", BOX_UUID), {"target": "hdc"}))
    assert "hdc ejected." in page
    assert [Disk.from_xml(xml).source_path for xml, _ in update.calls] == [None, None]
    assert events() == [("vm.cdrom.insert", "ok"), ("vm.cdrom.eject", "ok")]


def test_bad_cdrom_input_changes_nothing(admin_client: Client, test_host: Host,
                                         recorded: dict[str, Recorder]) -> None:
    add_volume(test_host, "debian-12.iso")
    add_volume(test_host, "data.img")
    define_box(test_host)
    for iso in ("images/data.img", "images/nothere.iso", "../../etc/passwd", ""):
        page = messages_of(admin_client, admin_client.post(url("cdrom_insert", BOX_UUID),
                                                           {"target": "hdc", "iso": iso}))
        assert "ISO image:" in page, iso
    page = messages_of(admin_client, admin_client.post(url("cdrom_insert", BOX_UUID),
                                                       {"target": "hdz", "iso": "images/debian-12.iso"}))
    assert "box has no CD-ROM drive hdz." in page
    assert not recorded["updateDeviceFlags"].calls
    assert events() == [("vm.cdrom.insert", "failed")]


def test_cdrom_drives_change_only_while_shut_off(admin_client: Client, test_host: Host,
                                                 recorded: dict[str, Recorder]) -> None:
    add_volume(test_host, "debian-12.iso")
    define_box(test_host)
    for name, data in (("cdrom_add", {"iso": ""}), ("cdrom_remove", {"target": "hdc"})):
        page = messages_of(admin_client, admin_client.post(url(name, BOX_UUID), data))
        assert "box is running: shut it off to" in page
    page = admin_client.get(url("disks", BOX_UUID)).content.decode()
    assert "Only a shut-off VM can get a new CD-ROM drive." in page
    services.call(test_host, lambda conn: conn.lookupByUUIDString(BOX_UUID).destroy())
    messages_of(admin_client, admin_client.post(url("cdrom_add", BOX_UUID), {"iso": "images/debian-12.iso"}))
    xml, flags = recorded["attachDeviceFlags"].calls[-1]
    drive = Disk.from_xml(xml)
    assert flags == CONFIG
    assert (drive.device, drive.target_dev, drive.target_bus, drive.readonly, drive.source_file) == (
        "cdrom", "hda", "ide", True, "/var/lib/libvirt/images/debian-12.iso")
    messages_of(admin_client, admin_client.post(url("cdrom_remove", BOX_UUID), {"target": "hdc"}))
    xml, flags = recorded["detachDeviceFlags"].calls[-1]
    assert flags == CONFIG and Disk.from_xml(xml).target_dev == "hdc"
    assert events("vm.cdrom") == [("vm.cdrom.add", "failed"), ("vm.cdrom.remove", "failed"),
                                  ("vm.cdrom.add", "ok"), ("vm.cdrom.remove", "ok")]


# ---- NICs ----------------------------------------------------------------------------------

BAD_NIC = [
    ("mac", {"mac": "zz"}),
    ("mac", {"mac": "52:54:00:12:34"}),
    ("mac", {"mac": "01:00:5e:00:00:01"}),  # multicast
    ("mac", {"mac": "00:00:00:00:00:00"}),
    ("mac", {"mac": "52:54:00:12:34:56'/><evil/>"}),
    ("source", {"source": "network:nope"}),
    ("source", {"source": "bridge:br0"}),  # the test host has no bridges
    ("source", {"source": "evil"}),
    ("source", {"source": ""}),
    ("model", {"model": "ne2k_pci"}),
]


@pytest.mark.parametrize(("field", "change"), BAD_NIC, ids=[f"{f}={next(iter(c.values()))[:12]}" for f, c in BAD_NIC])
def test_bad_nic_input_is_a_field_error_and_changes_nothing(admin_client: Client, test_host: Host,
                                                            recorded: dict[str, Recorder], field: str,
                                                            change: dict[str, str]) -> None:
    response = admin_client.post(url("nic_add"), {**GOOD_NIC, **change})
    assert response.status_code == 200
    assert field in response.context["add"].errors, response.context["add"].errors
    assert not recorded["attachDeviceFlags"].calls and not events()


def test_a_mac_in_use_on_the_host_is_a_field_error(admin_client: Client, test_host: Host,
                                                   recorded: dict[str, Recorder]) -> None:
    define_box(test_host, running=False)  # its NIC has 52:54:00:aa:bb:cc
    response = admin_client.post(url("nic_add"), {**GOOD_NIC, "mac": "52-54-00-AA-BB-CC"})
    assert response.status_code == 200
    assert "52:54:00:aa:bb:cc is already used by a VM on this host." in response.context["add"].errors["mac"]
    assert not recorded["attachDeviceFlags"].calls and not events()


def test_add_nic_with_a_generated_or_given_mac(admin_client: Client, test_host: Host,
                                               recorded: dict[str, Recorder]) -> None:
    define_box(test_host)
    attach = recorded["attachDeviceFlags"]
    page = messages_of(admin_client, admin_client.post(url("nic_add"), {**GOOD_NIC, "model": "e1000"}))
    xml, flags = attach.calls[-1]
    nic = Interface.from_xml(xml)
    assert flags == LIVE | CONFIG
    assert (nic.type, nic.source_network, nic.model) == ("network", "lan", "e1000")
    assert nic.mac and nic.mac.startswith("52:54:00:") and nic.mac != "52:54:00:aa:bb:cc"
    assert f"Network interface {nic.mac} (e1000) on network lan added." in page
    services.call(test_host, lambda conn: conn.lookupByUUIDString(DB_01_UUID).destroy())
    messages_of(admin_client, admin_client.post(url("nic_add", DB_01_UUID), {**GOOD_NIC, "mac": "52:54:00:0A:0B:0C"}))
    xml, flags = attach.calls[-1]
    assert flags == CONFIG and Interface.from_xml(xml).mac == "52:54:00:0a:0b:0c"
    assert events() == [("vm.nic.add", "ok"), ("vm.nic.add", "ok")]


def test_a_refused_nic_is_shown_in_words(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post(url("nic_add"), GOOD_NIC)
    assert response.status_code == 200 and "not supported" in str(response.context["add"].non_field_errors())
    assert events() == [("vm.nic.add", "failed")]


def test_link_and_source_change_each_definition(admin_client: Client, test_host: Host,
                                                recorded: dict[str, Recorder]) -> None:
    define_box(test_host)
    update = recorded["updateDeviceFlags"]
    mac = "52:54:00:aa:bb:cc"
    page = messages_of(admin_client, admin_client.post(url("nic_link", BOX_UUID), {"mac": mac, "state": "down"}))
    assert f"Link of {mac} is down." in page
    assert [(Interface.from_xml(x).link_state, f) for x, f in update.calls] == [("down", LIVE), ("down", CONFIG)]
    update.calls.clear()
    page = messages_of(admin_client, admin_client.post(url("nic_source", BOX_UUID),
                                                       {"mac": mac.upper(), "source": "network:lan"}))
    assert f"Network interface {mac} moved to network lan (now and from the next boot)." in page
    assert [(Interface.from_xml(x).source_network, f) for x, f in update.calls] == [("lan", LIVE), ("lan", CONFIG)]
    update.calls.clear()
    for data in ({"mac": mac, "state": "sideways"}, {"mac": mac, "source": "bridge:br0"},
                 {"mac": "52:54:00:00:00:99", "state": "up"}, {"mac": "junk", "state": "up"}):
        name = "nic_link" if "state" in data else "nic_source"
        messages_of(admin_client, admin_client.post(url(name, BOX_UUID), data))
    assert not update.calls
    assert events() == [("vm.nic.link", "ok"), ("vm.nic.source", "ok"), ("vm.nic.link", "failed"),
                        ("vm.nic.link", "failed")]


def test_remove_nic_says_when_the_guest_keeps_it(admin_client: Client, test_host: Host,
                                                 recorded: dict[str, Recorder]) -> None:
    define_box(test_host)
    page = messages_of(admin_client, admin_client.post(url("nic_remove", BOX_UUID), {"mac": "52:54:00:AA:BB:CC"}))
    xml, flags = recorded["detachDeviceFlags"].calls[-1]
    assert flags == LIVE | CONFIG and Interface.from_xml(xml).mac == "52:54:00:aa:bb:cc"
    # The recorder removed nothing, as a guest that ignores the unplug request would.
    assert "the guest has not released it yet" in page
    page = messages_of(admin_client, admin_client.post(url("nic_remove", BOX_UUID), {"mac": "52:54:00:00:00:99"}))
    assert "box has no network interface with MAC 52:54:00:00:00:99." in page
    assert events() == [("vm.nic.remove", "ok"), ("vm.nic.remove", "failed")]


def test_a_second_change_at_the_same_time_is_busy(admin_client: Client, test_host: Host,
                                                  recorded: dict[str, Recorder]) -> None:
    release, started = threading.Event(), threading.Event()

    def slow(conn: libvirt.virConnect) -> None:
        started.set()
        release.wait(5)

    worker = threading.Thread(target=services.call_locked, args=(test_host, WEB_01_UUID, slow, 10))
    worker.start()
    assert started.wait(5)
    try:
        response = admin_client.post(url("nic_add"), GOOD_NIC)
        assert "Another action on this VM is still running" in response.content.decode()
        assert not recorded["attachDeviceFlags"].calls
    finally:
        release.set()
        worker.join()
    assert events() == [("vm.nic.add", "failed")]


# ---- input rules of the virt layer ----------------------------------------------------------


def test_generated_macs_are_local_unicast_and_avoid_the_taken_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([b"\xaa\xbb\xcc", b"\x01\x02\x03"])
    monkeypatch.setattr(macs.secrets, "token_bytes", lambda n: next(draws))
    assert nics.random_mac({"52:54:00:aa:bb:cc"}) == "52:54:00:01:02:03"
    assert nics.normalise_mac(" 52-54-00-0A-0b-0C ") == "52:54:00:0a:0b:0c"
