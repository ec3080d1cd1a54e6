"""A private PostgreSQL for tests that run the panel as several processes on a shared database.

Debian's server binaries run as the `postgres` system user (PostgreSQL refuses root); the cluster
lives in a temporary folder and is removed at the end. It listens on a unix socket there only (no TCP),
or, given a port, also on 127.0.0.1:port, where the panel logs in as a role `webkvm` with a password, as
machines sharing one PostgreSQL do (the unix socket stays for the cluster's own administration).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from tests.conftest import need


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    need(bool(found), f"PostgreSQL's {name} is not installed (scripts/install-system-packages.sh installs it)")
    return found[-1]


def _as_postgres(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@contextlib.contextmanager
def private_postgres(port: int | None = None) -> Iterator[str]:
    """``with private_postgres() as url:`` a database `webkvm` on a fresh cluster, as a WEBKVM_DATABASE_URL:
    postgres://postgres@%2Fpath%2Fto%2Frun/webkvm, or with `port` postgres://webkvm:PASSWORD@127.0.0.1:port/webkvm
    (owned by the role webkvm, which may create databases: copy_database then runs over TCP too)."""
    folder = Path(tempfile.mkdtemp(prefix="webkvm-pg-"))
    folder.chmod(0o755)
    data, sockets = folder / "data", folder / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    # Over TCP only a password opens; the unix socket (mode 0700 below) trusts the cluster's own user.
    auth = ["-A", "trust"] if port is None else ["--auth-local", "trust", "--auth-host", "scram-sha-256"]
    listen = "-c listen_addresses=''" if port is None else f"-c listen_addresses=127.0.0.1 -p {port}"
    admin = ["-h", str(sockets), *([] if port is None else ["-p", str(port)]), "-U", "postgres"]
    try:
        done = _as_postgres(_bin("initdb"), "-D", str(data), "-U", "postgres", *auth, "--no-sync")
        assert done.returncode == 0, done.stderr
        done = _as_postgres(_bin("pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "30", "start",
                            "-o", f"-k {sockets} -c unix_socket_permissions=0700 {listen} -c fsync=off")
        assert done.returncode == 0, done.stderr + (folder / "log").read_text()[-1000:]
        try:
            if port is None:
                done = _as_postgres(_bin("createdb"), *admin, "webkvm")
                assert done.returncode == 0, done.stderr
                yield f"postgres://postgres@{quote(str(sockets), safe='')}/webkvm"
            else:
                password = secrets.token_hex(16)
                done = _as_postgres(_bin("psql"), *admin, "-v", "ON_ERROR_STOP=1", "-c",
                                    f"CREATE ROLE webkvm LOGIN CREATEDB PASSWORD '{password}'")
                assert done.returncode == 0, done.stderr
                done = _as_postgres(_bin("createdb"), *admin, "-O", "webkvm", "webkvm")
                assert done.returncode == 0, done.stderr
                yield f"postgres://webkvm:{password}@127.0.0.1:{port}/webkvm"
        finally:
            _as_postgres(_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def copy_database(url: str, name: str) -> str:
    """A new database `name` on the cluster of `url`, copied from the database `url` names (PostgreSQL's
    template copy: a migrated schema in a fraction of a second instead of migrating again)."""
    base, _, template = url.rpartition("/")
    parts = urlsplit(url)
    if parts.hostname and not unquote(parts.hostname).startswith("/"):  # over TCP, as the URL's role
        done = _as_postgres(_bin("createdb"), "-h", parts.hostname, "-p", str(parts.port or 5432),
                            "-U", unquote(parts.username or ""), "-T", template, name,
                            env={"PGPASSWORD": unquote(parts.password or "")})
    else:
        sockets = unquote(base.rpartition("@")[2])
        done = _as_postgres(_bin("createdb"), "-h", sockets, "-U", "postgres", "-T", template, name)
    assert done.returncode == 0, done.stderr
    return f"{base}/{name}"
