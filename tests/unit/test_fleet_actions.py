"""A user's home page and the VM list as working pages: links, state badges, the Console link and the power
buttons each viewer's grants allow, and bulk actions on ticked rows (libvirt's test driver; libvirt and the
audit log are asked afterwards)."""

from __future__ import annotations

from typing import Any

import libvirt
import lxml.html
import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from tests.conftest import DB_01_UUID, PASSWORD, WEB_01_UUID
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db
XSS_UUID = "33333333-3333-4333-8333-333333333333"
BULK = "/instances/bulk/"


def _user(name: str = "bob", **grants: dict[str, bool]) -> tuple[Any, Client]:
    """A user with grants {uuid: {"can_power": True, ...}} on testhost, and their logged-in client."""
    user = get_user_model().objects.create_user(name, "", PASSWORD)
    host = Host.objects.get(name="testhost")
    for vm_uuid, allowed in grants.items():
        VMGrant.objects.create(user=user, host=host, vm_uuid=vm_uuid, vm_name=vm_uuid[:8], **allowed)
    client = Client()
    client.force_login(user)
    return user, client


def _set_state(host: Host, vm_uuid: str, state: str) -> None:
    def run(conn: libvirt.virConnect) -> None:
        dom = conn.lookupByUUIDString(vm_uuid)
        if state == "shut off":
            dom.destroy()
        elif state == "paused":
            dom.suspend()

    services.change(host, run)


def _state(host: Host, vm_uuid: str) -> int:
    return services.call(host, lambda conn: conn.lookupByUUIDString(vm_uuid).state()[0])


def _row(html: str, vm_uuid: str) -> Any:
    rows = lxml.html.fromstring(html).xpath(f'//tr[@data-key="testhost/{vm_uuid}"]')
    return rows[0] if rows else None


def _acts(row: Any) -> list[str]:
    return [str(el.get("data-act")) for el in row.xpath('.//td[@data-col="actions"]/*[@data-act]')]


