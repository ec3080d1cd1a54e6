"""Fleet view, detail page and VM actions on libvirt's test driver; libvirt is asked afterwards."""

from __future__ import annotations

import threading
import time

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from tests.conftest import DB_01_UUID, WEB_01_UUID
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db
XSS_UUID = "33333333-3333-4333-8333-333333333333"


def state_of(host: Host, uuid: str) -> int:
    return services.call(host, lambda conn: conn.lookupByUUIDString(uuid).state()[0])


def act(client: Client, host: Host, uuid: str, action: str, **data: str):
    return client.post(reverse("instances:action", args=[host.name, uuid, action]), data)


def test_fleet_lists_every_vm_with_its_facts(admin_client: Client, test_host: Host) -> None:
    page = admin_client.get(reverse("instances:list"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-key="testhost/11111111-1111-4111-8111-111111111111"' in html
    assert "web-01" in html and "db-01" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html
    web = next(item.row for item in page.context["fleet"].rows if item.row.name == "web-01")
    assert (web.state, web.vcpus, web.memory_kib) == ("running", 2, 1024 * 1024)
    assert page.context["fleet"].total == 3


def test_filters_and_sort(admin_client: Client, test_host: Host) -> None:
    services.call(test_host, lambda conn: conn.lookupByName("db-01").destroy())
    names = lambda resp: [item.row.name for item in resp.context["fleet"].rows]  # noqa: E731
    assert names(admin_client.get(reverse("instances:list"), {"state": "shut off"})) == ["db-01"]
    assert names(admin_client.get(reverse("instances:list"), {"q": "WEB"})) == ["web-01"]
    assert names(admin_client.get(reverse("instances:list"), {"q": WEB_01_UUID[:8]})) == ["web-01"]
    by_memory = names(admin_client.get(reverse("instances:list"), {"sort": "-memory"}))
    assert by_memory == ["db-01", "web-01", "<img src=x onerror=alert(1)>"]
    # Junk in the query string is ignored, never a 500.
    assert admin_client.get(reverse("instances:list"), {"sort": "'; drop", "state": "x" * 500}).status_code == 200
    host_page = admin_client.get(reverse("instances:host", args=["testhost"]))
    assert host_page.status_code == 200 and len(host_page.context["fleet"].rows) == 3
    assert admin_client.get(reverse("instances:host", args=["nope"])).status_code == 404


def test_rows_json_follows_state_changes_and_measures_cpu(admin_client: Client, test_host: Host) -> None:
    first = admin_client.get(reverse("instances:rows")).json()
    key = f"testhost/{DB_01_UUID}"
    assert first["vms"][key]["state"] == "running"
    services.change(test_host, lambda conn: conn.lookupByName("db-01").suspend())
    time.sleep(0.6)
    second = admin_client.get(reverse("instances:rows")).json()
    assert second["vms"][key]["state"] == "paused"
    assert second["vms"][key]["state_since"] is not None  # the panel saw it change
    assert second["vms"][f"testhost/{WEB_01_UUID}"]["cpu_percent"] is not None


def test_users_see_only_granted_vms(personas: dict[str, Client], test_host: Host) -> None:
    rows = personas["user"].get(reverse("instances:rows")).json()["vms"]
    assert list(rows) == [f"testhost/{WEB_01_UUID}"]
    assert personas["outsider"].get(reverse("instances:rows")).json()["vms"] == {}
    page = personas["user"].get(reverse("instances:list")).content.decode()
    assert "web-01" in page and "db-01" not in page
    assert personas["anonymous"].get(reverse("instances:list")).status_code == 302


def test_unreachable_host_is_one_row_and_does_not_hide_the_others(admin_client: Client, test_host: Host) -> None:
    Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=9, path="system", insecure_tcp=True)
    started = time.monotonic()
    page = admin_client.get(reverse("instances:list"))
    assert time.monotonic() - started < 5
    html = page.content.decode()
    assert 'class="unreachable" data-host="gone"' in html and "gone: unreachable" in html
    assert "web-01" in html
    assert admin_client.get(reverse("instances:rows")).json()["unreachable"]["gone"]


def test_detail_page_shows_the_vm(admin_client: Client, test_host: Host) -> None:
    page = admin_client.get(reverse("instances:detail", args=["testhost", WEB_01_UUID]))
    assert page.status_code == 200
    vm = page.context["vm"]
    assert (vm.name, vm.state, vm.vcpus, vm.memory_kib) == ("web-01", "running", 2, 1024 * 1024)
    html = page.content.decode()
    assert "VNC on 127.0.0.1, port 5899" in html
    assert [a.name for a in page.context["actions"]][:3] == ["shutdown", "reboot", "suspend"]
    stats = admin_client.get(reverse("instances:stats", args=["testhost", WEB_01_UUID])).json()
    assert stats["state"] == "running" and stats["vcpus"] == 2 and stats["cpu_time_ns"] > 0
    missing = reverse("instances:detail", args=["testhost", "99999999-9999-4999-8999-999999999999"])
    assert admin_client.get(missing).status_code == 404


# action, state before (set up by a libvirt call), state after
LIFECYCLE = [
    ("shutdown", None, libvirt.VIR_DOMAIN_SHUTOFF),
    ("reboot", None, libvirt.VIR_DOMAIN_RUNNING),
    ("suspend", None, libvirt.VIR_DOMAIN_PAUSED),
    ("resume", "suspend", libvirt.VIR_DOMAIN_RUNNING),
    ("start", "destroy", libvirt.VIR_DOMAIN_RUNNING),
    ("managedsave", None, libvirt.VIR_DOMAIN_SHUTOFF),
]


@pytest.mark.parametrize(("action", "before", "after"), LIFECYCLE, ids=[a for a, _, _ in LIFECYCLE])
def test_lifecycle_actions(admin_client: Client, test_host: Host, action, before, after) -> None:
    if before:
        services.call(test_host, lambda conn: getattr(conn.lookupByUUIDString(WEB_01_UUID), before)())
    response = act(admin_client, test_host, WEB_01_UUID, action)
    assert response.status_code == 302
    assert state_of(test_host, WEB_01_UUID) == after
    event = AuditEvent.objects.get(action=f"vm.{action}")
    assert (event.result, event.object_name, event.host_name) == ("ok", "web-01", "testhost")


def test_managed_save_then_restore_then_discard(admin_client: Client, test_host: Host) -> None:
    act(admin_client, test_host, WEB_01_UUID, "managedsave")
    has_save = lambda: services.call(  # noqa: E731
        test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).hasManagedSaveImage(0))
    assert has_save()
    page = admin_client.get(reverse("instances:detail", args=["testhost", WEB_01_UUID]))
    assert [a.name for a in page.context["actions"]][:2] == ["restore", "discard-save"]
    act(admin_client, test_host, WEB_01_UUID, "restore")
    assert state_of(test_host, WEB_01_UUID) == libvirt.VIR_DOMAIN_RUNNING and not has_save()
    act(admin_client, test_host, WEB_01_UUID, "managedsave")
    act(admin_client, test_host, WEB_01_UUID, "discard-save", confirm="yes")
    assert not has_save() and state_of(test_host, WEB_01_UUID) == libvirt.VIR_DOMAIN_SHUTOFF


