"""A private PostgreSQL for tests that run the panel as several processes on a shared database.

Debian's server binaries run as the `postgres` system user (PostgreSQL refuses root); the cluster
lives in a temporary folder, listens on a unix socket there only (no TCP), and is removed at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

from tests.conftest import need


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    need(bool(found), f"PostgreSQL's {name} is not installed (scripts/install-system-packages.sh installs it)")
    return found[-1]


def _as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """``with private_postgres() as url:`` a database `webkvm` on a fresh cluster, as a WEBKVM_DATABASE_URL."""
    folder = Path(tempfile.mkdtemp(prefix="webkvm-pg-"))
    folder.chmod(0o755)
    data, sockets = folder / "data", folder / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    try:
        done = _as_postgres(_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        assert done.returncode == 0, done.stderr
        done = _as_postgres(_bin("pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "30", "start",
                            "-o", f"-k {sockets} -c listen_addresses='' -c fsync=off")
        assert done.returncode == 0, done.stderr + (folder / "log").read_text()[-1000:]
        try:
            done = _as_postgres(_bin("createdb"), "-h", str(sockets), "-U", "postgres", "webkvm")
            assert done.returncode == 0, done.stderr
            yield f"postgres://postgres@{quote(str(sockets), safe='')}/webkvm"
        finally:
            _as_postgres(_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def copy_database(url: str, name: str) -> str:
    """A new database `name` on the cluster of `url`, copied from the database `url` names (PostgreSQL's
    template copy: a migrated schema in a fraction of a second instead of migrating again)."""
    base, _, template = url.rpartition("/")
    sockets = unquote(base.rpartition("@")[2])
    done = _as_postgres(_bin("createdb"), "-h", sockets, "-U", "postgres", "-T", template, name)
    assert done.returncode == 0, done.stderr
    return f"{base}/{name}"
