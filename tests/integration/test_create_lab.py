"""Creating and deleting VMs through the panel on the lab's real libvirtd (qemu:///system).

Everything made here is named test-* (the lab's teardown removes leftovers) and is removed by the
fixtures (tests/lab_resources.py) as well.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from virt.capabilities import BIOS, host_offer
from virt.create import NewVM, NewVolume, create_vm
from virt.errors import VirtError
from virt.xml import Domain, StoragePool
from webkvm.models import AuditEvent

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


def form_for(pool: libvirt.virStoragePool, network: str, **changes: str) -> dict[str, str]:
    data = {
        "name": f"test-{uuid.uuid4().hex[:8]}", "vcpus": "1", "size": "custom", "memory": "64M", "firmware": BIOS,
        "machine": "", "cpu_mode": "default", "disk_source": "new", "disk_pool": pool.name(), "disk_size": "20M",
        "disk_format": "qcow2", "existing_volume": "", "iso": "",
        "nic1_source": f"network:{network}", "nic1_model": "virtio",
        "nic2_source": "", "nic2_model": "virtio", "nic3_source": "", "nic3_model": "virtio",
    }
    return {**data, **changes}


def snapshot(conn: libvirt.virConnect, pool: libvirt.virStoragePool) -> tuple[list[str], list[str]]:
    """Domain names on the daemon and volume files in our pool (refreshed from disk)."""
    pool.refresh(0)
    return sorted(d.name() for d in conn.listAllDomains(0)), sorted(pool.listVolumes())


def test_offer_of_the_real_host(lab: dict[str, Any], lab_host: Host, test_pool: libvirt.virStoragePool,
                                test_net: str) -> None:
    offer = services.call(lab_host, host_offer)
    assert offer.domain_type == lab["domain_type"]
    assert {"pc", "q35"} <= set(offer.machines)
    assert BIOS in offer.firmwares and "default" in offer.cpu_modes
    assert test_net in offer.networks
    pool = offer.pool(test_pool.name())
    assert pool is not None and pool.active and pool.available_bytes > 0


def test_create_run_and_delete_with_its_disk(admin_client: Client, lab_conn: libvirt.virConnect, lab_host: Host,
                                             test_pool: libvirt.virStoragePool, test_net: str,
                                             made_vms: list[str]) -> None:
    data = form_for(test_pool, test_net)
    made_vms.append(data["name"])
    response = admin_client.post(reverse("instances:create") + "?host=labhost", data)
    assert response.status_code == 302, response.context and response.context["form"].errors
    dom = lab_conn.lookupByName(data["name"])
    assert response["Location"] == reverse("instances:detail", args=["labhost", dom.UUIDString()])
    assert not dom.isActive()  # defined, not started: nobody asked
    vol_path = Path(Domain.from_xml(dom.XMLDesc(0)).disks[0].source_file or "")
    assert vol_path.parent == Path(StoragePool.from_xml(test_pool.XMLDesc(0)).target_path or "")
    assert vol_path.is_file()

    dom.create()
    assert dom.isActive()
    live = Domain.from_xml(dom.XMLDesc(0))
    assert live.graphics[0].listen == "127.0.0.1" and (live.graphics[0].port or 0) >= 5900
    assert [i.source_network for i in live.interfaces] == [test_net] and live.interfaces[0].target_dev

    url = reverse("instances:delete", args=["labhost", dom.UUIDString()])
    page = admin_client.get(url)
    assert [v.key for v in page.context["deletable"]] == [str(vol_path)] and page.context["running"]
    refused = admin_client.post(url, {"volume": str(vol_path)}, follow=True)
    assert "is running: shut it down first" in refused.content.decode()
    assert dom.isActive() and vol_path.is_file()
    assert admin_client.post(url, {"volume": str(vol_path), "force_off": "1"}).status_code == 302

    with pytest.raises(libvirt.libvirtError) as gone:
        lab_conn.lookupByName(data["name"])
    assert gone.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    assert snapshot(lab_conn, test_pool)[1] == [] and not vol_path.exists()
    events = list(AuditEvent.objects.filter(action__startswith="vm.").order_by("id").values_list("action", "result"))
    assert events == [("vm.create", "ok"), ("vm.delete", "failed"), ("vm.delete", "ok")]


def test_a_define_time_refusal_removes_the_new_volume(lab_conn: libvirt.virConnect, lab_host: Host,
                                                      test_pool: libvirt.virStoragePool, made_vms: list[str]) -> None:
    offer = services.call(lab_host, host_offer)
    spec = NewVM(name=f"test-{uuid.uuid4().hex[:8]}", vcpus=1, memory_mib=64, disk=NewVolume(test_pool.name(), 16),
                 machine="no-such-machine", domain_type=offer.domain_type)  # libvirt refuses it at define time
    made_vms.append(spec.name)
    before = snapshot(lab_conn, test_pool)
    with pytest.raises(VirtError) as refused:
        services.call(lab_host, lambda conn: create_vm(conn, spec))
    assert "Could not remove" not in str(refused.value)
    assert snapshot(lab_conn, test_pool) == before
    assert not os.listdir(StoragePool.from_xml(test_pool.XMLDesc(0)).target_path or "/nonexistent")


def test_a_define_time_refusal_through_the_panel(admin_client: Client, lab_conn: libvirt.virConnect,
                                                 lab_host: Host, test_pool: libvirt.virStoragePool, test_net: str,
                                                 made_vms: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the host listed a machine type it then refuses: the page says why, nothing is left."""
    def offer_with_bogus_machine(conn: libvirt.virConnect) -> Any:
        real = host_offer(conn)
        return dataclasses.replace(real, machines=(*real.machines, "no-such-machine"))

    monkeypatch.setattr("instances.views.create.host_offer", offer_with_bogus_machine)
    data = form_for(test_pool, test_net, machine="no-such-machine", all_machines="on")
    made_vms.append(data["name"])
    before = snapshot(lab_conn, test_pool)
    response = admin_client.post(reverse("instances:create") + "?host=labhost", data)
    assert response.status_code == 200
    assert "labhost did not create the VM: " in response.content.decode()
    assert snapshot(lab_conn, test_pool) == before
    assert list(AuditEvent.objects.filter(action="vm.create").values_list("result", flat=True)) == ["failed"]


def test_bad_input_creates_nothing_on_the_real_host(admin_client: Client, lab_conn: libvirt.virConnect,
                                                    lab_host: Host, test_pool: libvirt.virStoragePool, test_net: str,
                                                    lab_domain: Any) -> None:
    existing = lab_domain().name()
    free_gib = test_pool.info()[3] / 2**30
    cases = [
        ("name", {"name": existing}),
        ("name", {"name": "test-a/b"}),
        ("name", {"name": "<b>x</b>"}),
        ("memory", {"memory": "0M"}),
        ("memory", {"memory": "1000T"}),
        ("disk_size", {"disk_size": f"{free_gib + 10:.2f}G"}),
        ("machine", {"machine": "isapc"}),  # special purpose: not offered unless asked
        ("disk_pool", {"disk_pool": "test-no-such-pool"}),
        ("nic1_source", {"nic1_source": "network:test-no-such-net"}),
    ]
    before = snapshot(lab_conn, test_pool)
    for field, change in cases:
        data = form_for(test_pool, test_net, **change)
        response = admin_client.post(reverse("instances:create") + "?host=labhost", data)
        assert response.status_code == 200, change
        assert field in response.context["form"].errors, (change, response.context["form"].errors)
        assert snapshot(lab_conn, test_pool) == before, change
    assert not AuditEvent.objects.filter(action="vm.create").exists()
