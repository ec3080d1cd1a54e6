"""The input rules of storage: every value that becomes a path, a name or a size on a hypervisor."""

from __future__ import annotations

import base64

import pytest

from virt.storage import PoolSpec
from virt.storage_rules import (
    check_device,
    check_host,
    check_iqn,
    check_name,
    check_pool_path,
    decode_ceph_key,
    parse_host_port,
    parse_size,
)

ROOTS = ["/var/lib/libvirt/images", "/srv/libvirt"]
GIB = 1 << 30


@pytest.mark.parametrize(("text", "expected"), [
    ("10G", 10 * GIB), ("10 GiB", 10 * GIB), ("512M", 512 << 20), ("1.5T", 3 << 39), ("20GB", 20 * 10**9),
    ("4096 b", 4096), ("1k", 1024), (" 2 g ", 2 * GIB), ("0.5G", GIB // 2),
])
def test_sizes_with_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(("text", "why"), [
    ("10", "unit"), ("", "unit"), ("G", "unit"), ("-1G", "unit"), ("1e3G", "unit"), ("10 Gigs", "Unknown unit"),
    ("0G", "more than zero"), ("65T", "64 TiB"), ("1,5G", "unit"), ("10G; rm", "unit"), ("9" * 16 + "G", "unit"),
])
def test_bad_sizes(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_size(text)


@pytest.mark.parametrize("name", ["images", "debian-12.iso", "vm_1.qcow2", "a+b", "A1"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(("name", "why"), [
    ("", "Give"), ("a/b", "'/'"), ("../etc", "'/'"), ("..", r"'\.\.'"), ("a..b", r"'\.\.'"),
    ("bad\nname", "control"), ("tab\there", "control"), ("-rf", "starting with"), (".hidden", "starting with"),
    ("spa ce", "Use letters"), ("x" * 129, "Use letters"), ("<img>", "Use letters"),
])
def test_bad_names(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_name(name)


@pytest.mark.parametrize("path", ["/var/lib/libvirt/images", "/var/lib/libvirt/images/isos", "/srv/libvirt/a/b"])
def test_paths_inside_the_roots(path: str) -> None:
    assert check_pool_path(path, ROOTS) == path


@pytest.mark.parametrize(("path", "why"), [
    ("/etc", "only live under"), ("/var/lib/libvirt", "only live under"), ("/srv/libvirt2", "only live under"),
    ("/var/lib/libvirt/images/../../../etc", r"'\.\.'"), ("/var/lib/libvirt/images/./x", r"'\.'"),
    ("var/lib/libvirt/images", "absolute"), ("/var/lib/libvirt/images/", "trailing"),
    ("/var/lib/libvirt/images//x", "doubled"), ("/var/lib/libvirt/images/a b", "Use letters"),
    ("/var/lib/libvirt/images/x\n", "control"), ("/var/lib/libvirt/images/$(id)", "Use letters"),
])
def test_paths_outside_or_malformed(path: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_pool_path(path, ROOTS)


def test_devices_hosts_iqns_keys() -> None:
    assert check_device("/dev/disk/by-id/wwn-0x5000:1") == "/dev/disk/by-id/wwn-0x5000:1"
    for bad in ("/dev", "/etc/passwd", "/dev/../etc/shadow", "sdb"):
        with pytest.raises(ValueError):
            check_device(bad)
    assert check_host("nas.example.org") == "nas.example.org" and check_host("fd00::5") == "fd00::5"
    for bad in ("-oProxyCommand=x", "user@nas", "nas/x", "a..b", "nas example", "http://nas"):
        with pytest.raises(ValueError):
            check_host(bad)
    assert parse_host_port("mon1:6789") == ("mon1", 6789)
    assert parse_host_port("[fd00::5]:6789") == ("fd00::5", 6789)
    assert parse_host_port("10.0.0.5") == ("10.0.0.5", None)
    for bad in ("mon1:0", "mon1:99999", "mon1:x", "[fd00::5]x"):
        with pytest.raises(ValueError):
            parse_host_port(bad)
    assert check_iqn("iqn.2024-01.org.example:storage.disk1")
    for bad in ("iqn.24-1.org", "iqn.2024-01.org.example:a b", "foo"):
        with pytest.raises(ValueError):
            check_iqn(bad)
    key = base64.b64encode(bytes(range(28))).decode()
    assert decode_ceph_key(key) == bytes(range(28))
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            decode_ceph_key(bad)


@pytest.mark.parametrize(("spec", "fields"), [
    (PoolSpec("dir", "ok", target_path="/etc/x"), {"target_path"}),
    (PoolSpec("dir", "../x", target_path="/srv/libvirt/x"), {"name"}),
    (PoolSpec("netfs", "n", target_path="/srv/libvirt/m", source_dir="relative"), {"hosts", "source_dir"}),
    (PoolSpec("netfs", "n", target_path="/srv/libvirt/m", hosts=(("-x", None),), source_dir="/e"), {"hosts"}),
    (PoolSpec("logical", "l", source_name="vg/../x", devices=("/dev/sdb",)), {"source_name"}),
    (PoolSpec("iscsi", "i", hosts=(("san", 70000),), iqn="nope"), {"hosts", "iqn"}),
    (PoolSpec("rbd", "r", source_name="p", hosts=(("mon", None),), ceph_user="client.admin x"), {"ceph_user"}),
    (PoolSpec("disk", "d", devices=("/dev/sdb", "/dev/sdc"), source_format="mbr"), {"devices", "source_format"}),
    (PoolSpec("zfs", "z"), {"type"}),
])
def test_pool_spec_problems_name_their_fields(spec: PoolSpec, fields: set[str]) -> None:
    assert {p.field for p in spec.problems(ROOTS)} == fields


def test_pool_roots_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from webkvm.config import ConfigError, env_paths

    monkeypatch.setenv("WEBKVM_POOL_ROOTS", "/srv/a, /data/pools")
    assert env_paths("WEBKVM_POOL_ROOTS", ["/x"]) == ["/srv/a", "/data/pools"]
    monkeypatch.delenv("WEBKVM_POOL_ROOTS")
    assert env_paths("WEBKVM_POOL_ROOTS", ["/x"]) == ["/x"]
    for bad in ("relative/path", "/srv/../etc", "/srv/a/", "/srv//a"):
        monkeypatch.setenv("WEBKVM_POOL_ROOTS", bad)
        with pytest.raises(ConfigError, match="WEBKVM_POOL_ROOTS"):
            env_paths("WEBKVM_POOL_ROOTS", ["/x"])
