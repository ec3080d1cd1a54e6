"""The quota race on PostgreSQL: instances/quotas.reserve relies there on SELECT ... FOR UPDATE of the quota row
(tests/unit/test_quotas.py runs the same race on SQLite, whose IMMEDIATE transactions serialise it instead).

One private cluster (tests/postgres.py) and one `manage.py shell -c` process that migrates it, then has two threads
(two database connections) reserve the last VM of a quota at once. To make the race certain rather than likely,
each reservation waits, after reading the usage, up to WINDOW seconds for the other to have read it too: without
the lock both read "0 VMs used" and both win; with it the second blocks on the quota row until the first
commits, so the first waits out the window alone and the second then reads "1 VM used" and is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import BASIC_WORLD
from tests.postgres import private_postgres

REPO = Path(__file__).resolve().parents[2]
WINDOW = 1.0  # seconds: far longer than two threads need to meet when nothing blocks them

RACE = r"""
import json, os, threading
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth import get_user_model
from django.db import connection
from hosts.models import Host
from instances import quotas
from instances.models import OwnedVM, Quota

carol = get_user_model().objects.create_user("carol")
host = Host.objects.create(name="testhost", transport="test", path=os.environ["RACE_WORLD"])
quota = Quota.objects.create(user=carol, max_vms=1, max_vcpus=4, max_memory_mib=4096, max_disk_gib=20)
quota.hosts.add(host)
start = threading.Barrier(2, timeout=10)
both_read = threading.Barrier(2, timeout=float(os.environ["RACE_WINDOW"]))
read_usage = quotas.usage

def usage(user):
    used = read_usage(user)
    try:
        both_read.wait()
    except threading.BrokenBarrierError:
        pass  # the other is not reading at the same time: it waits for the lock
    return used

quotas.usage = usage
results = []

def create(name):
    try:
        start.wait()
        quotas.reserve(carol, host, name, vcpus=1, memory_mib=512, disk_bytes=1 << 30)
        results.append("won")
    except quotas.QuotaExceeded as exc:
        results.append(str(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=create, args=(f"vm-{n}",)) for n in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(timeout=30)
print("RACE " + json.dumps({"vendor": connection.vendor, "results": sorted(results),
                            "rows": OwnedVM.objects.filter(user=carol).count()}))
"""


def _env(**more: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEBKVM_") and k != "DJANGO_SETTINGS_MODULE"}
    return {**clean, **more}


def test_two_creations_racing_past_the_quota_on_postgresql() -> None:
    manage = [sys.executable, str(REPO / "manage.py")]
    with private_postgres() as url, tempfile.TemporaryDirectory(prefix="webkvm-race-") as data:
        env = _env(WEBKVM_DATABASE_URL=url, WEBKVM_DATA_DIR=data, WEBKVM_TEST_DRIVER="true",
                   RACE_WORLD=str(BASIC_WORLD), RACE_WINDOW=str(WINDOW))
        done = subprocess.run([*manage, "shell", "-c", RACE], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.split("RACE ", 1)[1])
    assert outcome == {"vendor": "postgresql", "results": ["Over quota: 0 of 1 VMs left.", "won"], "rows": 1}
