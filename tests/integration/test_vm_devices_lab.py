"""Disks, CD-ROM and NICs through the panel on real lab VMs; `virsh dumpxml` (live and --inactive) checks each step.

The lab VMs run no guest OS, so nothing answers a PCI unplug request: a virtio disk or NIC
detached from a running VM leaves the saved definition at once and stays in the running VM,
and the page has to say so. SCSI disks leave at once (no guest involved).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from tests.lab import domain_xml, remove_domain
from virt.xml import Disk, Domain, Interface, Network, StorageVolume
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def dumpxml(name: str) -> tuple[Domain, Domain]:
    """What `virsh dumpxml` says: the running VM, and its saved definition (--inactive)."""
    return Domain.from_xml(virsh("dumpxml", name)), Domain.from_xml(virsh("dumpxml", "--inactive", name))


def disk(doc: Domain, target: str) -> Disk | None:
    return next((d for d in doc.disks if d.target_dev == target), None)


def nic(doc: Domain, mac: str) -> Interface | None:
    return next((i for i in doc.interfaces if i.mac == mac), None)


@pytest.fixture
def pool(test_pool: libvirt.virStoragePool) -> libvirt.virStoragePool:
    """A dir pool of our own (test-*), removed with whatever is left in it."""
    return test_pool


@pytest.fixture
def networks(isolated_net: Callable[[], str]) -> list[str]:
    """Two isolated networks (test-*): bridges only our VMs are on."""
    return [isolated_net(), isolated_net()]


@pytest.fixture
def plain_bridge() -> Iterator[str]:
    """A host bridge that belongs to no libvirt network (those are never offered as bridges), removed after."""
    name = f"wkvm-br{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


@pytest.fixture
def vm(lab: dict[str, Any], lab_conn: libvirt.virConnect) -> Iterator[libvirt.virDomain]:
    """A running test-* VM with ACPI (what PCI hot-plug on a pc machine needs, and what the panel creates)."""
    doc = Domain.from_xml(domain_xml(f"test-dev-{uuid.uuid4().hex[:8]}", lab["domain_type"]))
    doc.features.acpi = True
    dom = lab_conn.defineXML(doc.to_xml())
    try:
        dom.create()
        yield dom
    finally:
        remove_domain(dom)


def iso_in(pool: libvirt.virStoragePool, name: str = "test-tools.iso") -> str:
    pool.createXML(StorageVolume.new(name=name, capacity=1 << 20, allocation=0, format="raw").to_xml(), 0)
    return f"{pool.name()}/{name}"


def post(client: Client, name: str, dom: libvirt.virDomain, data: dict[str, str]) -> str:
    """POST a change; returns the page it leads to, with its message (or the form page on a field error)."""
    response = client.post(reverse(f"instances:{name}", args=["labhost", dom.UUIDString()]), data)
    if response.status_code == 302:
        return client.get(response["Location"]).content.decode()
    assert response.status_code == 200, response.content[:400]
    return response.content.decode()


def new_disk(pool: libvirt.virStoragePool, **changes: str) -> dict[str, str]:
    return {"source": "new", "pool": pool.name(), "volume_name": "", "size": "16M", "format": "qcow2",
            "volume": "", "bus": "virtio", "cache": "none", **changes}


def audit() -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(action__startswith="vm.").order_by("id").values_list("action", "result"))


def test_virtio_disk_hot_plug_then_detach(admin_client: Client, lab_host: Host, vm: libvirt.virDomain,
                                          pool: libvirt.virStoragePool) -> None:
    name = vm.name()
    page = post(admin_client, "disk_attach", vm, new_disk(pool))
    volume = f"{name}-data.qcow2"
    assert f"new volume {pool.name()}/{volume} attached as vda (virtio)." in page
    live, saved = dumpxml(name)
    for doc in (live, saved):
        found = disk(doc, "vda")
        assert found is not None and found.target_bus == "virtio" and found.driver_cache == "none"
        assert found.source_file and found.source_file.endswith(f"/{volume}")
    assert pool.storageVolLookupByName(volume).info()[1] == 16 << 20
    detail = admin_client.get(reverse("instances:detail", args=["labhost", vm.UUIDString()])).content.decode()
    assert volume in detail

    page = post(admin_client, "disk_detach", vm, {"target": "vda"})
    live, saved = dumpxml(name)
    assert disk(saved, "vda") is None
    # No guest OS acknowledges the PCI unplug: the running VM keeps the disk, and the page says so.
    assert disk(live, "vda") is not None
    assert "the guest has not released it yet" in page
    rows = admin_client.get(reverse("instances:disks", args=["labhost", vm.UUIDString()])).context["disks"]
    assert [(r.target, r.placement) for r in rows] == [("vda", "removed at next boot")]
    assert volume in pool.listVolumes()  # detaching never deletes data
    assert audit() == [("vm.disk.attach", "ok"), ("vm.disk.detach", "ok")]


def test_scsi_disk_comes_and_goes_at_once(admin_client: Client, lab_host: Host, vm: libvirt.virDomain,
                                          pool: libvirt.virStoragePool) -> None:
    pool.createXML(StorageVolume.new(name="test-scsi.img", capacity=8 << 20, allocation=0, format="raw").to_xml(), 0)
    existing = new_disk(pool, source="existing", volume=f"{pool.name()}/test-scsi.img", bus="scsi",
                        cache="writethrough")
    page = post(admin_client, "disk_attach", vm, existing)
    assert f"volume {pool.name()}/test-scsi.img attached as sda (scsi)." in page
    for doc in dumpxml(vm.name()):
        found = disk(doc, "sda")
        assert found is not None and (found.target_bus, found.driver_type, found.driver_cache) == (
            "scsi", "raw", "writethrough")
    page = post(admin_client, "disk_detach", vm, {"target": "sda"})
    assert "sda detached. Its volume stays in its pool." in page
    assert all(disk(doc, "sda") is None for doc in dumpxml(vm.name()))


def test_sata_disk_waits_for_the_next_boot(admin_client: Client, lab_host: Host, vm: libvirt.virDomain,
                                           pool: libvirt.virStoragePool) -> None:
    name = vm.name()
    page = post(admin_client, "disk_attach", vm, new_disk(pool, bus="sata", format="raw", volume_name="test-sata.img"))
    assert "attached as sda (sata) from the next boot: a sata disk cannot be added to a running VM." in page
    live, saved = dumpxml(name)
    assert disk(live, "sda") is None
    saved_disk = disk(saved, "sda")
    assert saved_disk is not None and saved_disk.target_bus == "sata"
    rows = admin_client.get(reverse("instances:disks", args=["labhost", vm.UUIDString()])).context["disks"]
    assert [(r.target, r.placement) for r in rows] == [("sda", "added at next boot")]
    vm.destroy()
    vm.create()
    live, _saved = dumpxml(name)
    assert disk(live, "sda") is not None


def test_a_refused_hot_plug_is_shown_in_words_and_leaves_nothing(admin_client: Client, lab_host: Host,
                                                                 lab_domain: Any,
                                                                 pool: libvirt.virStoragePool) -> None:
    """A VM without ACPI has no PCI hot-plug: libvirt refuses, the new volume goes, the definition stays."""
    dom = lab_domain()
    before = virsh("dumpxml", "--inactive", dom.name())
    page = post(admin_client, "disk_attach", dom, new_disk(pool))
    assert "Attach disk: not done:" in page and "hotplug" in page and "The new volume was removed again." in page
    pool.refresh(0)
    assert pool.listVolumes() == []
    assert virsh("dumpxml", "--inactive", dom.name()) == before
    assert audit() == [("vm.disk.attach", "failed")]


def test_cdrom_media_live_and_drives_while_shut_off(admin_client: Client, lab_host: Host, vm: libvirt.virDomain,
                                                   pool: libvirt.virStoragePool) -> None:
    name = vm.name()
    iso = iso_in(pool)
    page = post(admin_client, "cdrom_add", vm, {"iso": ""})
    assert f"{name} is running: shut it off to add a CD-ROM drive" in page
    assert all(not doc.disks for doc in dumpxml(name))
    vm.destroy()
    page = post(admin_client, "cdrom_add", vm, {"iso": ""})
    assert "CD-ROM drive hda (ide) added." in page
    drive = disk(dumpxml(name)[1], "hda")
    assert drive is not None and drive.device == "cdrom" and drive.readonly and drive.source_path is None
    vm.create()

    page = post(admin_client, "cdrom_insert", vm, {"target": "hda", "iso": iso})
    assert f"{iso} inserted in hda." in page
    for doc in dumpxml(name):
        drive = disk(doc, "hda")
        assert drive is not None and drive.source_file and drive.source_file.endswith("/test-tools.iso")
    page = post(admin_client, "cdrom_eject", vm, {"target": "hda"})
    assert "hda ejected." in page
    for doc in dumpxml(name):
        drive = disk(doc, "hda")
        assert drive is not None and drive.source_path is None

    page = post(admin_client, "cdrom_remove", vm, {"target": "hda"})
    assert "shut it off to remove a CD-ROM drive" in page
    vm.destroy()
    assert "CD-ROM drive hda removed." in post(admin_client, "cdrom_remove", vm, {"target": "hda"})
    assert disk(dumpxml(name)[1], "hda") is None
    assert audit() == [("vm.cdrom.add", "failed"), ("vm.cdrom.add", "ok"), ("vm.cdrom.insert", "ok"),
                       ("vm.cdrom.eject", "ok"), ("vm.cdrom.remove", "failed"), ("vm.cdrom.remove", "ok")]


def test_nic_hot_plug_link_source_and_remove(admin_client: Client, lab_host: Host, vm: libvirt.virDomain,
                                             networks: list[str], lab_conn: libvirt.virConnect,
                                             plain_bridge: str) -> None:
    name = vm.name()
    first, second = networks
    page = post(admin_client, "nic_add", vm, {"source": f"network:{first}", "model": "virtio", "mac": ""})
    live, saved = dumpxml(name)
    assert len(live.interfaces) == len(saved.interfaces) == 1
    mac = live.interfaces[0].mac or ""
    assert mac.startswith("52:54:00:") and saved.interfaces[0].mac == mac
    assert f"Network interface {mac} (virtio) on network {first} added." in page
    assert live.interfaces[0].source_network == first and live.interfaces[0].target_dev  # a tap device exists

    taken = post(admin_client, "nic_add", vm, {"source": f"network:{second}", "model": "e1000", "mac": mac.upper()})
    assert f"{mac} is already used by a VM on this host." in taken
    assert [len(doc.interfaces) for doc in dumpxml(name)] == [1, 1]

    assert f"Link of {mac} is down." in post(admin_client, "nic_link", vm, {"mac": mac, "state": "down"})
    assert virsh("domif-getlink", name, mac).split()[-1] == "down"
    assert [found.link_state for doc in dumpxml(name) if (found := nic(doc, mac))] == ["down", "down"]

    page = post(admin_client, "nic_source", vm, {"mac": mac, "source": f"network:{second}"})
    assert f"moved to network {second} (now and from the next boot)." in page
    live, saved = dumpxml(name)
    moved_live, moved_saved = nic(live, mac), nic(saved, mac)
    assert moved_live is not None and moved_saved is not None
    assert (moved_live.source_network, moved_saved.source_network) == (second, second)
    bridge = Network.from_xml(lab_conn.networkLookupByName(second).XMLDesc(0)).bridge_name
    assert moved_live.source_bridge == bridge  # the tap really moved to the other network's bridge
    assert (moved_live.link_state, moved_saved.link_state) == ("down", "down")  # nothing else changed

    # A network's bridge is not offered as a host bridge: it belongs to its network.
    first_bridge = Network.from_xml(lab_conn.networkLookupByName(first).XMLDesc(0)).bridge_name or ""
    refused = post(admin_client, "nic_source", vm, {"mac": mac, "source": f"bridge:{first_bridge}"})
    assert f"moved to bridge {first_bridge}" not in refused
    assert nic(dumpxml(name)[0], mac).source_network == second  # type: ignore[union-attr]
    # From a virtual network to a plain host bridge, live.
    page = post(admin_client, "nic_source", vm, {"mac": mac, "source": f"bridge:{plain_bridge}"})
    assert f"moved to bridge {plain_bridge}" in page
    for doc in dumpxml(name):
        found = nic(doc, mac)
        assert found is not None and (found.type, found.source_bridge, found.source_network) == (
            "bridge", plain_bridge, None)

    post(admin_client, "nic_link", vm, {"mac": mac, "state": "up"})
    assert virsh("domif-getlink", name, mac).split()[-1] == "up"

    page = post(admin_client, "nic_remove", vm, {"mac": mac})
    live, saved = dumpxml(name)
    assert nic(saved, mac) is None
    assert nic(live, mac) is not None and "the guest has not released it yet" in page
    assert audit() == [("vm.nic.add", "ok"), ("vm.nic.link", "ok"), ("vm.nic.source", "ok"), ("vm.nic.source", "ok"),
                       ("vm.nic.link", "ok"), ("vm.nic.remove", "ok")]


def test_a_shut_off_vm_changes_its_definition_only(admin_client: Client, lab_host: Host, vm: libvirt.virDomain,
                                                   pool: libvirt.virStoragePool, networks: list[str]) -> None:
    vm.destroy()
    post(admin_client, "disk_attach", vm, new_disk(pool, bus="ide", cache="default"))
    post(admin_client, "nic_add", vm, {"source": f"network:{networks[0]}", "model": "rtl8139",
                                       "mac": "52:54:00:fe:dc:01"})
    saved = Domain.from_xml(virsh("dumpxml", "--inactive", vm.name()))
    added = disk(saved, "hda")
    assert added is not None and added.target_bus == "ide" and added.driver_cache is None
    iface = nic(saved, "52:54:00:fe:dc:01")
    assert iface is not None and iface.model == "rtl8139" and iface.source_network == networks[0]
    vm.create()  # and it boots with them
    live = Domain.from_xml(virsh("dumpxml", vm.name()))
    assert disk(live, "hda") is not None and nic(live, "52:54:00:fe:dc:01") is not None


def test_a_user_works_within_what_an_admin_opened(admin_client: Client, lab_host: Host, vm: libvirt.virDomain,
                                                  pool: libvirt.virStoragePool, networks: list[str]) -> None:
    """An ordinary user with the change grant: new volumes and ISO images only from the pool the admin opened,
    NICs only on the network opened (MAC generated); the host's other pools and networks never show."""
    from django.contrib.auth import get_user_model

    from webkvm.models import VMGrant

    user = get_user_model().objects.create_user("lab-tenant", "", "correct-horse-battery-9")
    VMGrant.objects.create(user=user, host=lab_host, vm_uuid=vm.UUIDString(), vm_name=vm.name(), can_change=True)
    client = Client()
    client.force_login(user)
    iso = iso_in(pool)
    share = reverse("hosts:share", args=["labhost"])
    for kind, name in (("pool", pool.name()), ("iso_library", pool.name()), ("network", networks[0])):
        assert admin_client.post(share, {"kind": kind, "name": name}).status_code == 302
    page = client.get(reverse("instances:disks", args=["labhost", vm.UUIDString()]))
    assert [c[0] for c in page.context["attach"].fields["pool"].choices] == [pool.name()]
    assert "volume" not in page.context["attach"].fields
    assert [c[0] for c in page.context["insert"].fields["iso"].choices] == [iso]
    nics_page = client.get(reverse("instances:nics", args=["labhost", vm.UUIDString()]))
    assert [c[0] for c in nics_page.context["add"].fields["source"].choices] == [f"network:{networks[0]}"]

    assert "attached as vda (virtio)." in post(client, "disk_attach", vm, new_disk(pool))
    refused = post(client, "nic_add", vm, {"source": f"network:{networks[1]}", "model": "virtio"})
    assert "Select a valid choice" in refused
    post(client, "nic_add", vm, {"source": f"network:{networks[0]}", "model": "virtio", "mac": "52:54:00:de:ad:01"})
    saved = dumpxml(vm.name())[1]
    assert [(i.source_network, i.mac != "52:54:00:de:ad:01") for i in saved.interfaces] == [(networks[0], True)]
    vm.destroy()
    assert f"CD-ROM drive hda (ide) added with {iso}." in post(client, "cdrom_add", vm, {"iso": iso})
    drive = disk(dumpxml(vm.name())[1], "hda")
    assert drive is not None and drive.readonly and drive.source_file and drive.source_file.endswith("/test-tools.iso")
    assert audit() == [("vm.disk.attach", "ok"), ("vm.nic.add", "ok"), ("vm.cdrom.add", "ok")]
