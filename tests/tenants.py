"""A host shared by tenants, on libvirt's test driver (tests/worlds/basic.xml plus what `furnish` adds):
tenant A holds every grant on web-01; db-01 and the VM named with markup belong to others (db-01 also
uses web-01's disk common.qcow2). An admin
opened pool `images` for new volumes, pool `isos` as an ISO library and network `lan`; pool `vault`
and network `backnet` stay closed.

PRIVATE lists what tenant A may never see named: the other VMs, volumes of other tenants (in the open
pool too, since only admins attach existing volumes), an `.iso` outside the ISO library, the closed
pool and network."""

from __future__ import annotations

import libvirt

from hosts import services
from hosts.models import Host
from tests.conftest import DB_01_UUID, WEB_01_UUID
from virt import disks
from virt.xml import Domain, Network, StoragePool, StorageVolume
from webkvm.models import SharedKind, SharedResource

XSS_UUID = "33333333-3333-4333-8333-333333333333"
LIBRARY_ISO = "debian-12.iso"
PRIVATE = ["db-01", DB_01_UUID, XSS_UUID, "onerror", "vault", "tenant-b-data.qcow2", "payroll.iso",
           "backnet", "virbr77"]


def add_volume(conn: libvirt.virConnect, pool: str, name: str, size: int = 1 << 20) -> None:
    xml = StorageVolume.new(name=name, capacity=size, format="raw").to_xml()
    conn.storagePoolLookupByName(pool).createXML(xml, 0)


def furnish(host: Host) -> None:
    def build(conn: libvirt.virConnect) -> None:
        for name in ("isos", "vault"):
            xml = StoragePool.new(type="dir", name=name, target_path=f"/var/lib/libvirt/{name}").to_xml()
            conn.storagePoolDefineXML(xml, 0).create(0)
        add_volume(conn, "images", "tenant-b-data.qcow2")
        add_volume(conn, "images", "payroll.iso")  # an .iso outside the ISO library: another tenant's disk
        add_volume(conn, "isos", LIBRARY_ISO)
        add_volume(conn, "vault", "vault-disk.qcow2")
        add_volume(conn, "vault", "vault-installer.iso")
        conn.networkCreateXML(Network.new(name="backnet", bridge_name="virbr77").to_xml())
        add_volume(conn, "images", "common.qcow2")  # a disk of web-01 that db-01 uses too
        for uuid in (WEB_01_UUID, DB_01_UUID):
            dom = Domain.from_xml(conn.lookupByUUIDString(uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            dom.disks.add(disks.disk_element(disks.disk_source(conn, disks.PoolVolume("images", "common.qcow2")),
                                             target="vdb", bus="virtio"))
            conn.defineXML(dom.to_xml())
            running = conn.lookupByUUIDString(uuid)
            running.destroy()  # and started again with the disk
            running.create()

    services.call(host, build)
    for kind, name in ((SharedKind.POOL, "images"), (SharedKind.ISO_LIBRARY, "isos"), (SharedKind.NETWORK, "lan")):
        SharedResource.objects.create(host=host, kind=kind, name=name)


def private_named(text: str) -> list[str]:
    """The private names `text` contains."""
    return [name for name in PRIVATE if name.lower() in text.lower()]
