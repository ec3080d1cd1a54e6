"""Volumes shared between VMs (world tests/worlds/sharing.xml, on libvirt's test driver).

Deleting a VM with its volumes never deletes one another VM also uses, and the create form never
takes one as a writable boot disk (ISOs on CD-ROMs stay shareable). libvirt is asked afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from tests.conftest import WORLDS
from virt.delete import VolumeChoiceError, delete_vm
from virt.xml import Domain
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db

SHARING_WORLD = WORLDS / "sharing.xml"
ALPHA = "a1a1a1a1-0000-4000-8000-000000000001"
BETA = "b2b2b2b2-0000-4000-8000-000000000002"
SOLO = "c3c3c3c3-0000-4000-8000-000000000003"
GAMMA = "d4d4d4d4-0000-4000-8000-000000000004"
MARKUP_VM = "<i>gamma&co"
IMAGES = "/var/lib/libvirt/images"
VMS = sorted([MARKUP_VM, "alpha", "beta", "solo"])
VOLUMES = sorted(["alpha.qcow2", "beta.qcow2", "data.qcow2", "ref.qcow2", "pair.qcow2", "solo.qcow2",
                  "installer.iso", "tools.iso", "golden.img", "free.iso"])
CREATE_URL = reverse("instances:create") + "?host=sharehost"
GOOD_FORM = {
    "name": "app-01", "vcpus": "1", "size": "custom", "memory": "256M", "firmware": "bios", "machine": "",
    "cpu_mode": "host-model",
    "disk_source": "new", "disk_pool": "images", "disk_size": "1G", "disk_format": "qcow2",
    "existing_volume": "", "iso": "", "nic1_source": "", "nic1_model": "virtio",
    "nic2_source": "", "nic2_model": "virtio", "nic3_source": "", "nic3_model": "virtio",
}


@pytest.fixture
def share_host(db: None) -> Host:
    return Host.objects.create(name="sharehost", transport="test", path=str(SHARING_WORLD))


@pytest.fixture
def stats_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts getAllDomainStats: the one call that tells which VMs use which volume."""
    calls: list[int] = []
    real = libvirt.virConnect.getAllDomainStats

    def counting(self: libvirt.virConnect, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(libvirt.virConnect, "getAllDomainStats", counting)
    return calls


def world(host: Host) -> tuple[list[str], list[str]]:
    """What libvirt has: domain names and the volumes of pool images."""
    def look(conn: libvirt.virConnect) -> tuple[list[str], list[str]]:
        return (sorted(d.name() for d in conn.listAllDomains()),
                sorted(conn.storagePoolLookupByName("images").listVolumes()))
    return services.call(host, look)


def disks_of(host: Host, name: str) -> list[str | None]:
    return services.call(host, lambda conn: [d.source_file for d in
                                             Domain.from_xml(conn.lookupByName(name).XMLDesc(0)).disks])


def events(action: str) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(action=action).order_by("id").values_list("object_name", "result"))


def delete_url(vm_uuid: str) -> str:
    return reverse("instances:delete", args=["sharehost", vm_uuid])


# --- the delete page: what is offered, what is marked --------------------------------------------------

PAGES = [  # VM, volumes offered for deletion, volumes kept with the other VMs using them
    (ALPHA, ["alpha.qcow2"], {"data.qcow2": ("beta",), "tools.iso": ("beta",), "ref.qcow2": ("beta",),
                              "pair.qcow2": (MARKUP_VM,), "installer.iso": ("beta", "solo")}),
    (BETA, ["beta.qcow2"], {"data.qcow2": ("alpha",), "ref.qcow2": ("alpha",), "installer.iso": ("alpha", "solo"),
                            "tools.iso": ("alpha",)}),
    (SOLO, ["solo.qcow2"], {"installer.iso": ("alpha", "beta")}),
    (GAMMA, [], {"pair.qcow2": ("alpha",)}),
]


@pytest.mark.parametrize(("vm_uuid", "offered", "kept"), PAGES, ids=["alpha", "beta", "solo", "markup-name"])
def test_the_page_offers_only_volumes_no_other_vm_uses(admin_client: Client, share_host: Host, stats_calls: list[int],
                                                       vm_uuid: str, offered: list[str],
                                                       kept: dict[str, tuple[str, ...]]) -> None:
    page = admin_client.get(delete_url(vm_uuid))
    html = page.content.decode()
    assert page.status_code == 200
    assert [vol.name for vol in page.context["deletable"]] == offered
    assert {vol.name: vol.shared_with for vol in page.context["kept"]} == kept
    for name in offered:
        assert f'value="{IMAGES}/{name}"' in html
    for name, users in kept.items():
        assert f'value="{IMAGES}/{name}"' not in html  # never a checkbox
        assert "also used by " + ", ".join(u.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                                           for u in users) in html
    assert "<i>gamma" not in html
    assert stats_calls == [1]  # one getAllDomainStats for the whole page, whatever the number of disks


