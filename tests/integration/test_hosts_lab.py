"""Hosts over every transport on the real lab libvirtd, and what happens when a host fails."""

from __future__ import annotations

import math
import re
import subprocess
import time
import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from lab import labctl
from tests.conftest import PASSWORD, need
from virt.connections import HostState
from virt.shared_reads import SharedReads
from virt.ssh import HostKey
from virt.xml.codecs import iec
from webkvm import permissions
from webkvm.models import AuditEvent, VMGrant

# The freshness window of shared reads plus the grace in which a new read's predecessor still serves.
READ_WINDOW = services.registry.fresh_for + SharedReads().stale_for + 0.1

pytestmark = [pytest.mark.django_db, pytest.mark.lab]


def virsh(uri: str, *args: str) -> str:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, check=True, timeout=30).stdout


def fact(page: str, name: str) -> str:
    match = re.search(rf'data-fact="{name}">([^<]*)<', page)
    assert match, f"no fact {name} on the page"
    return match.group(1)


def tcp_host(name: str = "lab-tcp") -> Host:
    return Host.objects.create(name=name, transport="tcp", hostname="127.0.0.1", port=16509, insecure_tcp=True)


def test_overview_matches_virsh(admin_client, lab: dict[str, Any], lab_domain) -> None:
    lab_domain()
    host = tcp_host()
    page = admin_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    nodeinfo = dict(line.split(":", 1) for line in virsh(lab["tcp_uri"], "nodeinfo").splitlines() if ":" in line)
    assert fact(page, "cpus") == nodeinfo["CPU(s)"].strip()
    memory_kib = int(nodeinfo["Memory size"].split()[0])
    assert fact(page, "memory") == iec(memory_kib * 1024)
    # Used and free come from one reading (free, buffers and page cache) and add up to the total shown.
    used, free = (int(re.search(rf'data-bytes="(\d+)" data-fact="{name}"', page)[1])
                  for name in ("memory_used", "free_memory"))
    assert used + free == memory_kib * 1024 and fact(page, "memory_used") == iec(used)
    assert fact(page, "memory_percent") == f"{math.floor(1000 * used / (used + free) + 0.5) / 10:.1f} %"
    names = virsh(lab["tcp_uri"], "list", "--all", "--name").split()
    running = virsh(lab["tcp_uri"], "list", "--name").split()
    assert fact(page, "domains_total") == str(len(names))
    assert fact(page, "domains_running") == str(len(running))


def test_local_socket(admin_client, lab) -> None:
    host = Host.objects.create(name="lab-local", transport="local", path="system")
    response = admin_client.post(reverse("hosts:test", args=[host.name]), follow=True)
    assert "connected to QEMU" in response.content.decode()


def test_sasl_password_right_and_wrong(admin_client, lab) -> None:
    sasl = lab["sasl"]
    for name, password, expected in [("lab-sasl", sasl["password"], "connected to QEMU"),
                                     ("lab-sasl-bad", "wrong-password", "authentication failed")]:
        response = admin_client.post(reverse("hosts:create"), {
            "name": name, "transport": "tcp", "hostname": "127.0.0.1", "port": "16510", "path": "system",
            "sasl_username": sasl["username"], "sasl_password": password})
        assert response.status_code == 302
        page = admin_client.post(reverse("hosts:test", args=[name]), follow=True).content.decode()
        assert expected in page.lower() if expected.islower() else expected in page
    assert services.status(Host.objects.get(name="lab-sasl-bad")).state == HostState.DOWN


def test_add_over_ssh_pins_the_fingerprint(admin_client, lab, panel_key_authorized) -> None:
    form = {"name": "lab-ssh", "transport": "ssh", "hostname": "127.0.0.1", "port": "2222",
            "username": "root", "path": "system"}
    first = admin_client.post(reverse("hosts:create"), form)
    assert first.status_code == 200 and not Host.objects.filter(name="lab-ssh").exists()
    lab_keys = {HostKey.parse(line).fingerprint for line in lab["ssh"]["host_keys"]}
    shown = {k.fingerprint for k in first.context["scanned_keys"]}
    assert shown & lab_keys
    assert any(fp in first.content.decode() for fp in lab_keys)
    token = first.context["host_keys_token"]
    tampered = admin_client.post(reverse("hosts:create"), {**form, "host_keys_token": token[:-2] + "xx",
                                                           "accept_host_key": "1"})
    assert tampered.status_code == 200 and not Host.objects.filter(name="lab-ssh").exists()
    saved = admin_client.post(reverse("hosts:create"), {**form, "host_keys_token": token, "accept_host_key": "1"})
    assert saved.status_code == 302
    host = Host.objects.get(name="lab-ssh")
    assert {k.fingerprint for k in host.pinned_keys} == shown
    page = admin_client.get(reverse("hosts:detail", args=["lab-ssh"])).content.decode()
    assert 'class="state up"' in page
    assert fact(page, "cpus") == virsh(lab["tcp_uri"], "nodeinfo").split("CPU(s):")[1].split()[0]


