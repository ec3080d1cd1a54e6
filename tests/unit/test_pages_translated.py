"""Every page of the panel rendered in zh-Hans, for an admin and for a user with every grant on web-01, on
libvirt's test driver: no English left but names, units, technical terms and libvirt's own words.

The routes come from the route table (tests/unit/test_routes.py), so a new page is checked as soon as it
exists. What a page shows of the world (VM, host, pool, volume, network, user names) is allowed wherever
it appears; so are the terms the glossary keeps in Latin letters (docs/glossary-zh.md: VNC, XML, MAC...).
Elements marked translate="no" (data: XML, keys, addresses, commands) and scripts are not read."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from lxml import html as lxml_html

from hosts import services
from hosts.models import Host
from tests.conftest import PASSWORD, WEB_01_UUID
from tests.unit.test_routes import JOB_ID, ROUTES, Route, _url
from webkvm.models import UserLanguage, VMGrant, VMPermission

pytestmark = pytest.mark.django_db

# Latin-letter words a Chinese page keeps: units, the product's and other software's names, and the
# technical terms Chinese virtualization documentation writes in Latin letters (docs/glossary-zh.md).
_TERMS = """
B KiB MiB GiB TiB PiB KB MB GB TB K M G T ms s Hz MHz GHz kbit Mbit
webkvm libvirt libvirtd QEMU qemu KVM kvm noVNC websockify xterm Debian Ubuntu Linux Windows SeaBIOS OVMF GRUB
VM VMs vCPU vCPUs CPU CPUs RAM VNC SPICE XML JSON YAML API REST OpenAPI URI URL UUID MAC IP IPv IPv4 IPv6 DHCP DNS NAT
ISO CD ROM CD-ROM NIC NICs TCP TLS SSH ssh SASL HTTP HTTPS GET ID OS BIOS UEFI USB PCI SCSI SATA IDE VirtIO virtio
qcow raw qcow2 vmdk vdi iso img e1000 rtl8139 cloud-init NoCloud cidata RQ Redis PostgreSQL SQLite UTC Bearer Token
Ceph RBD LVM NFS iSCSI IQN
NUMA VLAN VEPA macvtap JavaScript
ASCII Esc F12
"""
KEPT = set(_TERMS.split())
WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
READ_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "data-confirm", "data-confirm-title",
                   "data-confirm-button")
SKIPPED_ROUTES = {"logout", "language", "javascript-catalog"}


def _is_page(route: Route) -> bool:
    access = route.access
    if route.name in SKIPPED_ROUTES or route.name.startswith("api:") or access is None:
        return False
    return not access.methods or "GET" in access.methods


# Routes whose GET shows no page to these readers: JSON, streams, redirects, and POST-only operations.
NOT_PAGES = {
    "api-tokens:revoke",
    "console:serial_ticket",
    "console:ticket",
    "hosts:confirm_machine",
    "hosts:test",
    "hosts:unshare",
    "hosts:usage",
    "instances:bulk",
    "instances:cdrom_add",
    "instances:cdrom_eject",
    "instances:cdrom_insert",
    "instances:cdrom_remove",
    "instances:describe",
    "instances:disk_attach",
    "instances:disk_detach",
    "instances:migrate_many",
    "instances:nic_add",
    "instances:nic_link",
    "instances:nic_remove",
    "instances:nic_source",
    "instances:rename",
    "instances:rows",
    "instances:snapshot_create",
    "instances:stats",
    "instances:xml_rollback",
    "jobs:cancel",
    "jobs:status",
    "networks:action",
    "networks:host_add",
    "networks:host_remove",
    "storage:index",
    "storage:pool_action",
    "storage:upload_check",
    "storage:volume_download",
    "storage:volume_upload",
    "users:grant_delete",
}

PAGES = [r for r in ROUTES if _is_page(r)]
# Routes whose page shows for some values of their `by` argument only (the sample is another one).
CHOSEN = {"networks:confirm": "delete", "instances:action": "reset"}
# Routes whose GET shows a page when the URL names what it acts on (a confirmation reloaded).
QUERIES = {"instances:snapshot_revert": "?snapshot=1", "instances:snapshot_delete": "?snapshot=1"}


@pytest.fixture
def readers(test_host: Host) -> dict[str, Client]:
    from instances.models import Flavor, Quota
    from jobs.models import Job
    users = get_user_model().objects
    admin = users.create_superuser("zh-admin", "", PASSWORD)
    user = users.create_user("zh-user", "", PASSWORD)
    VMGrant.objects.create(user=user, host=test_host, vm_uuid=WEB_01_UUID, vm_name="web-01",
                           **{f"can_{p.value}": True for p in VMPermission if p != VMPermission.VIEW})
    Job.objects.create(pk=JOB_ID, kind="volume.wipe", host=test_host, owner=user, state="done",
                       target_type="volume", target_name="images/w.img", summary="a job",
                       params={"pool": "images", "name": "w.img"})
    Flavor.objects.create(pk=1, name="small", vcpus=1, memory_mib=512, disk_gib=4)
    Quota.objects.create(pk=1, user=user, max_vms=2, max_vcpus=4, max_memory_mib=4096, max_disk_gib=40)
    # The storage samples (tests/unit/test_routes.py): volume disk.img of pool images, a library there, image 1.
    from storage.models import CloudImage, ImageLibrary
    services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").createXML(
        "<volume><name>disk.img</name><capacity unit='GiB'>1</capacity></volume>", 0))
    ImageLibrary.objects.create(host=test_host, pool="images")
    CloudImage.objects.create(pk=1, host=test_host, pool="images", volume="disk.img", name="disk", format="raw",
                              min_disk_bytes=1 << 30, virtual_bytes=1 << 30)
    clients = {"anonymous": Client(HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.5")}  # the browser's language
    for name, person in (("admin", admin), ("user", user)):
        UserLanguage.objects.create(user=person, language="zh-hans")
        client = Client()
        client.force_login(person)
        clients[name] = client
    return clients


def _names(host: Host) -> set[str]:
    """Words of every name the test world and the panel's records show."""
    def read(conn: Any) -> list[str]:
        found = [d.name() for d in conn.listAllDomains(0)] + [n.name() for n in conn.listAllNetworks(0)]
        for pool in conn.listAllStoragePools(0):
            found.append(pool.name())
            if pool.isActive():
                found.extend(v.name() for v in pool.listAllVolumes(0))
        return found

    names = services.call(host, read) + [h.name for h in Host.objects.all()]
    from instances.models import Flavor  # flavors are named like pools: "small", "m1.large"
    names += list(Flavor.objects.values_list("name", flat=True))
    names += list(get_user_model().objects.values_list("username", flat=True))
    return {word for name in names for word in WORD.findall(name)}