# --- deleting alpha with some of its volumes -------------------------------------------------------------

DELETES = [  # what is ticked, the volumes that go (None: refused, nothing changes), words the refusal has
    ("nothing", [], [], ""),
    ("its own disk", ["alpha.qcow2"], ["alpha.qcow2"], ""),
    ("a data disk of two VMs", ["data.qcow2"], None, "data.qcow2 is also used by VM beta"),
    ("a read-only ISO disk another VM has on its CD-ROM", ["tools.iso"], None, "tools.iso is also used by VM beta"),
    ("a disk another VM names by pool/volume", ["ref.qcow2"], None, "ref.qcow2 is also used by VM beta"),
    ("the installer ISO on three CD-ROMs", ["installer.iso"], None, "installer.iso is also used by VMs beta, solo"),
    ("a disk shared with a VM named in markup", ["pair.qcow2"], None,
     "pair.qcow2 is also used by VM &lt;i&gt;gamma&amp;co"),
    ("its own disk together with a shared one", ["alpha.qcow2", "data.qcow2"], None,
     "data.qcow2 is also used by VM beta"),
]


@pytest.mark.parametrize(("ticked", "gone", "refusal"), [case[1:] for case in DELETES], ids=[c[0] for c in DELETES])
def test_delete_never_takes_a_volume_another_vm_uses(admin_client: Client, share_host: Host, stats_calls: list[int],
                                                     ticked: list[str], gone: list[str] | None, refusal: str) -> None:
    before = world(share_host)
    response = admin_client.post(delete_url(ALPHA), {"volume": [f"{IMAGES}/{v}" for v in ticked], "force_off": "1"})
    assert stats_calls == [1]  # the check and, after a refusal, the page again: one getAllDomainStats
    if gone is None:
        html = response.content.decode()
        assert response.status_code == 200
        assert 'class="field-error" data-error-for="volume"' in html and refusal in html
        assert "nothing was deleted" in html and "<i>gamma" not in html
        assert 'id="force-off" checked' in html  # the ticks survive the refusal
        assert world(share_host) == before  # alpha still defined, every volume still there
        assert events("vm.delete") == [("alpha", "failed")]
        return
    assert response.status_code == 302
    assert world(share_host) == ([vm for vm in VMS if vm != "alpha"], [v for v in VOLUMES if v not in gone])
    assert events("vm.delete") == [("alpha", "ok")]
    # The VMs that share alpha's other volumes still have every one of them.
    assert disks_of(share_host, "beta") == [f"{IMAGES}/{v}" for v in ("beta.qcow2", "data.qcow2")] + [None] + \
        [f"{IMAGES}/{v}" for v in ("installer.iso", "tools.iso")]


def test_the_virt_layer_refuses_a_shared_volume_without_the_page(share_host: Host) -> None:
    before = world(share_host)

    def delete(conn: libvirt.virConnect) -> object:
        return delete_vm(conn.lookupByUUIDString(BETA), [f"{IMAGES}/ref.qcow2"], force_off=True)

    with pytest.raises(VolumeChoiceError, match=r"ref\.qcow2 is also used by VM alpha") as refused:
        services.call(share_host, delete)
    assert [vol.name for vol in refused.value.plan.deletable] == ["beta.qcow2"]
    assert world(share_host) == before


def test_deleting_the_last_user_of_an_iso_still_keeps_the_cdrom_image(admin_client: Client,
                                                                      share_host: Host) -> None:
    """A CD-ROM image is never offered, shared or not: a ticked one is refused like any foreign key."""
    for vm_uuid in (ALPHA, BETA):
        assert admin_client.post(delete_url(vm_uuid), {"force_off": "1"}).status_code == 302
    page = admin_client.get(delete_url(SOLO))
    assert [(v.name, v.shared_with) for v in page.context["kept"]] == [("installer.iso", ())]
    refused = admin_client.post(delete_url(SOLO), {"volume": f"{IMAGES}/installer.iso", "force_off": "1"})
    assert "not disks of this VM" in refused.content.decode()
    assert "solo" in world(share_host)[0] and "installer.iso" in world(share_host)[1]


