"""The VM page on libvirt's test driver: its actions grouped by state, the autostart switch that applies,
GET of every action URL (a reloaded confirmation), what a shutdown says and offers, and since when a VM is
in its state as every panel process reads it. libvirt and the rendered page are asked."""

from __future__ import annotations

import os
import time
from pathlib import Path

import libvirt
import pytest
from django.test import Client
from django.urls import reverse
from lxml import html as lxml_html

from hosts import services
from hosts.models import Host
from instances import operations as ops
from instances import state_since
from instances.fleet import meter
from instances.models import VMState
from tests.conftest import DB_01_UUID, WEB_01_UUID
from virt import lifecycle, process_start
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db


def detail_url(uuid: str = WEB_01_UUID) -> str:
    return reverse("instances:detail", args=["testhost", uuid])


def page(client: Client, uuid: str = WEB_01_UUID) -> lxml_html.HtmlElement:
    response = client.get(detail_url(uuid))
    assert response.status_code == 200
    return lxml_html.fromstring(response.content.decode())


def fact(doc: lxml_html.HtmlElement, name: str) -> str:
    return " ".join(doc.xpath(f"//dd[@data-fact='{name}']")[0].text_content().split())


def world(host: Host) -> list[str]:
    """Everything an action could change: each VM's definition, state, autostart, saved state and snapshots."""
    def read(conn: libvirt.virConnect) -> list[str]:
        return [f"{d.XMLDesc(0)}{d.state()}{d.autostart()}{d.hasManagedSaveImage(0)}{d.snapshotListNames(0)}"
                for d in conn.listAllDomains(0)]
    return services.call(host, read)


def on_web(host: Host, method: str) -> None:
    services.change(host, lambda conn: getattr(conn.lookupByUUIDString(WEB_01_UUID), method)())


# ---- the actions up front, in "More", and apart (those that lose data) --------------------------------

# state set up by a libvirt call, the actions up front, in More, apart with a confirmation
GROUPS = [
    (None, ["shutdown"], ["reboot", "suspend", "managedsave", "autostart-on"], ["reset", "destroy"]),
    ("suspend", ["resume"], ["managedsave", "autostart-on"], ["reset", "destroy"]),
    ("destroy", ["start"], ["autostart-on"], []),
]


@pytest.mark.parametrize(("before", "primary", "more", "apart"), GROUPS, ids=["running", "paused", "shut-off"])
def test_actions_up_front_in_more_and_apart(admin_client: Client, test_host: Host, before, primary, more,
                                            apart) -> None:
    if before:
        on_web(test_host, before)
    doc = page(admin_client)
    assert doc.xpath("//div[@id='actions']/form//button/@value") == primary
    menu = doc.xpath("//details[@id='vm-more']")[0]
    assert menu.xpath(".//form[not(@data-confirm)]//button/@value") == more
    assert menu.xpath(".//form[@data-confirm]//button[contains(@class, 'danger')]/@value") == apart
    for form in menu.xpath(".//form[@data-confirm]"):  # the sentence the dialog (static/js/confirm.js) shows
        assert form.get("data-confirm") == lifecycle.ACTIONS[form.xpath(".//button/@value")[0]].confirm
    # Destructive ones come after the others, below a separator, with Delete.
    items = [el.tag for el in menu.xpath("./div/*")]
    assert items.index("hr") > max(i for i, tag in enumerate(items) if tag == "form" and i < items.index("hr"))
    assert menu.xpath(".//hr/following-sibling::a[@id='delete-link'][contains(@class, 'danger')]")
    assert bool(doc.xpath("//div[@id='actions']/a[@id='open-console']")) == (before != "destroy")
    assert doc.xpath("//details[@id='vm-more']//a[@id='edit-xml']") and doc.xpath("//a[@id='migrate']")


def test_every_action_has_an_installed_icon() -> None:
    from instances.views.detail import ICONS
    from webkvm.templatetags.icons import icon_svg

    assert set(ICONS) == set(lifecycle.ACTIONS)
    for name in ICONS.values():
        assert "<svg" in icon_svg(name)


def test_a_user_with_power_only_gets_no_admin_entries(personas: dict[str, Client], test_host: Host) -> None:
    doc = page(personas["user"])
    assert doc.xpath("//div[@id='actions']/form//button/@value") == ["shutdown"]
    assert not doc.xpath("//*[@id='edit-xml' or @id='migrate' or @id='link-clone' or @id='share' or @id='delete-link']")
    assert not doc.xpath("//form[@id='rename' or @id='describe']")


# ---- bug 2: the autostart switch that applies ---------------------------------------------------------

