"""The operating-system list of the create form, read from libosinfo's XML (virt/osinfo.py)."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

from tests.conftest import need
from virt.osinfo import DEFAULT_DB, GENERIC, OTHER, catalogue

FIXTURE = Path(__file__).resolve().parents[1] / "osinfo"
TODAY = date(2026, 12, 5)


def test_fixture_tree_inherits_filters_and_orders() -> None:
    cat = catalogue(FIXTURE)
    assert "http://acme.test/broken/1" not in cat.entries  # a file that does not parse is skipped
    offered = [(e.vendor, e.name) for e in cat.offered(TODAY)]
    # by vendor; newest first; no prerelease (4), no release whose end of life is long past (1), no old
    # release without an end-of-life date (gate 7); the untranslated name
    assert offered == [("Acme Corporation", "Acme Gate 11"), ("Example Project", "Penguin 3"),
                       ("Example Project", "Penguin 2")]
    two, three, gate = (cat.entries[f"http://{i}"] for i in ("example.org/penguin/2", "example.org/penguin/3",
                                                             "acme.test/gate/11"))
    # inherited from penguin 1: devices and resources (recommended over minimum)
    assert (two.virtio_disk, two.virtio_net, two.vcpus, two.memory_mib, two.disk_gib) == (True, True, 1, 1024, 10)
    assert (two.disk_bus, two.nic_model("pc-q35-7.2")) == ("virtio", "virtio")
    # x86_64 resources over arch "all"; a device taken back
    assert (three.vcpus, three.memory, three.disk_gib) == (2, "2G", 20)
    assert (three.virtio_disk, three.virtio_net) == (True, False)
    assert (three.nic_model("pc-i440fx-7.2"), three.nic_model("pc-q35-7.2")) == ("e1000", "e1000e")
    # no virtio drivers: SATA; only minimum resources: those; UEFI only
    assert (gate.disk_bus, gate.vcpus, gate.memory, gate.disk_gib, gate.efi_only) == ("sata", 2, "4G", 64, True)
    assert not two.efi_only
    assert cat.get(OTHER) is GENERIC and cat.get("http://nowhere.test/x") is None
    assert (GENERIC.disk_bus, GENERIC.nic_model()) == ("sata", "e1000")


def test_end_of_life_moves_with_the_day() -> None:
    names = [e.name for e in catalogue(FIXTURE).offered(date(2020, 6, 1))]
    assert "Penguin 1" in names  # ended 2019-04: within the grace of two years then
    assert "Acme Gate 7" not in names  # 2009, no end-of-life date: older than eight years


def test_missing_database_is_an_empty_list(tmp_path: Path) -> None:
    assert catalogue(tmp_path / "nothing").offered(TODAY) == []


def test_installed_database() -> None:
    need((DEFAULT_DB / "os").is_dir(), "osinfo-db is not installed (apt-get install osinfo-db)")
    catalogue.cache_clear()
    began = time.perf_counter()
    cat = catalogue()
    parsed = time.perf_counter() - began
    began = time.perf_counter()
    assert catalogue() is cat and time.perf_counter() - began < 0.01  # once per process
    offered = cat.offered(date.today())
    assert parsed < 5 and len(cat.entries) > 300
    assert 10 <= len(offered) <= 150  # short enough to read
    assert any(e.virtio_disk and e.virtio_net for e in offered)
    assert any(not e.virtio_disk for e in offered)
    assert all(e.memory_mib >= 64 and e.disk_gib >= 1 and e.vcpus >= 1 for e in offered)
    vendors = [e.vendor.casefold() for e in offered]
    assert vendors == sorted(vendors)
