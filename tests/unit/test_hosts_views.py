"""Host pages on libvirt's test driver: list, overview, form validation, secrets."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from hosts.models import Host
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_host_list_shows_live_state(admin_client, test_host) -> None:
    Host.objects.create(name="dead", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    page = admin_client.get(reverse("hosts:list")).content.decode()
    assert "testhost" in page and "3 / 3" in page
    assert "unreachable: connection refused" in page


def test_overview_shows_real_numbers(admin_client, test_host) -> None:
    page = admin_client.get(reverse("hosts:detail", args=["testhost"])).content.decode()
    assert 'data-fact="cpus">8<' in page
    assert 'data-fact="memory">16.0 GiB<' in page
    assert 'data-fact="domains_total">3<' in page


def test_usage_endpoint(admin_client, test_host) -> None:
    sample = json.loads(admin_client.get(reverse("hosts:usage", args=["testhost"])).content)
    assert sample["memory_total"] == 16 * 1024**3
    assert sample["cpu_total_ns"] > 0


def test_test_connection_reports_outcome_and_audits(admin_client, test_host) -> None:
    response = admin_client.post(reverse("hosts:test", args=["testhost"]), follow=True)
    assert "connected to TEST" in response.content.decode()
    assert AuditEvent.objects.filter(action="host.test", result="ok").exists()


def test_create_local_and_tcp_hosts(admin_client) -> None:
    response = admin_client.post(reverse("hosts:create"), {"name": "lab", "transport": "tcp",
                                 "hostname": "127.0.0.1", "port": "16509", "path": "system", "insecure_tcp": "on"})
    assert response.status_code == 302
    host = Host.objects.get(name="lab")
    assert host.spec().uri() == "qemu+tcp://127.0.0.1:16509/system"
    assert AuditEvent.objects.filter(action="host.create", object_name="lab").exists()


BAD_INPUTS = [
    ("hostname", {"transport": "ssh", "hostname": "evil/system?command=/bin/sh#", "username": "root"}),
    ("hostname", {"transport": "ssh", "hostname": "-oProxyCommand=x", "username": "root"}),
    ("hostname", {"transport": "ssh", "hostname": "two words", "username": "root"}),
    ("username", {"transport": "ssh", "hostname": "kvm1", "username": "-l"}),
    ("username", {"transport": "ssh", "hostname": "kvm1", "username": "root; rm -rf /"}),
    ("username", {"transport": "ssh", "hostname": "kvm1", "username": ""}),
    ("port", {"transport": "ssh", "hostname": "kvm1", "username": "root", "port": "0"}),
    ("port", {"transport": "ssh", "hostname": "kvm1", "username": "root", "port": "99999999999999999999"}),
    ("port", {"transport": "ssh", "hostname": "kvm1", "username": "root", "port": "-1"}),
    ("path", {"transport": "ssh", "hostname": "kvm1", "username": "root", "path": "system?command=/bin/sh"}),
    ("path", {"transport": "test", "path": "/etc/../etc/passwd"}),
    ("path", {"transport": "test", "path": "/no/such/world.xml"}),
    ("name", {"name": "../../etc/passwd", "transport": "local"}),
    ("name", {"name": "<img src=x onerror=alert(1)>", "transport": "local"}),
    ("name", {"name": "x" * 5000, "transport": "local"}),
    ("name", {"name": "", "transport": "local"}),
    ("name", {"name": "images", "transport": "local"}),  # /storage/images/ is a page, not a host's pools
    ("name", {"name": "new", "transport": "local"}),  # /hosts/new/
    ("transport", {"transport": "gopher"}),
    ("insecure_tcp", {"transport": "tcp", "hostname": "kvm1"}),
    ("sasl_username", {"transport": "tcp", "hostname": "kvm1", "sasl_username": "a b", "sasl_password": "x"}),
    ("sasl_password", {"transport": "tcp", "hostname": "kvm1", "sasl_username": "ops"}),
    ("tls_pkipath", {"transport": "tls", "hostname": "kvm1", "tls_pkipath": "/nonexistent/pki"}),
    ("tls_pkipath", {"transport": "tls", "hostname": "kvm1", "tls_pkipath": "../pki"}),
    ("hostname", {"transport": "tcp", "hostname": "", "insecure_tcp": "on"}),
]


@pytest.mark.parametrize(("field", "values"), BAD_INPUTS, ids=[f"{f}:{str(v)[:40]}" for f, v in BAD_INPUTS])
def test_bad_host_input_gives_field_error_and_no_libvirt_call(admin_client, libvirt_opens, field, values) -> None:
    Host.objects.create(name="keep", transport="test", path="default")
    data = {"name": "new-host", "path": "system", **values}
    response = admin_client.post(reverse("hosts:create"), data)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert f'id="field-{field}"' in response.content.decode()
    assert list(Host.objects.values_list("name", flat=True)) == ["keep"]
    assert libvirt_opens == []


def test_sasl_password_is_encrypted_and_never_shown(admin_client, tmp_path) -> None:
    admin_client.post(reverse("hosts:create"), {"name": "sasl", "transport": "tcp", "hostname": "127.0.0.1",
                      "port": "16510", "path": "system", "sasl_username": "ops", "sasl_password": "Pl41n-S3cret"})
    host = Host.objects.get(name="sasl")
    assert "Pl41n-S3cret" not in host.sasl_password_encrypted
    assert host.spec().sasl_password == "Pl41n-S3cret"
    edit = admin_client.get(reverse("hosts:edit", args=["sasl"])).content.decode()
    assert "Pl41n-S3cret" not in edit and host.sasl_password_encrypted not in edit
    # Editing without a password keeps the stored one.
    admin_client.post(reverse("hosts:edit", args=["sasl"]), {
        "name": "sasl", "transport": "tcp", "hostname": "127.0.0.1", "port": "16511", "path": "system",
        "sasl_username": "ops"})
    assert Host.objects.get(name="sasl").spec().sasl_password == "Pl41n-S3cret"
    dump = tmp_path / "dump.json"
    call_command("dumpdata", output=str(dump))
    assert "Pl41n-S3cret" not in dump.read_text()


def test_vm_name_markup_is_escaped(admin_client, test_host) -> None:
    from django.contrib.auth import get_user_model

    from webkvm.models import VMGrant
    user = get_user_model().objects.create_user("bob", "", "x-very-long-pass")
    VMGrant.objects.create(user=user, host=test_host, vm_uuid="33333333-3333-4333-8333-333333333333",
                           vm_name="<img src=x onerror=alert(1)>")
    page = admin_client.get(reverse("users:detail", args=[user.pk])).content.decode()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_delete_host(admin_client, test_host) -> None:
    assert admin_client.post(reverse("hosts:delete", args=["testhost"])).status_code == 302
    assert not Host.objects.exists()
    assert AuditEvent.objects.filter(action="host.delete").exists()


def test_unknown_url_is_404_not_500(admin_client) -> None:
    assert admin_client.get("/hosts/no-such-host/").status_code == 404
    assert admin_client.get("/no/such/page").status_code == 404


def test_each_host_operation_writes_one_record(admin_client, test_host) -> None:
    admin_client.post(reverse("hosts:create"), {"name": "lab", "transport": "local", "path": "system"})
    admin_client.post(reverse("hosts:edit", args=["lab"]), {"name": "lab2", "transport": "local", "path": "system"})
    admin_client.post(reverse("hosts:test", args=["testhost"]))
    admin_client.post(reverse("hosts:delete", args=["lab2"]))
    events = list(AuditEvent.objects.exclude(action="login").order_by("id"))
    assert [(e.action, e.result, e.object_type, e.object_name, e.host_name) for e in events] == [
        ("host.create", "ok", "host", "lab", "lab"), ("host.update", "ok", "host", "lab2", "lab2"),
        ("host.test", "ok", "host", "testhost", "testhost"), ("host.delete", "ok", "host", "lab2", "lab2")]
    assert all(e.duration_ms is not None for e in events)
    assert "connected to TEST" in events[2].detail


def test_a_failed_connection_test_is_said_and_audited_once(admin_client) -> None:
    Host.objects.create(name="dead", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    page = admin_client.post(reverse("hosts:test", args=["dead"]), follow=True).content.decode()
    assert "Test connection: not done:" in page and "connection refused" in page
    [event] = AuditEvent.objects.filter(action="host.test")
    assert event.result == "failed" and event.duration_ms is not None


def test_host_names_the_panels_pages_take_are_read_from_the_routes() -> None:
    from hosts.route_words import route_words

    assert {"new", "images", "ssh-key", "flavors", "quotas", "bulk"} <= route_words()
    assert "rows" not in route_words()  # /instances/rows.json cannot be a host's address: no clash