def test_destructive_actions_need_confirmation(admin_client: Client, test_host: Host) -> None:
    page = act(admin_client, test_host, WEB_01_UUID, "destroy")
    assert page.status_code == 200 and "unsaved data in the guest is lost" in page.content.decode()
    assert state_of(test_host, WEB_01_UUID) == libvirt.VIR_DOMAIN_RUNNING
    assert not AuditEvent.objects.filter(action="vm.destroy").exists()
    act(admin_client, test_host, WEB_01_UUID, "destroy", confirm="yes")
    assert state_of(test_host, WEB_01_UUID) == libvirt.VIR_DOMAIN_SHUTOFF
    act(admin_client, test_host, DB_01_UUID, "reset", confirm="yes")
    assert AuditEvent.objects.get(action="vm.reset").result == "ok"


def test_wrong_state_is_a_message_not_a_500(admin_client: Client, test_host: Host) -> None:
    response = act(admin_client, test_host, WEB_01_UUID, "resume")
    assert response.status_code == 302
    page = admin_client.get(response["Location"]).content.decode()
    assert "web-01 is running: &#x27;Resume&#x27; is not possible now." in page
    assert AuditEvent.objects.get(action="vm.resume").result == "failed"
    assert act(admin_client, test_host, WEB_01_UUID, "explode").status_code == 404


