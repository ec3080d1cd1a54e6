"""Shared fixtures: test-driver worlds, personas (admin, user with a grant, outsider) and logged-in clients."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from hosts import services
from hosts.models import Host
from webkvm.models import VMGrant

WORLDS = Path(__file__).parent / "worlds"
BASIC_WORLD = WORLDS / "basic.xml"
WEB_01_UUID = "11111111-1111-4111-8111-111111111111"
DB_01_UUID = "22222222-2222-4222-8222-222222222222"
PASSWORD = "correct-horse-battery-9"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None,
                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    """A file for the test database, as the panel has, not SQLite's shared in-memory one: there, two
    requests writing at once (an audit record each) fail with "table is locked" instead of waiting."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(scope="session", autouse=True)
def _private_panel_files(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Under pytest-xdist (`make test` runs tests/unit on two workers) each worker keeps the panel's own files
    (ssh key pair and the known_hosts rewritten from its database, the credential key) in its own temporary
    folder, not in var/ beside the other worker's: its database and temporary folders are its own already."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from django.conf import settings

    folder = tmp_path_factory.mktemp("panel-files")
    settings.WEBKVM_SSH_DIR = folder / "ssh"
    settings.WEBKVM_CREDENTIAL_KEY_FILE = folder / "credentials.key"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a unix socket for this test run (fails under CI=true when not installed)."""
    import shutil

    from webkvm.redis_store import PrivateRedis

    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


def need(condition: bool, reason: str) -> None:
    """Skip locally when a tool is missing, but fail under CI=true: CI never skips silently."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required for this test under CI=true: {reason}")
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread for
    the rest of the session, which breaks async_to_sync in the tests that would follow them. Among the
    others and among the browser tests, those booting the cloud image last: `make test` builds it in the
    background meanwhile (tests/cloud_image.py), so they find it ready instead of waiting for it."""
    items.sort(key=lambda item: (item.get_closest_marker("browser") is not None,
                                 "cloud_image" in getattr(item, "fixturenames", ())))


@pytest.fixture(autouse=True)
def _fresh_connections() -> Iterator[None]:
    """Host primary keys are reused between tests: never let a connection outlive its test."""
    yield
    services.registry.close_all()


@pytest.fixture
def test_host(db: None) -> Host:
    return Host.objects.create(name="testhost", transport="test", path=str(BASIC_WORLD))


@pytest.fixture
def admin_user(db: None):
    return get_user_model().objects.create_superuser("root-admin", "", PASSWORD)


@pytest.fixture
def granted_user(db: None, test_host: Host):
    user = get_user_model().objects.create_user("alice", "", PASSWORD)
    VMGrant.objects.create(user=user, host=test_host, vm_uuid=WEB_01_UUID, vm_name="web-01",
                           can_console=True, can_power=True)
    return user


@pytest.fixture
def outsider(db: None):
    return get_user_model().objects.create_user("mallory", "", PASSWORD)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin_user) -> Client:  # type: ignore[override]
    return _client(admin_user)


@pytest.fixture
def user_client(granted_user) -> Client:
    return _client(granted_user)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return _client(outsider)


@pytest.fixture
def personas(admin_client: Client, user_client: Client, outsider_client: Client) -> dict[str, Client]:
    return {"admin": admin_client, "user": user_client, "outsider": outsider_client, "anonymous": Client()}


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """User primary keys are reused between tests too: never let a test inherit another's rate-limit counts (nor
    the failed log-ins django-axes counts per address, in its own cache)."""
    from django.core.cache import caches

    for each in caches.all():
        each.clear()
    yield


@pytest.fixture(autouse=True)
def _test_driver(settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests run on libvirt's test driver (off by default in the panel), with worlds from tests/worlds and
    from their own temporary folders."""
    settings.WEBKVM_TEST_DRIVER = True
    settings.WEBKVM_TEST_WORLDS = [str(WORLDS), str(tmp_path_factory.getbasetemp())]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """Production hashing is deliberately slow; tests create many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def libvirt_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every connection the panel opens (a spy: the real open still runs)."""
    import libvirt

    calls: list[str] = []
    real_open, real_auth = libvirt.open, libvirt.openAuth
    monkeypatch.setattr(libvirt, "open", lambda uri=None: calls.append(uri) or real_open(uri))
    monkeypatch.setattr(libvirt, "openAuth",
                        lambda uri, auth, flags=0: calls.append(uri) or real_auth(uri, auth, flags))
    return calls


@pytest.fixture
def standalone_proxy() -> Iterator[int]:
    """The standalone console proxy (manage.py consoleproxy) on a free loopback port; its port."""
    import threading

    from console.proxy import make_server

    server = make_server("127.0.0.1", 0, 0.2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