@pytest.mark.parametrize("autostart", [False, True], ids=["off", "on"])
def test_the_page_offers_the_autostart_switch_that_applies(admin_client: Client, test_host: Host,
                                                            autostart: bool) -> None:
    services.change(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).setAutostart(int(autostart)))
    text = admin_client.get(detail_url()).content.decode()
    switch = {name: reverse("instances:action", args=["testhost", WEB_01_UUID, name]) in text
              for name in ("autostart-on", "autostart-off")}
    assert switch == {"autostart-on": not autostart, "autostart-off": autostart}
    doc = page(admin_client)
    offered = doc.xpath("//details[@id='vm-more']//button[starts-with(@value, 'autostart-')]")
    assert [(b.get("value"), b.text_content().strip()) for b in offered] == [
        ("autostart-off", "Do not start with the host") if autostart else ("autostart-on", "Start with the host")]
    assert fact(doc, "autostart") == ("yes" if autostart else "no")


# ---- bug 7: GET of every action URL: a confirmation or a page, never 405, never a change ----------------

def _action_routes() -> list[tuple[str, list[str], str]]:
    """(route, extra URL arguments, what GET answers): every declared VM action, then the other VM changes
    a reload can reach."""
    routes = [("instances:action", [name], "confirm" if lifecycle.ACTIONS[name].confirm else "vm")
              for name in sorted(ops.ACTIONS)]
    return [*routes, ("instances:rename", [], "vm"), ("instances:describe", [], "vm"),
            ("instances:snapshot_create", [], "snapshots"), ("instances:snapshot_revert", [], "snapshots"),
            ("instances:snapshot_delete", [], "snapshots")]


@pytest.mark.parametrize(("route", "args", "answer"), _action_routes(),
                         ids=[f"{r.split(':')[1]}{'-' if a else ''}{''.join(a)}" for r, a, _ in _action_routes()])
def test_get_on_an_action_url_confirms_or_leads_back_and_changes_nothing(admin_client: Client, test_host: Host,
                                                                        route, args, answer) -> None:
    before = world(test_host)
    url = reverse(route, args=["testhost", WEB_01_UUID, *args])
    # confirm=yes in a URL confirms nothing: only a POSTed confirmation runs an action.
    response = admin_client.get(url, {"confirm": "yes", "next": "/instances/?state=running"})
    if answer == "confirm":
        assert response.status_code == 200
        doc = lxml_html.fromstring(response.content.decode())
        form = doc.xpath(f"//form[@method='post'][@action='{url}']")[0]
        assert form.xpath(".//input[@name='confirm']/@value") == ["yes"]
        assert form.xpath(".//input[@name='next']/@value") == ["/instances/?state=running"]
        assert form.xpath(".//button[@type='submit']")[0].text_content().strip() == lifecycle.ACTIONS[args[0]].label
        assert lifecycle.ACTIONS[args[0]].confirm in doc.text_content()
    else:
        assert response.status_code == 302
        expected = {"vm": "/instances/?state=running",  # where it came from, as after the POST
                    "snapshots": reverse("instances:snapshots", args=["testhost", WEB_01_UUID])}[answer]
        assert response["Location"] == expected
    assert world(test_host) == before
    assert not AuditEvent.objects.filter(action__startswith="vm.").exists()


@pytest.mark.parametrize("action", ["revert", "delete"])
def test_get_of_a_snapshot_confirmation_shows_it_again(admin_client: Client, test_host: Host, action: str) -> None:
    admin_client.post(reverse("instances:snapshot_create", args=["testhost", DB_01_UUID]),
                      {"name": "before-upgrade", "description": ""})
    services.change(test_host, lambda conn: None)  # drop the kept reads
    before = world(test_host)
    url = reverse(f"instances:snapshot_{action}", args=["testhost", DB_01_UUID])
    response = admin_client.get(url, {"snapshot": "before-upgrade"})
    assert response.status_code == 200
    doc = lxml_html.fromstring(response.content.decode())
    assert doc.xpath("//form[@method='post']//input[@name='snapshot']/@value") == ["before-upgrade"]
    assert doc.xpath(f"//button[@id='confirm-{action}']")
    assert world(test_host) == before


# ---- bug 3: a shutdown says it asked; a guest that keeps running is offered Force off ------------------

def test_shutdown_says_what_happened(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post(reverse("instances:action", args=["testhost", WEB_01_UUID, "shutdown"]), follow=True)
    text = response.content.decode()
    # The test driver's guests obey at once: the message says the state the VM is in, never just "done".
    assert "web-01: shut down: it is shut off." in text and "done" not in text
    assert services.call(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).state()[0]) \
        == libvirt.VIR_DOMAIN_SHUTOFF
    assert not lxml_html.fromstring(text).xpath("//*[@id='shutdown-pending']")


@pytest.mark.parametrize(("asked_ago", "offered"), [(5, False), (31, True), (16 * 60, None)],
                         ids=["just-asked", "ignored", "long-ago"])