# --- the create form --------------------------------------------------------------------------------------

REFUSED_BOOT_VOLUMES = [  # an existing volume chosen as the boot disk, and who uses it already
    ("images/data.qcow2", "VMs alpha, beta"),
    ("images/ref.qcow2", "VMs alpha, beta"),  # beta names it by pool/volume, alpha by path
    # An ISO is shareable on a CD-ROM, never a writable disk: the form does not offer it (no host call).
    ("images/installer.iso", ""),
    ("images/tools.iso", ""),
    ("images/pair.qcow2", "VMs &lt;i&gt;gamma&amp;co, alpha"),
]


@pytest.mark.parametrize(("volume", "users"), REFUSED_BOOT_VOLUMES, ids=[v for v, _ in REFUSED_BOOT_VOLUMES])
def test_create_refuses_a_boot_volume_another_vm_uses(admin_client: Client, share_host: Host, stats_calls: list[int],
                                                      volume: str, users: str) -> None:
    before = world(share_host)
    response = admin_client.post(CREATE_URL, {**GOOD_FORM, "disk_source": "existing", "existing_volume": volume})
    html = response.content.decode()
    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["existing_volume"]
    assert (f"Volume {volume} is already used by {users}" if users else "Select a valid choice") in html
    assert 'class="field-error"' in html and "<i>gamma" not in html
    assert world(share_host) == before  # no VM, no volume
    assert events("vm.create") == []
    assert stats_calls == ([1] if users else [])


def test_the_boot_disk_cannot_be_the_cdrom_image_too(admin_client: Client, share_host: Host) -> None:
    before = world(share_host)
    response = admin_client.post(CREATE_URL, {**GOOD_FORM, "disk_source": "existing",
                                              "existing_volume": "images/free.iso", "iso": "images/free.iso"})
    assert response.status_code == 200 and "existing_volume" in response.context["form"].errors
    assert world(share_host) == before


ALLOWED = [  # form changes, the new VM's disks, getAllDomainStats calls
    ({"disk_source": "existing", "existing_volume": "images/golden.img"}, ["golden.img"], 1),
    ({"iso": "images/installer.iso"}, ["app-01.qcow2", "installer.iso"], 0),
    ({"disk_source": "existing", "existing_volume": "images/golden.img", "iso": "images/installer.iso"},
     ["golden.img", "installer.iso"], 1),
    ({"disk_source": "existing", "existing_volume": "images/golden.img", "iso": "images/tools.iso"},
     ["golden.img", "tools.iso"], 1),
]


@pytest.mark.parametrize(("change", "disks", "stats"), ALLOWED,
                         ids=["unused-volume", "shared-iso-on-cdrom", "unused-volume-and-shared-iso",
                              "iso-another-vm-has-as-disk"])
def test_create_shares_isos_and_takes_free_volumes(admin_client: Client, share_host: Host, stats_calls: list[int],
                                                   change: dict[str, str], disks: list[str], stats: int) -> None:
    response = admin_client.post(CREATE_URL, {**GOOD_FORM, **change})
    assert response.status_code == 302, response.context and response.context["form"].errors
    assert disks_of(share_host, "app-01") == [f"{IMAGES}/{d}" for d in disks]
    assert world(share_host) == (sorted([*VMS, "app-01"]), sorted({*VOLUMES, *disks}))
    assert events("vm.create") == [("app-01", "ok")]
    assert len(stats_calls) == stats


def test_a_vanished_volume_is_said_in_words(admin_client: Client, share_host: Host,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The volume the form offered is gone when the host is asked who uses it: libvirt's words, no 500."""
    real: Callable[..., Any] = libvirt.virStoragePool.storageVolLookupByName

    def gone(self: libvirt.virStoragePool, name: str) -> Any:
        if name == "golden.img":
            raise libvirt.libvirtError("Storage volume not found: golden.img (this test)")
        return real(self, name)

    monkeypatch.setattr(libvirt.virStoragePool, "storageVolLookupByName", gone)
    response = admin_client.post(CREATE_URL, {**GOOD_FORM, "disk_source": "existing",
                                              "existing_volume": "images/golden.img"})
    assert response.status_code == 200 and "golden.img (this test)" in response.content.decode()
    assert "app-01" not in world(share_host)[0]
