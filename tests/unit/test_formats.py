"""One way to write a size (IEC units) and an instant (with its time zone), in Python, templates and scripts;
a host's memory figures from one reading on its page, its graph and their JSON; full-width rows of the VM list
as wide as its header."""

from __future__ import annotations

import datetime
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import libvirt
import lxml.html
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from hosts import services
from hosts.models import Host
from instances.models import DomainDefinition
from jobs.models import Job, JobState
from tests.conftest import WEB_01_UUID, need
from virt.hostinfo import host_summary, usage_sample
from virt.xml import StorageVolume
from virt.xml.codecs import iec
from webkvm.formats import when
from webkvm.models import AuditEvent, VMGrant

ROOT = Path(__file__).resolve().parents[2]
APPS = ("virt", "webkvm", "hosts", "instances", "console", "networks", "storage", "jobs")
GIB = 1 << 30
MIB = 1 << 20

SIZES = [
    (0, "0 bytes"), (512, "512 bytes"), (1023, "1023 bytes"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (64 * MIB, "64.0 MiB"), (512 * MIB, "512 MiB"), (1023 * MIB, "1023 MiB"), (1023.6 * MIB, "1.0 GiB"),
    (99.94 * MIB, "99.9 MiB"), (99.96 * MIB, "100 MiB"), (2 * GIB, "2.0 GiB"), (2304 * MIB, "2.3 GiB"),  # halves up
    (5_859_064 * 1024, "5.6 GiB"), (16 * GIB, "16.0 GiB"), (3 << 40, "3.0 TiB"), (12.25 * GIB, "12.3 GiB"),
]


@pytest.mark.parametrize(("size", "words"), SIZES)
def test_sizes_read_in_binary_units(size: float, words: str) -> None:
    assert iec(size) == words


def run_format_js(time_zone: str, calls: list[tuple[str, Any]]) -> list[str]:
    """static/js/format.js as a browser runs it, with <html data-time-zone> set; each call's answer."""
    node = shutil.which("node")
    need(node is not None, "node (installed with the front-end libraries) runs static/js/format.js")
    script = ("const [file, zone, calls] = process.argv.slice(1);\n"
              "global.window = {}; global.document = {documentElement: {dataset: {timeZone: zone}}};\n"
              "require(file); const f = window.webkvmFormat;\n"
              "console.log(JSON.stringify(JSON.parse(calls).map(([name, arg]) => f[name](arg))));\n")
    done = subprocess.run([str(node), "-e", script, str(ROOT / "static/js/format.js"), time_zone, json.dumps(calls)],
                          capture_output=True, text=True, timeout=30, check=True)
    return list(json.loads(done.stdout))


def test_scripts_write_sizes_and_times_as_the_server_does(settings) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    instants = [datetime.datetime(2026, 12, 2, 12, 51, 7, tzinfo=datetime.UTC).timestamp(),  # CET
                datetime.datetime(2026, 7, 1, 23, 5, 9, tzinfo=datetime.UTC).timestamp()]  # CEST, the next day
    calls = ([("iec", size) for size, _ in SIZES] + [("kib", 65536), ("kib", None)]
             + [("clock", epoch) for epoch in instants])
    expected = ([words for _, words in SIZES] + ["64.0 MiB", "unknown"]
                + [when(epoch).split(" ")[1] for epoch in instants])
    assert [when(epoch) for epoch in instants] == ["2026-12-02 13:51:07 CET", "2026-07-02 01:05:09 CEST"]
    assert run_format_js("Europe/Berlin", calls) == expected


# --- every page: IEC units only ----------------------------------------------------------------------

DECIMAL_UNIT = re.compile(r"\d(?:\s|\xa0|&nbsp;)*(?:[kKMGTP]B)\b")
IEC_FIGURE = re.compile(r"\d+(?:\.\d)? (?:KiB|MiB|GiB|TiB)\b")


def vm_with_disk(host: Host) -> str:
    """A VM with a 2 GiB volume of the test world's pool: its page lists the disk's size."""
    def define(conn: libvirt.virConnect) -> str:
        xml = StorageVolume.new(name="sized.qcow2", capacity=2 * GIB, allocation=0, format="qcow2").to_xml()
        path = conn.storagePoolLookupByName("images").createXML(xml, 0).path()
        dom = conn.defineXML(
            "<domain type='test'><name>sized</name><memory unit='MiB'>1536</memory><os><type>hvm</type></os>"
            f"<devices><disk type='file' device='disk'><source file='{path}'/><target dev='vda'/></disk></devices>"
            "</domain>")
        return str(dom.UUIDString())
    return str(services.call(host, define))


def test_pages_write_sizes_in_binary_units(admin_client: Client, test_host: Host) -> None:
    uuid = vm_with_disk(test_host)
    pages = {
        # The test driver's blockInfo says 1 TiB for every disk, whatever its volume holds.
        "VM page": (reverse("instances:detail", args=["testhost", uuid]), ["1.5 GiB", "1.0 TiB"]),
        "VM list": (reverse("instances:list"), ["1.0 GiB", "2.0 GiB", "256 MiB"]),
        "pool page": (reverse("storage:pool", args=["testhost", "images"]), ["2.0 GiB", "100 GiB"]),
        "pool list": (reverse("storage:pools", args=["testhost"]), ["100 GiB"]),
        "host page": (reverse("hosts:detail", args=["testhost"]), ["16.0 GiB"]),
        "host list": (reverse("hosts:list"), ["16.0 GiB"]),
    }
    for name, (url, figures) in pages.items():
        response = admin_client.get(url)
        assert response.status_code == 200, name
        page = response.content.decode()
        assert DECIMAL_UNIT.findall(page) == [], name
        assert [figure for figure in figures if figure not in page] == [], (name, IEC_FIGURE.findall(page))


# --- one formatter: no other in scripts, templates or Python ----------------------------------------

def sources(pattern: str, *skip: str) -> list[Path]:
    found = [p for p in ROOT.glob(pattern) if not {"node_modules", ".venv", "var", "vendor"} & set(p.parts)]
    return sorted(p for p in found if p.relative_to(ROOT).as_posix() not in skip)


# Signs of a script writing bytes itself: scaling by a binary unit step, significant digits, a unit table or
# a decimal unit in a string, a size-named function.
SCRIPT_SIZES = [re.compile(p) for p in (
    r"/=?\s*1024\b", r"\btoPrecision\(", r"""["'][KMGTP]i?B["']""", r"""["'][^"'\n]*\d?\s?[KMGTP]B\b""",
    r"function\s+(?:kib|mib|gib|iec|bytes|size|filesize|human\w*)\s*\(",
)]
# Python that writes a computed size with a unit itself ("{x // MIB} MiB") instead of virt.xml.codecs.iec.
PYTHON_SIZES = re.compile(r"\{[^{}]*(?:/|>>)[^{}]*\}\s*(?:[KMGTP]i?B)\b|filesizeformat")
TEMPLATE_DATES = re.compile(r"\|\s*(?:date|time|naturaltime|naturalday)\b")


def test_one_size_formatter_and_one_date_filter() -> None:
    scripts = sources("**/static/**/*.js", "static/js/format.js")
    assert len(scripts) > 5
    assert [f"{p.relative_to(ROOT)}: {rule.pattern}" for p in scripts for rule in SCRIPT_SIZES
            if rule.search(p.read_text())] == []
    python = [p for app in APPS for p in sources(f"{app}/**/*.py", "virt/xml/codecs.py")]
    assert [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in python for m in PYTHON_SIZES.finditer(p.read_text())] == []
    templates = sources("**/templates/**/*.html")
    assert [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in templates
            for m in re.finditer(r"filesizeformat|" + TEMPLATE_DATES.pattern, p.read_text())] == []


# --- instants: one format, in the panel's time zone ---------------------------------------------------

AT = datetime.datetime(2026, 12, 2, 12, 51, 7, tzinfo=datetime.UTC)
SHOWN = "2026-12-02 13:51:07 CET"  # AT in Europe/Berlin
INSTANT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: (?:CET|CEST))?")
OTHER_DATES = re.compile(r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\.? \d|[ap]\.m\.|\d{4}-\d\d-\d\dT\d")


def test_every_page_writes_instants_one_way(settings, admin_client: Client, admin_user: Any,
                                            test_host: Host) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    get_user_model().objects.filter(pk=admin_user.pk).update(last_login=AT)
    event = AuditEvent.objects.create(username="root-admin", action="vm.start", object_type="vm", result="ok",
                                      repeats=3, last_time=AT)
    AuditEvent.objects.filter(pk=event.pk).update(time=AT)
    job = Job.objects.create(kind="volume.clone", target_type="volume", target_name="a.img", state=JobState.DONE,
                             started=AT, finished=AT, owner=admin_user)
    Job.objects.filter(pk=job.pk).update(created=AT)
    kept = DomainDefinition.objects.create(host=test_host, vm_uuid=WEB_01_UUID, vm_name="web-01", reason="edit",
                                           xml="<domain/>", username="root-admin")
    DomainDefinition.objects.filter(pk=kept.pk).update(time=AT)
    services.call(test_host, lambda conn: conn.lookupByUUIDString(WEB_01_UUID).snapshotCreateXML(
        "<domainsnapshot><name>before</name></domainsnapshot>", 0))
    pages = {
        "audit log": (reverse("audit"), 2), "users": (reverse("users:list"), 1), "jobs": (reverse("jobs:list"), 1),
        "job": (reverse("jobs:detail", args=[job.pk]), 3),
        "XML history": (reverse("instances:xml_history", args=["testhost", WEB_01_UUID]), 1),
        "snapshots": (reverse("instances:snapshots", args=["testhost", WEB_01_UUID]), 0),
    }
    for name, (url, count) in pages.items():
        page = admin_client.get(url).content.decode()
        assert OTHER_DATES.findall(page) == [], name
        instants = INSTANT.findall(page)
        assert instants and all(i.endswith(("CET", "CEST")) for i in instants), (name, instants)
        assert instants.count(SHOWN) == count, (name, instants)


# --- a host's memory: one reading on its page, its graph and their JSON -------------------------------

class WithMemoryStats:
    """A test-driver connection that also answers virNodeGetMemoryStats, which the test driver lacks and
    every real host (Linux) has: free, buffers and page cache apart."""

    STATS = {"total": 5_859_064, "free": 1_000_000, "buffers": 200_000, "cached": 2_900_000}  # KiB

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def getMemoryStats(self, cell: int, flags: int = 0) -> dict[str, int]:  # libvirt's name
        return dict(self.STATS)


def test_host_summary_and_usage_read_memory_one_way(test_host: Host) -> None:
    summary, sample = services.call(test_host, lambda conn: (host_summary(WithMemoryStats(conn)),
                                                             usage_sample(WithMemoryStats(conn))))
    total, free = 5_859_064 * 1024, (1_000_000 + 200_000 + 2_900_000) * 1024
    assert (summary.memory_bytes, summary.free_memory_bytes, summary.used_memory_bytes) == (total, free, total - free)
    assert (sample.memory_total, sample.memory_free, sample.memory_used) == (total, free, total - free)
    assert summary.memory_percent == sample.memory_percent == 30.0
    assert (iec(total), iec(free), iec(total - free)) == ("5.6 GiB", "3.9 GiB", "1.7 GiB")


def fact(page: str, name: str) -> tuple[str, str | None]:
    cell = lxml.html.fromstring(page).get_element_by_id("facts").xpath(".//*[@data-fact=$name]", name=name)[0]
    return cell.text_content().strip(), cell.get("data-bytes")


def test_host_page_figures_agree_with_its_percentage_and_graph(admin_client: Client) -> None:
    Host.objects.create(name="demo", transport="test", path="default")  # free memory known, total 3 GiB
    page = admin_client.get(reverse("hosts:detail", args=["demo"])).content.decode()
    (total_words, total), (used_words, used), (free_words, free) = (
        fact(page, "memory"), fact(page, "memory_used"), fact(page, "free_memory"))
    percent_words, _ = fact(page, "memory_percent")
    assert total and used and free and int(used) + int(free) == int(total) and 0 < int(used) < int(total)
    assert (total_words, used_words, free_words) == (iec(int(total)), iec(int(used)), iec(int(free)))
    assert percent_words == f"{math.floor(1000 * int(used) / int(total) + 0.5) / 10:.1f} %"
    sample = admin_client.get(reverse("hosts:usage", args=["demo"])).json()
    assert (sample["memory_total"], sample["memory_used"], sample["memory_free"]) == (int(total), int(used), int(free))
    assert f"{sample['memory_percent']:.1f} %" == percent_words


# --- the VM list: a full-width row spans every column -------------------------------------------------

def header_columns(table: Any) -> int:
    return sum(int(th.get("colspan", 1)) for th in table.xpath("./thead/tr[1]/th"))


@pytest.mark.parametrize("admin", [True, False], ids=["admin", "user"])
@pytest.mark.parametrize("one_host", [False, True], ids=["all hosts", "one host"])
def test_unreachable_row_spans_the_table(admin: bool, one_host: bool, admin_client: Client, user_client: Client,
                                         granted_user: Any) -> None:
    dead = Host.objects.create(name="dead", transport="tcp", hostname="127.0.0.1", port=1, insecure_tcp=True)
    VMGrant.objects.create(user=granted_user, host=dead, vm_uuid=WEB_01_UUID, vm_name="gone")
    client = admin_client if admin else user_client
    url = reverse("instances:host", args=["dead"]) if one_host else reverse("instances:list")
    table = lxml.html.fromstring(client.get(url).content.decode()).get_element_by_id("fleet")
    row = table.xpath("./tbody/tr[@data-host='dead']")[0]
    assert "unreachable" in row.get("class") and int(row.xpath("./td")[0].get("colspan")) == header_columns(table) > 5
