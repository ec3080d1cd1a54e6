"""The OpenAPI schema generates, validates and lists every API route; the reference page is served from
the package (no CDN) under the panel's CSP; errors have one JSON shape."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client
from openapi_spec_validator import validate

from instances.operations import ACTION
from tests.unit.test_routes import ROUTES
from webkvm.middleware import POLICY
from webkvm.operations import OPERATIONS, runs

pytestmark = pytest.mark.django_db


def _schema() -> dict:
    response = Client().get("/api/v1/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_the_schema_validates_and_lists_every_api_route() -> None:
    schema = _schema()
    validate(schema)
    paths = schema["paths"]
    for route in ROUTES:
        if not route.name.startswith("api:") or route.name in ("api:schema", "api:docs", "api:not-found"):
            continue
        templated = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.pattern)
        assert templated in paths, f"{route.name} ({templated}) is missing from the schema"
    assert "post" in paths["/api/v1/vms/{host}/{vm}/actions/{action}/"]
    assert schema["components"]["securitySchemes"]["token"] == {
        "type": "http", "scheme": "bearer", "description": "A personal API token: wkvm_..."}


def test_the_reference_page_uses_no_cdn_and_no_inline_script() -> None:
    response = Client().get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert response["Content-Security-Policy"] == POLICY
    assert "cdn" not in html.lower() and "https://" not in html
    assert "<script>" not in html.replace(" ", ""), "inline script: the CSP would block it"
    assert "<style" not in html and " style=" not in html, "inline style: the CSP would block it"
    for href in re.findall(r'<link[^>]*href="([^"]+)"', html):
        assert finders.find(href.removeprefix(settings.STATIC_URL)), f"{href} is not a static file"
    sources = [src.replace("&amp;", "&") for src in re.findall(r'<script[^>]*src="([^"]+)"', html)]
    assert sources
    for src in sources:
        assert src.startswith("/"), src
        if src.startswith(settings.STATIC_URL):  # collected by collectstatic (make), found by its finders
            assert finders.find(src.removeprefix(settings.STATIC_URL)), f"{src} is not a static file"
        else:  # the split view's own start-up script
            script = Client().get(src)
            assert script.status_code == 200 and "javascript" in script["Content-Type"], src


def test_error_shapes(admin_client: Client) -> None:
    unknown = Client().get("/api/v1/hosts/")
    assert unknown.status_code == 401 and set(unknown.json()) == {"code", "message"}
    assert unknown["WWW-Authenticate"] == "Bearer"
    missing = admin_client.get("/api/v1/jobs/999999/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    nowhere = admin_client.get("/api/v1/no/such/thing/")
    assert nowhere.status_code == 404 and nowhere.json()["code"] == "not_found"
    wrong = admin_client.put("/api/v1/hosts/")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"


def test_field_errors_are_per_field() -> None:
    from rest_framework import serializers

    from api.errors import handle

    class Form(serializers.Serializer):  # type: ignore[type-arg]
        name = serializers.CharField(max_length=3)

    form = Form(data={"name": "toolong"})
    with pytest.raises(serializers.ValidationError) as caught:
        form.is_valid(raise_exception=True)
    response = handle(caught.value, {})
    assert response is not None and response.status_code == 400
    assert response.data["code"] == "invalid" and list(response.data["fields"]) == ["name"]
    assert response.data["fields"]["name"][0].startswith("Ensure this field has no more than 3")


def test_the_user_menu_leads_to_the_token_page(user_client: Client) -> None:
    assert 'href="/tokens/"' in user_client.get("/jobs/").content.decode()


def _api_operations() -> set[str]:
    """Operations an API route runs: those its declared access chooses from (the action routes)."""
    return {op.name for route in ROUTES if route.name.startswith("api:") and route.access is not None
            for op in runs(route.access)}


def test_every_declared_operation_has_an_api_endpoint() -> None:
    """A page's operation nobody can run through the API fails here: declare its endpoint (api/)."""
    missing = {name for name, op in OPERATIONS.items() if op.api} - _api_operations()
    assert not missing, f"declared operations without an API endpoint: {sorted(missing)}"


def test_the_schema_offers_every_action_the_api_runs() -> None:
    offered = _schema()["paths"]["/api/v1/vms/{host}/{vm}/actions/{action}/"]["post"]["parameters"]
    actions = next(p for p in offered if p["name"] == "action")["schema"]["enum"]
    assert {f"vm.{a}" for a in actions} == {op.name for op in runs(ACTION)}


def test_the_schema_generates_without_warnings(tmp_path) -> None:
    """drf-spectacular's warnings (an undescribed view, two choice sets under one name) fail the build."""
    from django.core.management import call_command

    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


