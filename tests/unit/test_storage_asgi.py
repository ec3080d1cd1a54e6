"""The streaming transfer path of the ASGI application (storage/asgi.py), on libvirt's test driver.

The same checks as any page come before a byte moves: login, CSRF for the upload, the admin
check; bad input is a field error; a host that cannot stream says so and keeps nothing. The
lab tests (tests/integration/test_storage_lab.py) stream real bytes with these helpers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from storage.asgi import UVICORN_READ_BUFFER, route
from webkvm.asgi import application
from webkvm.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)  # the ASGI path uses the database from its own threads


def headers_for(client: Client, token: str) -> list[tuple[bytes, bytes]]:
    """What a browser sends: session and CSRF cookies, the CSRF header, its Origin."""
    cookie = f"sessionid={client.cookies['sessionid'].value}; csrftoken={token}"
    return [(b"host", b"testserver"), (b"cookie", cookie.encode()), (b"x-csrftoken", token.encode()),
            (b"origin", b"http://testserver")]


def csrf_token(client: Client, host: Host, pool: str) -> str:
    client.get(reverse("storage:pool", args=[host.name, pool]))
    return client.cookies["csrftoken"].value


async def body_of(data: bytes, piece: int = 64 << 10, stop_after: int | None = None,
                  stall_after: int | None = None) -> AsyncIterator[dict[str, Any]]:
    """The body as uvicorn hands it over (64 KiB messages); with stop_after, the browser goes away there,
    with stall_after it stays connected and sends nothing more."""
    if not data:
        yield {"type": "http.request", "body": b"", "more_body": False}
    for start in range(0, len(data), piece):
        if stop_after is not None and start >= stop_after:
            yield {"type": "http.disconnect"}
            return
        if stall_after is not None and start >= stall_after:
            return
        end = start + piece
        yield {"type": "http.request", "body": data[start:end], "more_body": end < len(data)}


def asgi(method: str, url: str, headers: list[tuple[bytes, bytes]], body: AsyncIterator[dict[str, Any]] | None = None
         ) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through webkvm.asgi.application; the body comes as ASGI messages (or none)."""
    parts = urlsplit(url)

    async def run() -> tuple[int, dict[bytes, bytes], bytes]:
        status, got_headers, chunks = 0, {}, []
        messages = body if body is not None else body_of(b"")

        async def receive() -> dict[str, Any]:
            try:
                return await messages.__anext__()
            except StopAsyncIteration:  # nothing more to send: wait like a quiet client
                await asyncio.sleep(3600)
                raise

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, got_headers
            if message["type"] == "http.response.start":
                status, got_headers = message["status"], {k.lower(): v for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": parts.path, "raw_path": parts.path.encode(),
                 "query_string": parts.query.encode(), "headers": headers, "client": ("127.0.0.1", 50000),
                 "server": ("testserver", 80)}
        await application(scope, receive, send)
        return status, got_headers, b"".join(chunks)

    return async_to_sync(run)()


def test_only_the_transfer_urls_are_taken_from_django() -> None:
    upload = reverse("storage:volume_upload", args=["h", "p"])
    download = reverse("storage:volume_download", args=["h", "p", "v.img"])
    assert route({"type": "http", "method": "PUT", "path": upload}) == ("upload", {"host": "h", "pool": "p"})
    assert route({"type": "http", "method": "GET", "path": download})[0] == "download"  # type: ignore[index]
    assert route({"type": "http", "method": "POST", "path": upload}) is None
    assert route({"type": "http", "method": "HEAD", "path": download}) is None  # Django's view answers HEAD
    assert route({"type": "http", "method": "GET", "path": "/storage/"}) is None
    assert route({"type": "http", "method": "PUT", "path": "/no/such/url/"}) is None
    assert route({"type": "websocket", "path": upload}) is None


def test_uvicorn_reads_bodies_in_large_pieces() -> None:
    from uvicorn.protocols.http import h11_impl, httptools_impl

    assert httptools_impl.HIGH_WATER_LIMIT == h11_impl.HIGH_WATER_LIMIT == UVICORN_READ_BUFFER


def test_other_requests_reach_django(client: Client) -> None:
    status, headers, body = asgi("GET", "/login/", [(b"host", b"testserver")])
    assert status == 200 and b"password" in body and b"content-security-policy" in headers


def test_upload_checks_login_csrf_and_admin_first(admin_client: Client, user_client: Client, test_host: Host) -> None:
    url = reverse("storage:volume_upload", args=["testhost", "images"]) + "?name=x.iso"
    length = [(b"content-length", b"3")]
    token = csrf_token(admin_client, test_host, "images")
    anonymous = asgi("PUT", url, [(b"host", b"testserver"), *length], body_of(b"abc"))
    assert anonymous[0] == 302 and anonymous[1][b"location"].startswith(b"/login/")
    no_csrf = [h for h in headers_for(admin_client, token) if h[0] != b"x-csrftoken"]
    assert asgi("PUT", url, [*no_csrf, *length], body_of(b"abc"))[0] == 403
    foreign = [h if h[0] != b"origin" else (b"origin", b"http://evil.example")
               for h in headers_for(admin_client, token)]
    assert asgi("PUT", url, [*foreign, *length], body_of(b"abc"))[0] == 403
    user_client.get("/")
    assert asgi("PUT", url, [*headers_for(user_client, token), *length], body_of(b"abc"))[0] == 403
    assert AuditEvent.objects.filter(action="denied:admin", username="alice").count() == 1
    wrong_host = [(b"host", b"evil.example"), *headers_for(admin_client, token)[1:], *length]
    assert asgi("PUT", url, wrong_host, body_of(b"abc"))[0] in (400, 403)
    volumes = services.call(test_host, lambda c: c.storagePoolLookupByName("images").listVolumes())
    assert volumes == []


