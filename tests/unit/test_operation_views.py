"""The generated page of an operation (webkvm/operation_views.py), on operations of the test's own (not
declared in webkvm.operations.OPERATIONS, so the panel's tables do not see them) routed by this module:
the declared check, GET (form or confirmation), POST (a field error runs nothing; the work runs once
through on_host/on_vm, with one audit record and one message), 503 when the host cannot be asked, the
confirmation field, a job's page, and a VM's operation under vm_route."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import libvirt
import pytest
from django import forms
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import URLPattern, URLResolver, path

from hosts import services
from hosts.models import Host
from jobs.models import Job
from tests.conftest import DB_01_UUID, WEB_01_UUID
from virt import networks
from virt.errors import Unreachable, VirtError
from webkvm import urls as panel
from webkvm.models import AuditEvent, VMPermission
from webkvm.operation_views import Call, OperationPage, operation_view, url_arg
from webkvm.operations import ADMIN, Access, Operation, Outcome, on_host, on_vm

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.unit.test_operation_views")]

AUTOSTART = Operation("test.autostart", "Autostart", "network", ADMIN)
NO_AUTOSTART = Operation("test.no-autostart", "No autostart", "network", ADMIN)
CHOICE = Access(ADMIN, by="action", choices={"on": AUTOSTART, "off": NO_AUTOSTART})
WIPE = Operation("test.wipe", "Wipe", "volume", ADMIN, job="volume.wipe")
POKE = Operation("test.poke", "Poke", "vm", VMPermission.POWER, lock=True)
TEMPLATE = "opview/page.html"
PAGE = ("{% if error %}ERROR {{ error }}{% endif %} {% if refused_words %}{{ refused_words }}{% endif %}"
        "{% if form %}{{ form.as_p }}{% endif %} CONFIRM {{ host.name }} {{ info }}")
# What the works were asked to do, in order (a refused request appends nothing).
runs: list[str] = []
troubles: list[VirtError] = []  # the next find() fails with this (once)


class NameForm(forms.Form):
    name = forms.CharField(max_length=8)

    def clean_name(self) -> str:
        if self.cleaned_data["name"] == "bad":
            raise forms.ValidationError("Not that name.")
        return str(self.cleaned_data["name"])


def _autostart(call: Call) -> Outcome[None]:
    enabled = call.op is AUTOSTART
    runs.append(call.op.name)
    network = call.args["name"]
    return on_host(call.request, call.op, call.target, network,
                   lambda conn: networks.set_autostart(conn, network, enabled), done=f"{network} changed.")


def _rename(call: Call) -> Outcome[None]:
    """A work the host refuses when the name is "nope": the failure goes on the form."""
    assert call.form is not None
    name = call.form.cleaned_data["name"]
    runs.append(name)

    def work(conn: libvirt.virConnect) -> None:
        if name == "nope":
            raise VirtError("{name} is taken.", name=name)

    return on_host(call.request, AUTOSTART, call.target, name, work, done=f"{name} renamed.", form=call.form)


def _find(call: Call) -> None:
    if troubles:
        raise troubles.pop()
    call.context["info"] = "lan, read first"


def _job(call: Call) -> Job:
    runs.append("job")
    return Job.objects.create(kind="volume.wipe", host=call.host, owner=cast(Any, call.request.user), state="queued",
                              target_type="volume", target_name="images/w.img", params={})


def _poke(call: Call) -> Outcome[str]:
    runs.append("poke")
    return on_vm(call.request, POKE, call.ref, lambda dom: str(dom.name()), done=lambda name: f"poked {name}")


def _done(call: Call, _result: Any) -> str:
    return "/done/"


urlpatterns = [
    path("<slug:host>/net/<str:name>/set/<slug:action>/",
         operation_view(OperationPage(CHOICE, run=_autostart, then=_done)), name="set"),
    path("<slug:host>/net/<str:name>/confirm/",
         operation_view(OperationPage(AUTOSTART, template=TEMPLATE, find=_find, confirm_field="confirm",
                                      audit_unreadable=url_arg("name"), run=_autostart, then=_done)), name="confirm"),
    path("<slug:host>/rename/",
         operation_view(OperationPage(AUTOSTART, template=TEMPLATE, form=lambda call, data: NameForm(data),
                                      refuse_invalid=lambda call: "asked", run=_rename, then=_done)), name="rename"),
    path("<slug:host>/wipe/", operation_view(OperationPage(WIPE, run=_job, then=_done)), name="wipe"),
    path("<slug:host>/vm/<uuid:vm>/poke/", operation_view(OperationPage(POKE, run=_poke, then=_done)), name="poke"),
    *panel.urlpatterns,  # the log-in page, the jobs' pages
]


@pytest.fixture(autouse=True)
def _page_template(settings: Any, tmp_path: Path) -> None:
    (tmp_path / "opview").mkdir()
    (tmp_path / TEMPLATE).write_text(PAGE)
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [*settings.TEMPLATES[0]["DIRS"], tmp_path]}]
    runs.clear()
    troubles.clear()


def _autostarts(host: Host) -> bool:
    return bool(services.call(host, lambda conn: networks.network_info(conn, "lan").autostart))


def test_a_post_only_operation_runs_once_through_on_host(admin_client: Client, test_host: Host) -> None:
    assert admin_client.get("/testhost/net/lan/set/on/").status_code == 405
    before = _autostarts(test_host)
    response = admin_client.post("/testhost/net/lan/set/off/" if before else "/testhost/net/lan/set/on/")
    assert response.status_code == 302 and response["Location"] == "/done/"
    assert _autostarts(test_host) is not before  # libvirt says it changed
    assert runs == ["test.no-autostart" if before else "test.autostart"]
    record = AuditEvent.objects.get(action__startswith="test.")
    assert (record.result, record.object_name, record.host_name) == ("ok", "lan", "testhost")
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["lan changed."]
    assert admin_client.post("/testhost/net/lan/set/sideways/").status_code == 404  # not a declared choice


def test_the_declared_check_comes_first(personas: dict[str, Client], test_host: Host) -> None:
    before = _autostarts(test_host)
    for persona in ("user", "outsider"):
        assert personas[persona].post("/testhost/net/lan/set/on/").status_code == 403
        assert personas[persona].get("/testhost/rename/").status_code == 403
    assert personas["anonymous"].post("/testhost/net/lan/set/on/")["Location"].startswith("/login/")
    assert personas["user"].get("/no-such-host/rename/").status_code == 403  # unknown hosts look alike
    assert personas["admin"].get("/no-such-host/rename/").status_code == 404
    assert runs == [] and _autostarts(test_host) is before
    assert AuditEvent.objects.filter(result="denied").exists()


def test_get_shows_the_form_and_a_field_error_runs_nothing(admin_client: Client, test_host: Host) -> None:
    shown = admin_client.get("/testhost/rename/")
    assert shown.status_code == 200 and 'name="name"' in shown.text and "CONFIRM testhost" in shown.text
    again = admin_client.post("/testhost/rename/", {"name": "bad"})
    assert again.status_code == 200 and "Not that name." in again.text
    assert runs == []
    refused = AuditEvent.objects.get(action="test.autostart")
    assert refused.result == "failed" and refused.object_name == "asked" and "Not that name." in refused.detail


def test_a_failure_shows_the_form_again_with_the_words(admin_client: Client, test_host: Host) -> None:
    again = admin_client.post("/testhost/rename/", {"name": "nope"})
    assert again.status_code == 200 and "nope is taken." in again.text and "not done" in again.text
    assert AuditEvent.objects.get(action="test.autostart").result == "failed"
    done = admin_client.post("/testhost/rename/", {"name": "fine"})
    assert done.status_code == 302 and done["Location"] == "/done/"
    assert runs == ["nope", "fine"]


def test_a_confirmation_runs_only_when_confirmed(admin_client: Client, test_host: Host) -> None:
    before = _autostarts(test_host)
    shown = admin_client.get("/testhost/net/lan/confirm/")
    assert shown.status_code == 200 and "lan, read first" in shown.text
    assert admin_client.post("/testhost/net/lan/confirm/").status_code == 200  # asked again, nothing done
    assert runs == [] and _autostarts(test_host) is before
    assert admin_client.post("/testhost/net/lan/confirm/", {"confirm": "yes"}).status_code == 302
    assert runs == ["test.autostart"] and _autostarts(test_host)


def test_a_host_that_cannot_be_asked_is_said_with_503(admin_client: Client, test_host: Host) -> None:
    troubles.append(Unreachable("connection refused"))
    shown = admin_client.get("/testhost/net/lan/confirm/")
    assert shown.status_code == 503 and "ERROR connection refused" in shown.text
    assert not AuditEvent.objects.filter(action="test.autostart").exists()  # a GET changes nothing
    troubles.append(Unreachable("connection refused"))
    posted = admin_client.post("/testhost/net/lan/confirm/", {"confirm": "yes"})
    assert posted.status_code == 503 and runs == []
    refused = AuditEvent.objects.get(action="test.autostart")
    assert refused.result == "failed" and refused.detail == "refused: testhost could not be asked: connection refused"


def test_a_job_goes_to_its_page(admin_client: Client, test_host: Host) -> None:
    response = admin_client.post("/testhost/wipe/")
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"


def test_a_vm_operation_checks_the_grant_on_that_vm(personas: dict[str, Client], test_host: Host) -> None:
    assert personas["outsider"].post(f"/testhost/vm/{WEB_01_UUID}/poke/").status_code == 403
    assert personas["user"].post(f"/testhost/vm/{DB_01_UUID}/poke/").status_code in (403, 404)
    assert runs == []
    response = personas["user"].post(f"/testhost/vm/{WEB_01_UUID}/poke/")  # alice may power web-01
    assert response.status_code == 302 and runs == ["poke"]
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["web-01: poked web-01"]
    record = AuditEvent.objects.get(action="test.poke")
    assert record.object_name == "web-01" and WEB_01_UUID in record.detail


GENERATED = ["networks:create", "networks:action", "networks:confirm", "networks:host_add", "networks:host_remove",
             "storage:pool_new", "storage:pool_action", "storage:pool_delete",
             "storage:volume_new", "storage:volume_clone", "storage:volume_resize", "storage:volume_wipe",
             "storage:volume_delete", "storage:image_library", "storage:image_import", "storage:image_edit",
             "storage:image_delete",
             "hosts:create", "hosts:edit", "hosts:delete", "hosts:test", "hosts:confirm_machine", "hosts:share",
             "hosts:unshare",
             "instances:action", "instances:rename", "instances:describe", "instances:share", "instances:delete",
             "instances:clone", "instances:resize", "instances:boot", "instances:vnc", "instances:snapshot_create",
             "instances:snapshot_revert", "instances:snapshot_delete", "instances:flavor_create",
             "instances:flavor_edit", "instances:flavor_delete", "instances:quota_create", "instances:quota_edit",
             "instances:quota_delete", "instances:disk_attach", "instances:disk_detach", "instances:cdrom_insert",
             "instances:cdrom_eject", "instances:cdrom_add", "instances:cdrom_remove", "instances:nic_add",
             "instances:nic_remove", "instances:nic_source", "instances:nic_link", "users:create",
             "users:grant_delete", "api-tokens:list", "api-tokens:revoke",
             "instances:migrate", "instances:migrate_many", "instances:evacuate",
             "instances:xml_edit", "instances:xml_rollback"]


@pytest.mark.urls("webkvm.urls")
def test_the_panels_operation_pages_are_generated() -> None:
    """The pages the module's docstring lists come from operation_view(), not from hand-written views."""
    patterns = {f"{ns.namespace}:{p.name}": p.callback for ns in panel.urlpatterns if isinstance(ns, URLResolver)
                for p in ns.url_patterns if isinstance(p, URLPattern)}
    hand_written = [name for name in GENERATED if not patterns[name].__qualname__.startswith("operation_view.")]
    assert not hand_written