def test_an_address_without_its_slash_is_told_the_right_one(admin_client: Client) -> None:
    response = admin_client.get("/api/v1/hosts")
    assert response.status_code == 404 and "Did you mean /api/v1/hosts/" in response.json()["message"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_mistyped_address_answers_json_whatever_the_method(method: str) -> None:
    """A write to an address nothing serves is the API's JSON 404, not Django's CSRF page (found by curl:
    `POST /api/v1/vms/HOST//actions/start/` answered an HTML 403)."""
    client = Client(enforce_csrf_checks=True)
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wkvm_nothing_here"}):
        response = client.generic(method, "/api/v1/vms/kvm-01//actions/start/", "{}",
                                  content_type="application/json", **headers)
        assert response.status_code == 404 and response["Content-Type"] == "application/json", response.content
        assert response.json()["code"] == "not_found"


# Every page that only reads (GET) and the API route whose GET answers the same, or why the API has none
# ("no API: ..."). A new read page fails test_every_read_page_has_an_api_get until it is listed here.
READ_PAGES = {
    "audit": "api:audit",
    "console:page": "no API: noVNC in the browser; the API hands out the ticket of the same WebSocket "
                    "(api:vm-console-ticket)",
    "console:serial": "no API: a terminal in the browser; the API hands out the ticket of the same WebSocket "
                      "(api:vm-console-ticket)",
    "home": "no API: admins are sent to the hosts, others see their VMs' table: api:hosts and api:vms",
    "hosts:detail": "api:host",
    "hosts:list": "api:hosts",
    "hosts:ssh_key": "api:panel-ssh-key",
    "hosts:usage": "api:host",  # the detail's `usage`
    "instances:detail": "api:vm",
    "instances:disks": "api:vm-disks",
    "instances:flavors": "api:flavors",
    "instances:host": "api:vms",  # ?host=
    "instances:list": "api:vms",
    "instances:my_quota": "api:quota-usage",
    "instances:nics": "api:vm-nics",
    "instances:quotas": "api:quotas",
    "instances:rows": "api:vms",  # the fleet table's rows: the same read, filters and sort
    "instances:snapshots": "api:vm-snapshots",
    "instances:stats": "no API: the detail page's chart counters (disk and network bytes, CPU time) polled every "
                       "few seconds; api:vm answers state, vCPUs, memory and CPU load",
    "instances:xml_history": "api:vm-xml-history",
    "jobs:detail": "api:job",
    "jobs:list": "api:jobs",
    "jobs:status": "api:job",
    "networks:detail": "api:network",
    "networks:index": "api:networks",  # per host (api:hosts names them)
    "networks:interfaces": "api:host-interfaces",
    "networks:list": "api:networks",
    "storage:images": "api:images",
    "storage:index": "api:pools",  # per host
    "storage:pool": "api:pool",
    "storage:pools": "api:pools",
    "storage:pool_types": "no API: the pool kinds the host's libvirt supports, for the page's choice; POST "
                          "pools/HOST/ refuses one it does not, with a field error",
    "storage:volume_download": "api:volume-content",
    "users:list": "api:users",
}


def _http_methods(view: Any) -> set[str] | None:
    """The methods a page's require_GET (require_http_methods) lets through; None when it declares none."""
    seen: set[int] = set()
    while view is not None and id(view) not in seen:
        seen.add(id(view))
        for cell in getattr(view, "__closure__", None) or ():
            value = cell.cell_contents
            if isinstance(value, list | tuple) and value and all(isinstance(m, str) and m.isupper() for m in value):
                return set(value)
        view = getattr(view, "__wrapped__", None)
    return None


def test_every_read_page_has_an_api_get() -> None:
    """The read side of the operation ledger above: a page that only shows something has an API GET answering
    the same, or a reason why not."""
    reads = {route.name for route in ROUTES if not route.name.startswith("api:")
             and (_http_methods(route.callback) or {"POST"}) <= {"GET", "HEAD"}}
    assert reads == set(READ_PAGES), f"read pages to list in READ_PAGES: {sorted(reads - set(READ_PAGES))}; " \
                                     f"listed but gone: {sorted(set(READ_PAGES) - reads)}"
    gets = {route.name for route in ROUTES if route.name.startswith("api:") and route.access is not None
            and (not route.access.methods or route.access.of_method("GET") is not None)}
    for page_name, answer in READ_PAGES.items():
        assert answer in gets or answer.startswith("no API: "), f"{page_name}: {answer} is no API GET"
    assert {"hosts:ssh_key", "networks:interfaces"} <= {p for p, a in READ_PAGES.items() if a in gets}