def _said(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# grants on web-01, its state, what its row offers, whether it has a select box
ROWS = [
    ({"can_power": True, "can_console": True}, "running", ["console", "shutdown", "destroy"], True),
    ({"can_power": True, "can_console": True}, "shut off", ["start"], True),
    ({"can_power": True, "can_console": True}, "paused", ["console", "resume", "destroy"], True),
    ({"can_power": True}, "running", ["shutdown", "destroy"], True),
    ({"can_console": True}, "running", ["console"], False),
    ({"can_console": True}, "shut off", [], False),
    ({"can_delete": True}, "running", [], True),
    ({}, "running", [], False),
]


@pytest.mark.parametrize(("grants", "state", "offered", "box"), ROWS,
                         ids=[f"{'+'.join(g) or 'view'}-{s}" for g, s, _, _ in ROWS])
def test_home_rows_offer_what_the_grants_allow(test_host: Host, grants: dict[str, bool], state: str,
                                               offered: list[str], box: bool) -> None:
    _, client = _user(**{WEB_01_UUID: grants, DB_01_UUID: {}})
    _set_state(test_host, WEB_01_UUID, state)
    page = client.get(reverse("home"))
    assert page.status_code == 200
    html = page.content.decode()
    row = _row(html, WEB_01_UUID)
    assert row is not None
    assert row.xpath(f'.//a[@href="/instances/testhost/{WEB_01_UUID}/"]/text()') == ["web-01"]
    assert row.xpath('.//td[@data-col="state"]/span[contains(@class, "badge")]/@class') == [
        f"badge state-{state.replace(' ', '-')}"]
    assert _acts(row) == offered
    for name in offered:
        if name != "console":
            assert row.xpath(f'.//button[@data-act="{name}"]/@formaction') == [
                f"/instances/testhost/{WEB_01_UUID}/action/{name}/"]
    assert bool(row.xpath('.//input[@type="checkbox"][@form="bulk"]')) == box
    # db-01 (view only) is listed, running, with nothing to press; the VM without a grant is not there at all.
    other = _row(html, DB_01_UUID)
    assert other is not None and _acts(other) == [] and "state-running" in lxml.html.tostring(other).decode()
    assert XSS_UUID not in html and "onerror" not in html


def test_home_without_grants_asks_an_administrator(outsider_client: Client, test_host: Host) -> None:
    html = outsider_client.get(reverse("home")).content.decode()
    assert "Ask an administrator for access" in html
    assert 'id="fleet"' not in html and "web-01" not in html


def test_admins_land_on_the_hosts(admin_client: Client, test_host: Host) -> None:
    assert admin_client.get(reverse("home"))["Location"] == reverse("hosts:list")


def test_an_unreachable_host_says_so_on_its_own_row(test_host: Host) -> None:
    user, client = _user(**{WEB_01_UUID: {"can_power": True}})
    gone = Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    VMGrant.objects.create(user=user, host=gone, vm_uuid=DB_01_UUID, vm_name="far-away")
    html = client.get(reverse("home")).content.decode()
    unreachable = lxml.html.fromstring(html).xpath('//tr[@class="unreachable"][@data-host="gone"]')
    assert len(unreachable) == 1
    text = unreachable[0].text_content()
    assert "gone: host unavailable" in text and "far-away" in text and "refused" not in text
    assert _acts(_row(html, WEB_01_UUID)) == ["shutdown", "destroy"]  # the other host's rows work as ever


def test_unreachable_and_empty_rows_span_every_column(admin_client: Client, test_host: Host) -> None:
    Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    tree = lxml.html.fromstring(admin_client.get(reverse("instances:list")).content.decode())
    headers = len(tree.xpath('//table[@id="fleet"]/thead/tr/th'))
    assert tree.xpath('//tr[@data-host="gone"]/td/@colspan') == [str(headers)]
    assert len(tree.xpath(f'//tr[@data-key="testhost/{WEB_01_UUID}"]/td')) == headers


def test_live_rows_carry_the_badge_and_the_actions_the_state_allows(test_host: Host) -> None:
    _, client = _user(**{WEB_01_UUID: {"can_power": True}})
    _set_state(test_host, WEB_01_UUID, "shut off")
    vm = client.get(reverse("instances:rows")).json()["vms"][f"testhost/{WEB_01_UUID}"]
    assert (vm["state_class"], vm["actions"], vm["active"]) == ("state-shut-off", ["start"], False)


def _libvirt_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Every call the panel makes on libvirt connections and domains (a spy: the real call still runs)."""
    counts: dict[str, int] = {}
    for cls in (libvirt.virConnect, libvirt.virDomain):
        for name in dir(cls):
            real = getattr(cls, name)
            if name.startswith("_") or not callable(real) or name in ("name", "UUIDString", "connect"):
                continue

            def spy(*args: Any, _real: Any = real, _name: str = f"{cls.__name__}.{name}", **kwargs: Any) -> Any:
                counts[_name] = counts.get(_name, 0) + 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(cls, name, spy)
    return counts


def test_buttons_cost_no_libvirt_calls(test_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page asks each host the same calls whatever its number of VMs: rows and their buttons come from the
    host's bulk read, and no row asks its VM anything."""
    _, client = _user(**{u: {"can_power": True, "can_console": True} for u in (WEB_01_UUID, DB_01_UUID, XSS_UUID)})

    def calls() -> dict[str, int]:
        services.change(test_host, lambda conn: None)  # drop the shared read: the page reads afresh
        counts = _libvirt_calls(monkeypatch)
        assert client.get(reverse("home")).status_code == 200
        monkeypatch.undo()
        # virDomain.info: the test driver's own stand-in inside the bulk read (virt/domains.py list_domains),
        # which real drivers answer in getAllDomainStats.
        return {k: v for k, v in counts.items()
                if not k.startswith(("virConnect.isAlive", "virConnect.setKeep", "virDomain.info"))}

    few = calls()
    assert "virConnect.getAllDomainStats" in few and not [name for name in few if name.startswith("virDomain.")]

    def more(conn: libvirt.virConnect) -> None:
        template = conn.lookupByName("db-01").XMLDesc(0)
        for index in range(10):
            uuid = f"22222222-2222-4222-8222-{index:012d}"
            xml = template.replace("db-01", f"extra-{index}").replace(DB_01_UUID, uuid)
            conn.createXML(xml, 0)

    services.change(test_host, more)
    assert calls() == few


# --- bulk actions --------------------------------------------------------------------------------------


def test_bulk_start_acts_where_the_user_may_and_says_what_happened(test_host: Host) -> None:
    for vm_uuid in (WEB_01_UUID, DB_01_UUID, XSS_UUID):
        _set_state(test_host, vm_uuid, "shut off")
    _, client = _user(**{WEB_01_UUID: {"can_power": True}, DB_01_UUID: {"can_power": True}, XSS_UUID: {}})
    response = client.post(BULK, {"action": "start", "next": reverse("home"),
                                  "vm": [f"testhost/{u}" for u in (WEB_01_UUID, DB_01_UUID, XSS_UUID)]})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert [_state(test_host, u) for u in (WEB_01_UUID, DB_01_UUID, XSS_UUID)] == [
        libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_SHUTOFF]
    assert _said(response) == [
        "Started 2 VMs: web-01, db-01; 1 refused: <img src=x onerror=alert(1)> (no power grant)."]
    records = AuditEvent.objects.filter(action="vm.start").order_by("pk")
    assert [(r.object_name, r.result) for r in records] == [
        ("web-01", "ok"), ("db-01", "ok"), ("<img src=x onerror=alert(1)>", "denied")]


def test_bulk_skips_vms_whose_state_does_not_allow_it(admin_client: Client, test_host: Host) -> None:
    _set_state(test_host, DB_01_UUID, "shut off")
    response = admin_client.post(BULK, {"action": "shutdown", "vm": [f"testhost/{WEB_01_UUID}",
                                                                     f"testhost/{DB_01_UUID}"]})
    assert _said(response) == ["Asked to shut down 1 VM: web-01; 1 skipped: db-01 (not running)."]
    assert _state(test_host, WEB_01_UUID) == libvirt.VIR_DOMAIN_SHUTOFF  # the test driver obeys at once
    assert AuditEvent.objects.filter(action="vm.shutdown").count() == 1


def test_bulk_force_off_is_confirmed_first(admin_client: Client, test_host: Host) -> None:
    data = {"action": "destroy", "vm": [f"testhost/{WEB_01_UUID}", f"testhost/{DB_01_UUID}"]}
    page = admin_client.post(BULK, data)
    assert page.status_code == 200 and "Force off 2 VMs?" in page.content.decode()
    assert _state(test_host, WEB_01_UUID) == libvirt.VIR_DOMAIN_RUNNING
    admin_client.post(BULK, {**data, "confirm": "yes"})
    assert [_state(test_host, u) for u in (WEB_01_UUID, DB_01_UUID)] == [libvirt.VIR_DOMAIN_SHUTOFF] * 2


def test_bulk_delete_lists_the_vms_then_deletes_them(admin_client: Client, test_host: Host,
                                                     granted_user: Any) -> None:
    _set_state(test_host, DB_01_UUID, "shut off")
    data = {"action": "delete", "vm": [f"testhost/{WEB_01_UUID}", f"testhost/{DB_01_UUID}"]}
    page = admin_client.post(BULK, data)
    tree = lxml.html.fromstring(page.content.decode())
    assert [r.xpath("td")[0].text_content() for r in tree.xpath('//table[@id="bulk-vms"]/tbody/tr')] == [
        "web-01", "db-01"]
    assert tree.xpath('//input[@name="volumes"]/@value') == ["keep", "delete"]
    assert tree.xpath('//input[@name="force_off"]')  # web-01 runs
    # Without "force off" the running one stays; the shut-off one goes, and so do its grants.
    kept = admin_client.post(BULK, {**data, "confirm": "yes", "volumes": "keep"})
    assert _said(kept) == ["Deleted 1 VM: db-01; 1 skipped: web-01 (running: tick “force off” to delete it)."]
    names = services.call(test_host, lambda conn: sorted(d.name() for d in conn.listAllDomains(0)))
    assert "db-01" not in names and "web-01" in names
    admin_client.post(BULK, {"action": "delete", "vm": f"testhost/{WEB_01_UUID}", "confirm": "yes",
                             "volumes": "keep", "force_off": "1"})
    assert not VMGrant.objects.filter(vm_uuid=WEB_01_UUID).exists()
    assert [(r.object_name, r.result) for r in AuditEvent.objects.filter(action="vm.delete").order_by("pk")] == [
        ("db-01", "ok"), ("web-01", "ok")]


@pytest.mark.parametrize("who", ["admin", "user", "outsider"])
def test_get_of_the_bulk_url_leads_back_to_the_list(personas: dict[str, Client], test_host: Host, who: str) -> None:
    response = personas[who].get(BULK)
    assert response.status_code == 302 and response["Location"] == reverse("instances:list")


def test_host_list_states_are_badges(admin_client: Client, test_host: Host) -> None:
    Host.objects.create(name="dead", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    tree = lxml.html.fromstring(admin_client.get(reverse("hosts:list")).content.decode())
    badge = '//tr[@data-host="{}"]/td[@data-col="state"]/span[contains(@class, "badge")]'
    assert tree.xpath(badge.format("testhost") + "/@class") == ["badge state-up"]
    assert tree.xpath(badge.format("dead") + "/@class") == ["badge state-down"]
    assert tree.xpath('//tr[@data-host="testhost"]//a[@href="/instances/host/testhost/"]/text()') == ["3 / 3"]