def test_autostart(admin_client: Client, test_host: Host) -> None:
    autostart = lambda: services.call(  # noqa: E731
        test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).autostart())
    act(admin_client, test_host, WEB_01_UUID, "autostart-on")
    assert autostart() == 1
    rows = admin_client.get(reverse("instances:rows")).json()["vms"]
    assert rows[f"testhost/{WEB_01_UUID}"]["autostart"] is True
    act(admin_client, test_host, WEB_01_UUID, "autostart-off")
    assert autostart() == 0


def test_rename_only_when_shut_off_and_with_a_clean_name(admin_client: Client, test_host: Host) -> None:
    url = reverse("instances:rename", args=["testhost", WEB_01_UUID])
    name = lambda: services.call(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).name())  # noqa: E731
    admin_client.post(url, {"name": "web-renamed"})
    assert name() == "web-01"  # running
    services.call(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).destroy())
    for bad in ("a/b", "<b>x</b>", "", "x" * 64, "db-01", "../etc"):
        response = admin_client.post(url, {"name": bad}, follow=True)
        assert response.status_code == 200 and name() == "web-01", bad
        assert "msg error" in response.content.decode()
    admin_client.post(url, {"name": "web-renamed"})
    assert name() == "web-renamed"
    assert AuditEvent.objects.filter(action="vm.rename", result="ok").count() == 1


def test_title_and_description(admin_client: Client, test_host: Host) -> None:
    url = reverse("instances:describe", args=["testhost", WEB_01_UUID])
    admin_client.post(url, {"title": "Web <front>", "description": "line 1\nline 2"})
    xml = services.call(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).XMLDesc(0))
    assert "<title>Web &lt;front&gt;</title>" in xml and "line 1\nline 2" in xml
    page = admin_client.get(reverse("instances:detail", args=["testhost", WEB_01_UUID])).content.decode()
    assert "Web &lt;front&gt;" in page
    admin_client.post(url, {"title": "x" * 201, "description": ""})
    assert AuditEvent.objects.filter(action="vm.describe", result="failed").count() == 1
    xml = services.call(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).XMLDesc(0))
    assert "<title>Web &lt;front&gt;</title>" in xml  # nothing lost


def test_second_concurrent_action_is_busy(admin_client: Client, test_host: Host) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(conn):
        started.set()
        release.wait(5)

    worker = threading.Thread(target=services.call_locked, args=(test_host, WEB_01_UUID, slow, 10))
    worker.start()
    assert started.wait(5)
    try:
        response = act(admin_client, test_host, WEB_01_UUID, "suspend")
        page = admin_client.get(response["Location"]).content.decode()
        assert "Another action on this VM is still running" in page
        assert state_of(test_host, WEB_01_UUID) == libvirt.VIR_DOMAIN_RUNNING
        assert AuditEvent.objects.get(action="vm.suspend").result == "failed"
    finally:
        release.set()
        worker.join()
    act(admin_client, test_host, WEB_01_UUID, "suspend")  # the lock was released
    assert state_of(test_host, WEB_01_UUID) == libvirt.VIR_DOMAIN_PAUSED