def test_upload_input_and_unsupported_host(admin_client: Client, test_host: Host) -> None:
    token = csrf_token(admin_client, test_host, "images")
    headers = [*headers_for(admin_client, token), (b"content-length", b"3")]
    base = reverse("storage:volume_upload", args=["testhost", "images"])
    status, _h, content = asgi("PUT", base + "?name=../../etc/x", headers, body_of(b"abc"))
    assert status == 400 and b'"name"' in content
    assert asgi("PUT", base.replace("testhost", "nohost") + "?name=x.iso", headers, body_of(b"abc"))[0] == 404
    no_length = [h for h in headers if h[0] != b"content-length"]
    assert asgi("PUT", base + "?name=x.iso", no_length, body_of(b"abc"))[0] == 411
    status, _h, content = asgi("PUT", base + "?name=x.iso", headers, body_of(b"abc"))
    assert status == 502 and b"not supported" in content  # the test driver has no streams
    volumes = services.call(test_host, lambda c: c.storagePoolLookupByName("images").listVolumes())
    assert volumes == []  # the volume made for it is gone again
    assert AuditEvent.objects.filter(action="volume.upload", result="failed").count() == 3  # not the 404


def test_download_checks_and_unsupported_host(admin_client: Client, user_client: Client, test_host: Host) -> None:
    services.call(test_host, lambda c: c.storagePoolLookupByName("images").createXML(
        "<volume><name>v.img</name><capacity>1024</capacity></volume>", 0))
    url = reverse("storage:volume_download", args=["testhost", "images", "v.img"])
    assert asgi("GET", url, [(b"host", b"testserver")])[0] == 302
    user_client.get("/")
    assert asgi("GET", url, headers_for(user_client, "x"))[0] == 403
    token = csrf_token(admin_client, test_host, "images")
    assert asgi("GET", url.replace("v.img", "nope.img"), headers_for(admin_client, token))[0] == 404
    status, headers, body = asgi("GET", url, headers_for(admin_client, token))
    assert status == 502 and b"not supported" in body and headers[b"x-content-type-options"] == b"nosniff"
    assert AuditEvent.objects.get(action="volume.download").result == "failed"


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_a_foreign_host_header_is_400_as_in_django(admin_client: Client, test_host: Host, method: str) -> None:
    services.call(test_host, lambda c: c.storagePoolLookupByName("images").createXML(
        "<volume><name>v.img</name><capacity>1024</capacity></volume>", 0))
    token = csrf_token(admin_client, test_host, "images")
    url = (reverse("storage:volume_download", args=["testhost", "images", "v.img"]) if method == "GET" else
           reverse("storage:volume_upload", args=["testhost", "images"]) + "?name=x.iso")
    foreign = [(b"host", b"evil.example"), *headers_for(admin_client, token)[1:], (b"content-length", b"3")]
    status, _headers, body = asgi(method, url, foreign, body_of(b"abc"))
    assert status == 400 and b"evil.example" in body
    assert not AuditEvent.objects.filter(action__startswith="volume.").exists()  # refused before anything


def test_upload_bodies_become_libvirt_messages_of_at_most_256_kib() -> None:
    from virt.streams import SEND_BYTES, packets

    assert SEND_BYTES == 256 << 10
    fits = b"f" * 100
    assert next(packets([fits], 256)) is fits  # a body that fits is sent as it is, not copied
    parts = [b"a" * 100, b"b" * 100, b"c" * 600, b"", b"d" * 10, b"e" * 20]
    out = list(packets(parts, 256))
    assert b"".join(out) == b"".join(parts)
    assert [len(p) for p in out] == [200, 256, 256, 88, 30]
    assert list(packets([], 256)) == []


HTML = (b"accept", b"text/html,application/xhtml+xml,*/*;q=0.8")
JSON = (b"accept", b"application/json")


@pytest.mark.parametrize(("method", "who", "volume", "status", "page", "code"), [
    ("GET", "user", "v.img", 403, b"You are not allowed to do that.", "forbidden"),
    ("GET", "admin", "nope.img", 404, b"There is nothing at this address.", "not_found"),
    ("PUT", "user", "", 403, b"You are not allowed to do that.", "forbidden"),
    ("PUT", "admin", "nohost", 404, b"There is nothing at this address.", "not_found"),
])
def test_a_refused_transfer_answers_with_the_error_page_or_json(
        admin_client: Client, user_client: Client, test_host: Host,
        method: str, who: str, volume: str, status: int, page: bytes, code: str) -> None:
    services.call(test_host, lambda c: c.storagePoolLookupByName("images").createXML(
        "<volume><name>v.img</name><capacity>1024</capacity></volume>", 0))
    token = csrf_token(admin_client, test_host, "images")
    client = user_client if who == "user" else admin_client
    client.get("/")
    if method == "GET":
        url = reverse("storage:volume_download", args=["testhost", "images", volume])
    else:
        url = reverse("storage:volume_upload", args=[volume or "testhost", "images"]) + "?name=x.iso"
    base = [*headers_for(client, token), (b"content-length", b"3")]
    got, headers, body = asgi(method, url, [*base, HTML], body_of(b"abc"))
    assert got == status and headers[b"content-type"].startswith(b"text/html") and page in body
    assert b"<title>" in body  # the panel's page, not a bare word
    got, headers, body = asgi(method, url, [*base, JSON], body_of(b"abc"))
    assert got == status and headers[b"content-type"] == b"application/json"
    answer = json.loads(body)
    assert answer["code"] == code and answer["message"] and set(answer) >= {"code", "message"}
