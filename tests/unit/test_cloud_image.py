"""The recipe of the tests' cloud image (tests/cloud_image.py), checked without building it: the MBR it writes,
GRUB's embedded configuration, the cache key and where the cache lives, and that CI never skips for it."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import cloud_image as ci
from tests.conftest import need

POLICY = """\
linux-image-cloud-amd64:
  Installed: (none)
  Candidate: 6.1.158-1
  Version table:
     6.1.158-1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
cloud-init:
  Installed: (none)
  Candidate: 22.4.2-1+deb12u3
openssh-server:
  Installed: 1:9.2p1-2+deb12u7
  Candidate: 1:9.2p1-2+deb12u7
systemd:
  Installed: 252.39-1~deb12u1
  Candidate: 252.39-1~deb12u1
"""


def test_the_mbr_has_one_bootable_linux_partition_to_the_end_of_the_disk() -> None:
    boot = bytes(range(256)) * 2
    sector = ci.mbr(boot, ci.VIRTUAL_BYTES // 512)
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    assert sector[:440] == boot[:440]  # GRUB's boot code, not its (empty) partition table
    assert struct.unpack("<I", sector[440:444])[0] == ci.DISK_ID
    status, kind, start, count = sector[446], sector[450], *struct.unpack("<II", sector[454:462])
    assert (status, kind, start) == (0x80, 0x83, ci.PART_START)
    assert (start + count) * 512 == ci.VIRTUAL_BYTES
    assert sector[462:510] == bytes(48)  # no other partition: growpart may grow this one
    assert f"{ci.DISK_ID:08x}-01" == ci.ROOT_PARTUUID  # what the kernel's root= names


def test_grub_boots_at_once_with_a_serial_console() -> None:
    lines = ci.GRUB_EARLY_CFG.splitlines()
    assert lines[0] == "set root=(hd0,msdos1)" and lines[-1] == "boot"
    assert not any(word in ci.GRUB_EARLY_CFG for word in ("menuentry", "timeout"))
    assert f"root=PARTUUID={ci.ROOT_PARTUUID}" in lines[1] and "console=ttyS0" in lines[1]


def test_grubs_core_image_fits_before_the_partition(tmp_path: Path) -> None:
    need(bool(shutil.which("grub-mkimage")) and (ci.GRUB_BIOS / "boot.img").exists(), "grub-pc-bin, grub-common")
    core = ci.grub_core(tmp_path)
    assert 512 < len(core) < (ci.PART_START - 1) * 512


def test_the_cache_lives_under_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ci.cache_dir() == tmp_path / "webkvm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ci.cache_dir() == tmp_path / "home" / ".cache" / "webkvm"


def test_the_key_follows_the_candidate_versions_apt_would_install(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = [POLICY]

    def fake_run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        assert args[:2] == ["apt-cache", "policy"] and tuple(args[2:]) == ci.MAIN_PACKAGES
        return subprocess.CompletedProcess(args, 0, shown[0], "")

    monkeypatch.setattr(ci.subprocess, "run", fake_run)
    assert ci.apt_policy().splitlines() == [
        "cloud-init=22.4.2-1+deb12u3", "linux-image-cloud-amd64=6.1.158-1", "openssh-server=1:9.2p1-2+deb12u7",
        "systemd=252.39-1~deb12u1"]
    key = ci.cache_key()
    assert key == ci.cache_key() and len(key) == 16
    shown[0] = POLICY.replace("6.1.158-1", "6.1.159-1")  # a kernel update in the archive: a new image
    assert ci.cache_key() != key


def test_a_machine_that_cannot_build_it_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing cached there
    monkeypatch.setattr(ci, "can_build", lambda: "building the cloud image needs the Debian packages mmdebstrap")
    monkeypatch.setattr(ci, "build", lambda target: pytest.fail("must not try to build"))
    fixture = ci.cloud_image.__wrapped__  # type: ignore[attr-defined]
    monkeypatch.setattr("tests.conftest.IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="needs the Debian packages mmdebstrap"):
        fixture()
    monkeypatch.setattr("tests.conftest.IN_CI", False)
    with pytest.raises(pytest.skip.Exception):
        fixture()


def test_the_key_follows_the_recipe_not_the_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ci, "apt_policy", lambda: "cloud-init=22.4.2-1+deb12u3")
    key = ci.cache_key()
    monkeypatch.setattr(ci, "__doc__", "changed")
    assert ci.cache_key() == key
    monkeypatch.setattr(ci, "CLOUD_CFG", ci.CLOUD_CFG + "ssh_pwauth: true\n")
    assert ci.cache_key() != key
