"""Request bodies are capped before Django reads them (webkvm/body_limit.py), in webkvm.asgi.application.

A table of requests: anonymous and logged-in, with a Content-Length or streamed without one (chunked),
under and over the limit, and the streamed volume upload, which is exempt but checks login, CSRF and admin
before it reads a byte. Each row says the status and how many body bytes the application read at most.
tests/unit/test_abuse_limits_served.py runs the same against `manage.py serve`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from hosts.models import Host
from tests.unit.test_storage_asgi import asgi, body_of, csrf_token, headers_for
from webkvm.body_limit import ANONYMOUS_BODY_BYTES

pytestmark = pytest.mark.django_db(transaction=True)  # the session is looked up from another thread
KIB, MIB = 1 << 10, 1 << 20
LIMIT = 256 * KIB  # WEBKVM_MAX_BODY_BYTES in these tests
PIECE = 64 * KIB  # what uvicorn hands over at a time (body_of)


class Counted:
    """A request body that counts what the application took of it."""

    def __init__(self, data: bytes) -> None:
        self.data, self.read = data, 0

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        async for message in body_of(self.data, piece=PIECE):
            self.read += len(message.get("body", b""))
            yield message


@dataclass(frozen=True)
class Case:
    name: str
    who: str  # anonymous, admin, user (alice: a grant on web-01, no admin)
    method: str
    url: str
    size: int
    declared: bool  # sends Content-Length (else streamed, as chunked bodies arrive)
    status: int
    read_at_most: int
    form: bool = False  # a valid form with the CSRF token, padded to `size`


UPLOAD = "/storage/testhost/pool/images/upload/?name=x.iso"
CASES = [
    Case("anonymous login form", "anonymous", "POST", "/login/", 0, True, 302, 4 * KIB, form=True),
    Case("anonymous several MB, declared", "anonymous", "POST", "/login/", 8 * MIB, True, 413, 0),
    Case("anonymous several MB, streamed", "anonymous", "POST", "/login/", 8 * MIB, False, 413,
         ANONYMOUS_BODY_BYTES + PIECE),
    Case("anonymous just over the anonymous limit", "anonymous", "POST", "/login/", ANONYMOUS_BODY_BYTES + 1,
         True, 413, 0),
    Case("logged-in form under the limit", "admin", "POST", "/logout/", LIMIT - 8 * KIB, True, 302, LIMIT, form=True),
    Case("logged-in form under the limit, streamed", "admin", "POST", "/logout/", LIMIT - 8 * KIB, False, 302, LIMIT,
         form=True),
    Case("logged-in over the limit, declared", "admin", "POST", "/logout/", LIMIT + 1, True, 413, 0),
    Case("logged-in over the limit, streamed", "admin", "POST", "/logout/", 4 * MIB, False, 413, LIMIT + PIECE),
    Case("API token: a body over the anonymous limit reaches the API", "token", "POST", "/api/v1/hosts/",
         ANONYMOUS_BODY_BYTES * 2, True, 400, LIMIT),
    Case("API token over the limit, declared", "token", "POST", "/api/v1/hosts/", LIMIT + 1, True, 413, 0),
    Case("API token over the limit, streamed", "token", "POST", "/api/v1/hosts/", 4 * MIB, False, 413, LIMIT + PIECE),
    Case("API without a token over the anonymous limit", "anonymous", "POST", "/api/v1/hosts/",
         ANONYMOUS_BODY_BYTES + 1, True, 413, 0),
    Case("revoked API token: the anonymous limit", "revoked-token", "POST", "/api/v1/hosts/",
         ANONYMOUS_BODY_BYTES * 2, True, 413, 0),
    Case("upload: large body reaches the upload", "admin", "PUT", UPLOAD, 8 * MIB, True, 502, 0),
    Case("upload: anonymous, nothing read", "anonymous", "PUT", UPLOAD, 8 * MIB, True, 302, 0),
    Case("upload: no admin, nothing read", "user", "PUT", UPLOAD, 8 * MIB, True, 403, 0),
    Case("upload: no CSRF token, nothing read", "admin-no-csrf", "PUT", UPLOAD, 8 * MIB, True, 403, 0),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_request_bodies_are_capped_before_django(case: Case, settings: Any, admin_client: Client,
                                                 user_client: Client, test_host: Host) -> None:
    settings.WEBKVM_MAX_BODY_BYTES = LIMIT
    token = csrf_token(admin_client, test_host, "images")
    headers: list[tuple[bytes, bytes]] = [(b"host", b"testserver"), (b"origin", b"http://testserver"),
                                          (b"cookie", f"csrftoken={token}".encode())]
    if case.who.startswith("admin"):
        headers = headers_for(admin_client, token)
    elif case.who == "user":
        user_client.get("/")
        headers = headers_for(user_client, token)
    if case.who.endswith("token"):
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from api.models import ApiToken

        made, text = ApiToken.make(get_user_model().objects.get(username="root-admin"), case.who)
        if case.who == "revoked-token":
            ApiToken.objects.filter(pk=made.pk).update(revoked=timezone.now())
        headers = [(b"host", b"testserver"), (b"authorization", f"Bearer {text}".encode()),
                   (b"content-type", b"application/json")]
    if case.who == "admin-no-csrf":
        headers = [h for h in headers if h[0] != b"x-csrftoken"]
    data = b"x" * case.size
    if case.form:
        fields = f"csrfmiddlewaretoken={token}&username=root-admin&password=correct-horse-battery-9&padding="
        data = (fields + "p" * max(0, case.size - len(fields))).encode()
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    if case.declared:
        headers.append((b"content-length", str(len(data)).encode()))
    body = Counted(data)
    status, _headers, content = asgi(case.method, case.url, headers, body.messages())
    assert status == case.status, content[:300]
    assert body.read <= case.read_at_most, f"read {body.read} bytes"
    if status == 413:
        _assert_refusal(case.url, _headers, content, "too_large")
    if case.url == "/login/" and case.form:
        assert _headers[b"location"] == b"/", "the login worked"


def _assert_refusal(url: str, headers: dict[bytes, bytes], content: bytes, code: str) -> None:
    """The wrapper's refusal: the API's JSON error under /api/ (api/errors.py: code and words), else plain text."""
    if url.startswith("/api/"):
        assert headers[b"content-type"] == b"application/json", headers
        body = json.loads(content)
        assert set(body) == {"code", "message"} and body["code"] == code, body
        assert body["message"].startswith(("Request body too large", "Bad request")), body
    else:
        assert headers[b"content-type"].startswith(b"text/plain"), headers
        assert content.startswith((b"Request body too large", b"Bad request"))


@pytest.mark.parametrize("url", ["/api/v1/hosts/", "/logout/"])
def test_an_invalid_content_length_is_refused_in_the_callers_format(url: str) -> None:
    headers = [(b"host", b"testserver"), (b"content-length", b"12x"), (b"content-type", b"application/json")]
    body = Counted(b"{}")
    status, got, content = asgi("POST", url, headers, body.messages())
    assert status == 400 and body.read == 0
    _assert_refusal(url, got, content, "invalid")


def test_an_expired_session_counts_as_anonymous(settings: Any, admin_client: Client, test_host: Host) -> None:
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    settings.WEBKVM_MAX_BODY_BYTES = LIMIT
    token = csrf_token(admin_client, test_host, "images")
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    headers = [*headers_for(admin_client, token), (b"content-length", str(128 * KIB).encode())]
    status, _h, _c = asgi("POST", "/logout/", headers, Counted(b"x" * 128 * KIB).messages())
    assert status == 413


# The streamed transfers (storage/asgi.py) are taken out before the wrapper: they stream into libvirt by design and
# check who asks before they read a byte (the upload rows of CASES).
STREAMED = {"storage:volume_upload", "api:volume-content"}


def test_an_oversized_body_changes_nothing_on_any_route(settings: Any, admin_client: Client, test_host: Host) -> None:
    """Every route of the route table (tests/unit/test_routes.py), posted a body over the logged-in limit by an
    admin: 413 in the route's format before a byte is read, and the world as it was."""
    from tests.unit.test_routes import ROUTES, _url, _world

    settings.WEBKVM_MAX_BODY_BYTES = LIMIT
    token = csrf_token(admin_client, test_host, "images")
    headers = [*headers_for(admin_client, token), (b"content-type", b"application/json")]
    declared = [*headers, (b"content-length", str(LIMIT + 1).encode())]
    routes = [route for route in ROUTES if route.name not in STREAMED]
    assert len(routes) == len(ROUTES) - len(STREAMED) and len(routes) > 100
    before = _world(test_host)
    for route in routes:
        url = _url(route, None)
        # Declared: refused before a byte is read. Streamed (chunked): cut at the limit, Django answers nothing.
        for sent, read_at_most in ((declared, 0), (headers, LIMIT + PIECE)):
            body = Counted(b"x" * (LIMIT + PIECE + 1))
            status, got, content = asgi("POST", url, sent, body.messages())
            assert status == 413 and body.read <= read_at_most, (route.name, url, status, content[:200])
            _assert_refusal(url, got, content, "too_large")
    assert _world(test_host) == before
