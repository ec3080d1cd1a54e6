"""A refusal (403) is one line in the server log, never a traceback: the audit log keeps the rest."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

from tests.conftest import WEB_01_UUID

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("method", "path"), [
    ("get", f"/instances/testhost/{WEB_01_UUID}/"),  # a VM without a grant
    ("post", f"/instances/testhost/{WEB_01_UUID}/action/start/"),
    ("get", "/users/"),  # admin-only page
])
def test_a_refusal_logs_one_line_without_traceback(outsider_client: Client, test_host, method: str, path: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        response = getattr(outsider_client, method)(path)
    assert response.status_code == 403
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    text = caplog.text
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text
    said = lines[0].getMessage()
    assert "mallory" in said and method.upper() in said and path in said
    assert lines[0].exc_info is None
