"""The seed ISO on a real libvirtd: uploaded through a libvirt stream into a dir pool the test makes,
downloaded back byte for byte, and removed."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from virt.cloudinit import SeedSpec, build_seed, hash_password, read_seed, remove_seed, upload_seed
from virt.storage_rules import StorageInputError
from virt.streams import Download

pytestmark = pytest.mark.lab


def test_seed_upload_download_remove(lab_conn: libvirt.virConnect, test_pool: libvirt.virStoragePool) -> None:
    pool = str(test_pool.name())
    seed = build_seed(SeedSpec("web-1", "alice", password_hash=hash_password("correct horse"),
                               mac="52:54:00:aa:bb:cc"), "11111111-2222-4333-8444-555555555555")
    path = upload_seed(lab_conn, pool, "web-1-seed.iso", seed, timeout=30)
    assert Path(path).read_bytes() == seed  # what the VM's CD-ROM will read
    download = Download.begin(lab_conn, pool, "web-1-seed.iso")
    got = b""
    while chunk := download.read(1 << 20):
        got += chunk
    assert got == seed
    assert read_seed(got)["meta-data"] == read_seed(seed)["meta-data"]

    with pytest.raises(StorageInputError, match="already has a volume named"):
        upload_seed(lab_conn, pool, "web-1-seed.iso", seed, timeout=30)
    assert Path(path).read_bytes() == seed  # the refusal left the first one alone

    assert remove_seed(lab_conn, pool, "web-1-seed.iso") is True
    test_pool.refresh(0)
    assert "web-1-seed.iso" not in test_pool.listVolumes() and not Path(path).exists()
    assert remove_seed(lab_conn, pool, "web-1-seed.iso") is False
