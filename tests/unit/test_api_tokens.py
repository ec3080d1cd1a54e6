"""Personal API tokens: shown once, stored hashed, expiring, revocable, read-only, last use recorded."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from hosts.models import Host
from tests.conftest import PASSWORD, WEB_01_UUID
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db


def bearer(text: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {text}"}


def test_a_token_is_shown_once_and_stored_hashed(user_client: Client, granted_user) -> None:
    page = user_client.post("/tokens/", {"name": "ci"})
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=granted_user)
    text = page.content.decode().split('<code id="new-token">')[1].split("</code>")[0]
    assert text.startswith(f"wkvm_{token.prefix}_")
    secret = text.split("_", 2)[2]
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = repr(list(ApiToken.objects.values()))
    assert secret not in stored
    again = user_client.get("/tokens/").content.decode()
    assert "ci" in again and secret not in again, "the list never shows the secret again"
    assert AuditEvent.objects.filter(action="api.token.create", object_name="ci").exists()
    assert Client().get("/api/v1/vms/", **bearer(text)).status_code == 200


def test_wrong_expired_and_revoked_tokens_answer_401(granted_user) -> None:
    token, text = ApiToken.make(granted_user, "t")
    client = Client()
    assert client.get("/api/v1/vms/", **bearer(text)).status_code == 200
    wrong = client.get("/api/v1/vms/", **bearer(text[:-2] + "xx"))
    assert wrong.status_code == 401 and wrong.json()["code"] == "bad_token"
    ApiToken.objects.filter(pk=token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    expired = client.get("/api/v1/vms/", **bearer(text))
    assert expired.status_code == 401 and expired.json()["code"] == "token_expired"
    ApiToken.objects.filter(pk=token.pk).update(expires=None, revoked=timezone.now())
    revoked = client.get("/api/v1/vms/", **bearer(text))
    assert revoked.status_code == 401 and revoked.json()["code"] == "token_revoked"
    nothing = client.get("/api/v1/vms/")
    assert nothing.status_code == 401 and nothing.json()["code"] == "not_authenticated"


def test_a_disabled_users_token_answers_401(granted_user) -> None:
    _, text = ApiToken.make(granted_user, "t")
    get_user_model().objects.filter(pk=granted_user.pk).update(is_active=False)
    assert Client().get("/api/v1/vms/", **bearer(text)).status_code == 401


def test_revoking_from_the_page(user_client: Client, granted_user, outsider) -> None:
    mine, text = ApiToken.make(granted_user, "mine")
    theirs, _ = ApiToken.make(outsider, "theirs")
    assert "theirs" not in user_client.get("/tokens/").content.decode()
    assert user_client.post(f"/tokens/{theirs.pk}/revoke/").status_code == 403
    theirs.refresh_from_db()
    assert theirs.revoked is None
    assert user_client.post(f"/tokens/{mine.pk}/revoke/").status_code == 302
    mine.refresh_from_db()
    assert mine.revoked is not None
    assert Client().get("/api/v1/vms/", **bearer(text)).status_code == 401
    assert AuditEvent.objects.filter(action="api.token.revoke", object_name="mine").exists()


def test_admins_see_and_revoke_every_token(admin_client: Client, granted_user) -> None:
    token, _ = ApiToken.make(granted_user, "alices-token")
    assert "alices-token" in admin_client.get("/tokens/").content.decode()
    assert admin_client.post(f"/tokens/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked is not None


def test_a_read_only_token_reads_but_refuses_every_unsafe_method(test_host: Host, granted_user) -> None:
    _, text = ApiToken.make(granted_user, "ro", read_only=True)
    client = Client()
    assert client.get("/api/v1/vms/", **bearer(text)).status_code == 200
    url = f"/api/v1/vms/testhost/{WEB_01_UUID}/actions/destroy/"
    for method in (client.post, client.put, client.patch, client.delete):
        refused = method(url, **bearer(text))
        assert refused.status_code in (403, 405)
        if refused.status_code == 403:
            assert refused.json()["code"] == "read_only_token"
    assert client.post(url, **bearer(text)).json()["code"] == "read_only_token"
    from hosts import services
    assert services.call(test_host, lambda c: c.lookupByUUIDString(WEB_01_UUID).isActive()) == 1


def test_last_used_is_written_at_most_once_a_minute(granted_user, django_assert_max_num_queries) -> None:
    token, text = ApiToken.make(granted_user, "t")
    assert token.last_used is None
    client = Client()
    client.get("/api/v1/jobs/", **bearer(text))
    token.refresh_from_db()
    first = token.last_used
    assert first is not None
    client.get("/api/v1/jobs/", **bearer(text))
    token.refresh_from_db()
    assert token.last_used == first, "not written again within the minute"
    ApiToken.objects.filter(pk=token.pk).update(last_used=first - timedelta(minutes=2))
    client.get("/api/v1/jobs/", **bearer(text))
    token.refresh_from_db()
    assert token.last_used is not None and token.last_used > first - timedelta(seconds=1)


def test_the_token_form_refuses_bad_input(user_client: Client) -> None:
    page = user_client.post("/tokens/", {"name": "", "days": "-3"})
    assert page.status_code == 200 and not ApiToken.objects.exists()
    assert PASSWORD  # (the personas' password; unused here)


def test_the_api_rate_is_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from webkvm import config

    monkeypatch.setenv("WEBKVM_API_RATE", "10/s")
    assert config.env_rate("WEBKVM_API_RATE", "600/min") == "10/s"
    for bad in ("lots", "0/min", "5/fortnight", "-1/s"):
        monkeypatch.setenv("WEBKVM_API_RATE", bad)
        with pytest.raises(config.ConfigError):
            config.env_rate("WEBKVM_API_RATE", "600/min")


def test_making_and_revoking_run_as_declared_operations(user_client: Client, granted_user) -> None:
    """Each is the operation webkvm/user_operations.py declares, run by `perform`: one audit record with its
    result and duration, never the secret; pages only (a token never makes or revokes tokens)."""
    from webkvm import user_operations as ops
    from webkvm.operations import LOGIN, OPERATIONS

    for op in (ops.TOKEN_CREATE, ops.TOKEN_REVOKE):
        assert OPERATIONS[op.name] is op and (op.permission, op.target, op.api) == (LOGIN, "token", False)
    page = user_client.post("/tokens/", {"name": "ci", "days": "2", "read_only": "on"}).content.decode()
    text = page.split('<code id="new-token">')[1].split("</code>")[0]
    token = ApiToken.objects.get(name="ci")
    made = AuditEvent.objects.get(action="api.token.create")
    assert (made.result, made.object_type, made.object_name, made.username) == ("ok", "token", "ci", "alice")
    assert made.detail.startswith(f"prefix {token.prefix}; read-only; expires ") and made.duration_ms is not None
    assert text.split("_", 2)[2] not in made.detail
    assert user_client.post(f"/tokens/{token.pk}/revoke/").status_code == 302
    revoked = AuditEvent.objects.get(action="api.token.revoke")
    assert (revoked.result, revoked.object_type, revoked.object_name) == ("ok", "token", "ci")
    assert revoked.detail == f"prefix {token.prefix}; user alice" and revoked.duration_ms is not None
    assert "Token ci revoked." in user_client.get("/tokens/").content.decode()