def english_left(page: str, allowed: set[str]) -> list[str]:
    """The Latin-letter words of a page's visible text and read-aloud attributes that are not allowed."""
    root = lxml_html.document_fromstring(page)
    for element in root.xpath("//script|//style|//textarea|//*[@translate='no']|//code|//pre|//kbd|//samp"):
        element.drop_tree()
    texts = [t for t in root.xpath("//body//text()")]
    texts += [v for a in READ_ATTRIBUTES for v in root.xpath(f"//body//@{a}")]
    texts += root.xpath("//body//input[@type='submit' or @type='button']/@value") + root.xpath("//title//text()")
    return sorted({w for text in texts for w in WORD.findall(text) if w not in allowed and w.lower() not in allowed})


@pytest.mark.parametrize("route", PAGES, ids=[r.name for r in PAGES])
def test_every_page_is_in_chinese(readers: dict[str, Client], test_host: Host, route: Route) -> None:
    allowed = KEPT | _names(test_host)
    found, read = {}, 0
    for who, client in readers.items():
        response = client.get(_url(route, CHOSEN.get(route.name)) + QUERIES.get(route.name, ""))
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        read += 1
        assert response["Content-Language"] == "zh-hans"
        page = response.content.decode()
        assert '<html lang="zh-Hans"' in page
        left = english_left(page, allowed)
        if left:
            found[who] = left
    assert not found, f"English left on {route.name}: {found}"
    assert (read == 0) == (route.name in NOT_PAGES), \
        f"{route.name}: {read} readers saw a page; NOT_PAGES lists the routes without one (JSON, redirects, POST)"