def test_a_guest_still_running_after_a_shutdown_request_is_offered_force_off(admin_client: Client, test_host: Host,
                                                                           asked_ago: int, offered) -> None:
    # The test driver's guests always obey: this is what the panel records when a guest ignored the request
    # (tests/integration/test_instances_lab.py asks a real one).
    state_since.record(test_host, WEB_01_UUID, "running", shutdown_asked=True)
    VMState.objects.filter(vm_uuid=WEB_01_UUID).update(shutdown_asked=time.time() - asked_ago)
    doc = page(admin_client)
    notice = doc.xpath("//*[@id='shutdown-pending']")
    if offered is None:  # old news: the notice went
        assert not notice
        return
    assert "Asked the guest to shut down" in notice[0].text_content()
    force_off = notice[0].xpath(".//*[@id='shutdown-force-off']")[0]
    assert (force_off.get("hidden") is None) == offered
    form = force_off.xpath(".//form")[0]
    assert form.get("action") == reverse("instances:action", args=["testhost", WEB_01_UUID, "destroy"])
    assert form.get("data-confirm") == lifecycle.ACTIONS["destroy"].confirm
    assert int(notice[0].get("data-force-off-in")) in ({0} if offered else range(20, 26))  # a slow machine's seconds
    assert bool(notice[0].xpath(".//*[@id='shutdown-wait']")) != offered
    # Once it stops, the notice goes.
    on_web(test_host, "destroy")
    assert not page(admin_client).xpath("//*[@id='shutdown-pending']")


# ---- bug 5: since when, shared by every process and kept across restarts --------------------------------

def forget_this_process() -> None:
    """What a second panel process (or this one after a restart) starts with: no meter, no connection, no
    kept reads. (The test driver's world is read again from its file: web-01 running, as the panel left it.)"""
    meter._seen.clear()
    services.registry.close_all()


def test_running_for_after_the_panel_started_it_in_any_process(admin_client: Client, test_host: Host) -> None:
    admin_client.post(reverse("instances:action", args=["testhost", WEB_01_UUID, "destroy"]), {"confirm": "yes"})
    admin_client.post(reverse("instances:action", args=["testhost", WEB_01_UUID, "start"]))
    doc = page(admin_client)
    assert doc.xpath("//dd[@data-fact='since']/preceding-sibling::dt[1]")[0].text == "Running for"
    assert fact(doc, "since") == "less than a minute"
    forget_this_process()
    assert fact(page(admin_client), "since") == "less than a minute"
    row = admin_client.get(reverse("instances:rows")).json()["vms"][f"testhost/{WEB_01_UUID}"]
    assert time.time() - row["state_since"] < 60 and row["state_since_at_least"] is False


def test_a_state_first_seen_is_known_at_least_since_then(admin_client: Client, test_host: Host) -> None:
    rows = admin_client.get(reverse("instances:rows")).json()["vms"]
    db = rows[f"testhost/{DB_01_UUID}"]  # never changed while the panel watched: it began before it looked
    assert db["state_since"] is not None and db["state_since_at_least"] is True
    assert fact(page(admin_client, DB_01_UUID), "since") == "unknown"  # seen for less than a minute
    VMState.objects.filter(vm_uuid=DB_01_UUID).update(since=time.time() - 3 * 3600)
    forget_this_process()
    assert fact(page(admin_client, DB_01_UUID), "since") == "at least 3 h"
    # A change the panel sees (here made outside it) begins then.
    services.change(test_host, lambda conn: conn.lookupByUUIDString(DB_01_UUID).suspend())
    doc = page(admin_client, DB_01_UUID)
    assert fact(doc, "since") == "less than a minute" and fact(doc, "state") == "paused"
    # A VM the host no longer has leaves no record behind.
    services.change(test_host, lambda conn: (conn.lookupByUUIDString(DB_01_UUID).destroy(),
                                             conn.lookupByUUIDString(DB_01_UUID).undefine()))
    admin_client.get(reverse("instances:rows"))
    assert not VMState.objects.filter(vm_uuid=DB_01_UUID).exists()


# qemu's pid file and /proc as the local qemu driver leaves them (laid out in a temporary folder)
STAT = "4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 {ticks} 1000 200"


@pytest.mark.parametrize(("pid_file", "cmdline", "expected"), [
    ("4242", f"qemu-system-x86_64\0-name\0guest=web-01\0-uuid\0{WEB_01_UUID}\0", 1_700_000_000 + 123),
    ("4242", "qemu-system-x86_64\0-name\0guest=other\0-uuid\0" + "9" * 8 + "\0", None),  # a stale pid file
    ("", "", None),  # no pid file: not running here
    ("junk", "", None),
], ids=["running", "stale-pid", "no-pid-file", "junk"])
def test_qemu_process_start_of_a_local_vm(tmp_path: Path, pid_file: str, cmdline: str, expected) -> None:
    pids, proc = tmp_path / "run", tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    pids.mkdir()
    if pid_file:
        (pids / "web-01.pid").write_text(pid_file)
    (proc / "4242" / "cmdline").write_bytes(cmdline.encode())
    ticks = 123 * os.sysconf("SC_CLK_TCK")
    (proc / "4242" / "stat").write_text(STAT.format(ticks=ticks))
    (proc / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
    assert process_start.started_at("web-01", WEB_01_UUID, pids, proc) == expected