def test_view_pages_need_a_grant(personas: dict[str, Client], test_host: Host) -> None:
    for name in ("instances:detail", "instances:stats"):
        assert personas["user"].get(reverse(name, args=["testhost", WEB_01_UUID])).status_code == 200
        assert personas["user"].get(reverse(name, args=["testhost", DB_01_UUID])).status_code == 403
        assert personas["outsider"].get(reverse(name, args=["testhost", WEB_01_UUID])).status_code == 403
    page = personas["user"].get(reverse("instances:detail", args=["testhost", WEB_01_UUID]))
    assert {a.permission for a in page.context["actions"]} == {"power"}  # no autostart: no change grant
    assert "Rename" not in page.content.decode()


def test_redirect_back_only_to_the_panel(admin_client: Client, test_host: Host) -> None:
    response = act(admin_client, test_host, WEB_01_UUID, "suspend", next="https://evil.example/")
    assert response["Location"] == reverse("instances:detail", args=["testhost", WEB_01_UUID])
    response = act(admin_client, test_host, WEB_01_UUID, "resume", next="/instances/?state=paused")
    assert response["Location"] == "/instances/?state=paused"


def test_large_fleets_are_paged(admin_client: Client, test_host: Host, monkeypatch) -> None:
    from instances.views import fleet as fleet_views

    monkeypatch.setattr(fleet_views, "PAGE_SIZE", 2)
    first = admin_client.get(reverse("instances:list"), {"sort": "name"})
    assert [item.row.name for item in first.context["page"]] == ["<img src=x onerror=alert(1)>", "db-01"]
    assert "page 1 of 2" in first.content.decode()
    second = admin_client.get(reverse("instances:list"), {"sort": "name", "page": "2"})
    assert [item.row.name for item in second.context["page"]] == ["web-01"]
    assert list(admin_client.get(reverse("instances:rows"), {"sort": "name", "page": "2"}).json()["vms"]) == [
        f"testhost/{WEB_01_UUID}"]
    assert admin_client.get(reverse("instances:list"), {"page": "junk"}).status_code == 200


def test_meter_forgets_vms_that_are_gone(admin_client: Client, test_host: Host) -> None:
    from instances.fleet import meter

    admin_client.get(reverse("instances:rows"))
    key = (str(test_host.pk), DB_01_UUID)
    assert key in meter._seen
    services.change(test_host, lambda conn: (conn.lookupByName("db-01").destroy(),
                                             conn.lookupByName("db-01").undefine()))
    admin_client.get(reverse("instances:rows"))
    assert key not in meter._seen


def test_console_link_only_with_the_console_grant(personas: dict[str, Client], granted_user, test_host: Host) -> None:
    link = f'href="/console/testhost/{WEB_01_UUID}/"'
    assert link in personas["user"].get(reverse("instances:list")).content.decode()
    assert link in personas["admin"].get(reverse("instances:list")).content.decode()
    VMGrant.objects.filter(user=granted_user).update(can_console=False)
    assert link not in personas["user"].get(reverse("instances:list")).content.decode()


def test_usage_polls_of_many_viewers_share_one_read(personas: dict[str, Client], test_host: Host, monkeypatch) -> None:
    import virt.reads

    asked: list[str] = []
    real = virt.reads.domain_sample
    monkeypatch.setattr(virt.reads, "domain_sample", lambda dom: (asked.append(dom.name()), real(dom))[1])
    url = reverse("instances:stats", args=["testhost", WEB_01_UUID])
    for _ in range(3):
        assert personas["admin"].get(url).status_code == 200
        assert personas["user"].get(url).status_code == 200
    assert asked == ["web-01"]  # six polls within the freshness window: one libvirt read
    assert personas["outsider"].get(url).status_code == 403  # the permission check comes before any read