def test_ssh_unknown_and_changed_host_keys_are_refused(admin_client, lab, panel_key_authorized, tmp_path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    cases = {"lab-ssh-unknown": "", "lab-ssh-changed": f"{other[0]} {other[1]}\n"}
    for name, keys in cases.items():
        Host.objects.create(name=name, transport="ssh", hostname="127.0.0.1", port=2222, username="root",
                            ssh_host_keys=keys)
        services.sync_known_hosts()
        page = admin_client.post(reverse("hosts:test", args=[name]), follow=True).content.decode()
        assert "ssh host key verification failed" in page, page[:2000]


def test_frozen_daemon_is_unreachable_quickly_and_recovers(admin_client, lab, test_host) -> None:
    host = tcp_host()
    assert 'class="state up"' in admin_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    labctl.freeze()
    try:
        time.sleep(READ_WINDOW)  # pages may show the host's last answer this long (virt/shared_reads.py)
        began = time.monotonic()
        page = admin_client.get(reverse("hosts:list")).content.decode()
        elapsed = time.monotonic() - began
        assert elapsed < 5, elapsed
        row = page.split('data-host="lab-tcp"')[1].split("</tr>")[0]
        assert "unreachable" in row
        other = page.split('data-host="testhost"')[1].split("</tr>")[0]
        assert 'class="badge state-up"' in other
        # While frozen, further pages fail fast instead of waiting again and again.
        began = time.monotonic()
        for _ in range(3):
            admin_client.get(reverse("hosts:list"))
        assert time.monotonic() - began < 12
    finally:
        labctl.thaw()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = admin_client.get(reverse("hosts:list")).content.decode()
        if 'class="badge state-up"' in page.split('data-host="lab-tcp"')[1].split("</tr>")[0]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("host did not recover after the daemon was thawed")


def test_daemon_restart_reconnects_transparently(admin_client, lab, lab_domain) -> None:
    dom = lab_domain()
    host = tcp_host()
    conn = services.connection(host)
    assert conn.call(lambda c: c.lookupByName(dom.name()).isActive()) == 1
    labctl.restart_main_daemon()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            assert services.call(host, lambda c: c.lookupByName(dom.name()).isActive()) == 1
            break
        except Exception:
            time.sleep(0.5)
    else:
        pytest.fail("no reconnect after the daemon restarted")
    assert services.status(host).state == HostState.UP
    assert services.connection(host) is conn  # the same registry entry, a new libvirt connection underneath


def test_a_host_re_pointed_at_another_machine_suspends_its_grants(admin_client, lab, django_user_model) -> None:
    need(bool(lab.get("host2")), "the lab's second host (WEBKVM_LAB_SKIP_HOST2 is set)")
    first = re.search(r"<uuid>([^<]+)</uuid>", virsh(lab["tcp_uri"], "capabilities")).group(1)  # type: ignore[union-attr]
    host = tcp_host("moving")
    vm = str(uuid.uuid4())
    user = django_user_model.objects.create_user("eve", "", PASSWORD)
    VMGrant.objects.create(user=user, host=host, vm_uuid=vm, vm_name="x", can_console=True)
    assert admin_client.post(reverse("hosts:test", args=[host.name])).status_code == 302
    host.refresh_from_db()
    assert (host.hypervisor_uuid, host.unconfirmed_uuid) == (first, "")  # recorded when first reached
    assert permissions.can(user, "console", host=host, vm_uuid=vm)
    # The same panel host now reaches another machine (an address reused, a host edited).
    Host.objects.filter(pk=host.pk).update(hostname=lab["host2"]["address"])
    host.refresh_from_db()
    assert admin_client.post(reverse("hosts:test", args=[host.name])).status_code == 302
    host.refresh_from_db()
    assert (host.hypervisor_uuid, host.unconfirmed_uuid) == (first, lab["host2"]["host_uuid"])
    assert not permissions.can(user, "console", host=host, vm_uuid=vm)
    user_client = Client()
    user_client.force_login(user)
    assert user_client.get(reverse("instances:detail", args=[host.name, vm])).status_code == 403
    assert user_client.get(reverse("instances:host", args=[host.name])).status_code == 403
    page = admin_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    assert 'id="host-machine-changed"' in page and lab["host2"]["host_uuid"] in page
    # An admin confirms the new machine: the grants count again, and the confirmation is audited.
    assert admin_client.post(reverse("hosts:confirm_machine", args=[host.name])).status_code == 302
    host.refresh_from_db()
    assert (host.hypervisor_uuid, host.unconfirmed_uuid) == (lab["host2"]["host_uuid"], "")
    assert permissions.can(user, "console", host=host, vm_uuid=vm)
    event = AuditEvent.objects.get(action="host.confirm_machine")
    assert event.result == "ok" and first in event.detail and lab["host2"]["host_uuid"] in event.detail
    page = admin_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    assert 'id="host-machine-changed"' not in page
