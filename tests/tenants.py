"""A host shared by tenants, on libvirt's test driver (tests/worlds/basic.xml plus what `furnish` adds):
tenant A holds every grant on web-01; db-01 and the VM named with markup belong to others (db-01 also
uses web-01's disk common.qcow2). An admin
opened pool `images` for new volumes, pool `isos` as an ISO library and network `lan`; pool `vault`
and network `backnet` stay closed.

PRIVATE lists what tenant A may never see named: the other VMs, volumes of other tenants (in the open
pool too, since only admins attach existing volumes), an `.iso` outside the ISO library, the closed
pool and network, and tenant B's image.

`give_quotas` gives both tenants a self-service quota on the host: A's opens image OWN_IMAGE, pool `images`
and network `lan`; B's opens OTHERS_IMAGE and a pool and a network of their own (OTHERS_POOL, OTHERS_NETWORK:
opened to users, so A's device pages may offer them, but A's create page and quota must not)."""

from __future__ import annotations

from typing import Any

import libvirt

from hosts import services
from hosts.models import Host
from instances.models import Quota
from storage.models import CloudImage
from tests.conftest import DB_01_UUID, WEB_01_UUID
from virt import disks
from virt.xml import Domain, Network, StoragePool, StorageVolume
from webkvm.models import SharedKind, SharedResource

XSS_UUID = "33333333-3333-4333-8333-333333333333"
LIBRARY_ISO = "debian-12.iso"
OWN_IMAGE, OTHERS_IMAGE = "tenant-a-image", "tenant-b-image"
OTHERS_POOL, OTHERS_NETWORK = "teampool", "teamnet"
PRIVATE = ["db-01", DB_01_UUID, XSS_UUID, "onerror", "vault", "tenant-b-data.qcow2", "payroll.iso",
           "backnet", "virbr77", OTHERS_IMAGE, "tenant-b-base"]


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


def give_quotas(host: Host, tenant: Any, other: Any) -> None:
    """Self-service quotas for tenant A (`tenant`) and B (`other`) on `host` (after `furnish`)."""
    def build(conn: libvirt.virConnect) -> None:
        xml = StoragePool.new(type="dir", name=OTHERS_POOL, target_path=f"/var/lib/libvirt/{OTHERS_POOL}").to_xml()
        conn.storagePoolDefineXML(xml, 0).create(0)
        conn.networkCreateXML(Network.new(name=OTHERS_NETWORK, bridge_name="virbr78").to_xml())
        add_volume(conn, "images", "tenant-a-base.qcow2", 1 << 30)
        add_volume(conn, "images", "tenant-b-base.qcow2", 1 << 30)

    services.call(host, build)
    for owner, image, shared in ((tenant, OWN_IMAGE, [(SharedKind.POOL, "images"), (SharedKind.NETWORK, "lan")]),
                                 (other, OTHERS_IMAGE, [(SharedKind.POOL, OTHERS_POOL),
                                                        (SharedKind.NETWORK, OTHERS_NETWORK)])):
        quota = Quota.objects.create(user=owner, max_vms=2, max_vcpus=4, max_memory_mib=4096, max_disk_gib=20)
        quota.hosts.add(host)
        quota.images.add(CloudImage.objects.create(
            host=host, pool="images", volume=f"{image.replace('image', 'base')}.qcow2", name=image,
            min_disk_bytes=1 << 30, format="qcow2", virtual_bytes=1 << 30))
        for kind, name in shared:
            opened, _ = SharedResource.objects.get_or_create(host=host, kind=kind, name=name)
            quota.shared.add(opened)


def private_named(text: str) -> list[str]:
    """The private names `text` contains."""
    return [name for name in PRIVATE if name.lower() in text.lower()]
