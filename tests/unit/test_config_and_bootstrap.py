"""Start-up configuration and the first-run bootstrap."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from hosts.models import Host
from webkvm.management.commands import bootstrap

ROOT = Path(__file__).resolve().parents[2]


def manage(tmp_path: Path, *args: str, umask: int = -1, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEBKVM_") and k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
                           env={**clean, "WEBKVM_DATA_DIR": str(tmp_path), **env}, timeout=60, umask=umask)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("WEBKVM_DEBUG", "maybe", "WEBKVM_DEBUG must be true or false"),
    ("WEBKVM_SECRET_KEY", "short", "at least 32 characters"),
    ("WEBKVM_CALL_TIMEOUT", "soon", "WEBKVM_CALL_TIMEOUT must be a whole number"),
    ("WEBKVM_OPEN_TIMEOUT", "0", "between 1 and 60"),
    ("WEBKVM_HOST_SLOTS", "0", "between 1 and 64"),
    ("WEBKVM_READ_FRESH_MS", "soon", "WEBKVM_READ_FRESH_MS must be a whole number"),
    ("WEBKVM_REDIS_URL", "http://127.0.0.1:6379", "WEBKVM_REDIS_URL must look like redis://"),
    ("WEBKVM_REDIS_URL", "unix://relative/redis.sock", "WEBKVM_REDIS_URL must look like redis://"),
    ("WEBKVM_CSRF_TRUSTED_ORIGINS", "panel.example.org", "is not an origin"),
    ("WEBKVM_DATABASE_URL", "nonsense://x", "not a valid database URL"),
    ("WEBKVM_TIME_ZONE", "Nowhere/Land", "WEBKVM_TIME_ZONE must be a time zone name"),
])
def test_invalid_value_stops_with_one_line(tmp_path, variable, value, message) -> None:
    done = manage(tmp_path, "check", **{variable: value})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("webkvm: configuration error:"), done.stderr


def test_secret_key_is_generated_once_into_a_private_file(tmp_path) -> None:
    assert manage(tmp_path, "check").returncode == 0
    key_file = tmp_path / "secret_key"
    first = key_file.read_text()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(first) >= 50
    assert manage(tmp_path, "check").returncode == 0
    assert key_file.read_text() == first


def test_the_data_dir_and_every_secret_in_it_are_private_whatever_the_umask(tmp_path) -> None:
    data = tmp_path / "data"
    assert manage(data, "migrate", "-v0", umask=0).returncode == 0
    make_keys = "from webkvm import credentials; from hosts import services; credentials.encrypt('x'); " \
                "services.identity().ensure()"
    done = manage(data, "shell", "-c", make_keys, umask=0)
    assert done.returncode == 0, done.stderr
    modes = {str(path.relative_to(data)): stat.S_IMODE(path.stat().st_mode)
             for path in (data, data / "secret_key", data / "credentials.key", data / "webkvm.sqlite3",
                          data / "ssh", data / "ssh" / "id_ed25519")}
    assert modes == {".": 0o700, "secret_key": 0o600, "credentials.key": 0o600, "webkvm.sqlite3": 0o600,
                     "ssh": 0o700, "ssh/id_ed25519": 0o600}


@pytest.mark.django_db
def test_bootstrap_creates_admin_once_and_demo_host(monkeypatch, capsys) -> None:
    monkeypatch.delenv("WEBKVM_ADMIN_PASSWORD", raising=False)
    monkeypatch.setattr(bootstrap, "LOCAL_SOCKET", "/nonexistent/libvirt-sock")  # as on a machine without libvirtd
    call_command("bootstrap")
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    demo = Host.objects.get()
    assert demo.name == "demo" and demo.spec().uri() == "test:///default"
    call_command("bootstrap")
    assert capsys.readouterr().out == ""
    assert get_user_model().objects.count() == 1 and Host.objects.count() == 1


@pytest.mark.django_db
def test_bootstrap_uses_given_admin_password(monkeypatch, capsys) -> None:
    monkeypatch.setenv("WEBKVM_ADMIN_PASSWORD", "given-Passw0rd-here")
    monkeypatch.setattr(bootstrap, "LOCAL_SOCKET", "/nonexistent/libvirt-sock")
    call_command("bootstrap")
    assert "given-Passw0rd-here" not in capsys.readouterr().out
    assert get_user_model().objects.get(username="admin").check_password("given-Passw0rd-here")


def test_with_redis_the_processes_share_locks_leases_and_the_channel_layer(tmp_path, redis_url) -> None:
    probe = ("from django.conf import settings; from hosts import services; from webkvm.leases import leases; "
             "print(settings.CHANNEL_LAYERS['default']['BACKEND'], type(services.vm_locks).__name__, "
             "type(leases).__name__)")
    shared = manage(tmp_path, "shell", "-c", probe, WEBKVM_REDIS_URL=redis_url)
    expected = ["channels_redis.core.RedisChannelLayer", "RedisVMLocks", "RedisLeases"]
    assert shared.stdout.splitlines()[-1].split() == expected, shared
    alone = manage(tmp_path, "shell", "-c", probe)
    assert alone.stdout.splitlines()[-1].split() == ["channels.layers.InMemoryChannelLayer", "VMLocks", "ProcessLeases"]


def test_the_embedded_database_lets_several_processes_write(tmp_path) -> None:
    assert manage(tmp_path, "migrate", "-v0").returncode == 0
    probe = ("from django.db import connection; c = connection.cursor(); c.execute('PRAGMA journal_mode'); "
             "mode = c.fetchone()[0]; c.execute('PRAGMA busy_timeout'); print(mode, c.fetchone()[0])")
    done = manage(tmp_path, "shell", "-c", probe)
    assert done.stdout.splitlines()[-1].split() == ["wal", "20000"], done
