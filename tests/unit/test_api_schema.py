"""The OpenAPI schema generates, validates and lists every API route; the reference page is served from
the package (no CDN) under the panel's CSP; errors have one JSON shape."""

from __future__ import annotations

import re

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
    missing = set(OPERATIONS) - _api_operations()
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
