"""Importing images on the real libvirtd: files made with qemu-img whose names lie about them, in a dir pool of
the test's own marked as an image library, imported through the admin's page. The format and virtual size are
what libvirt read from each file (tests/unit/test_images.py has the same table on the test driver, which
only repeats what it was told); an overlay and a vmdk are field errors, with nothing stored."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from storage.models import CloudImage, ImageLibrary
from tests.conftest import need
from virt.xml import StoragePool

pytestmark = pytest.mark.lab
MIB = 1 << 20


def _qemu_img(folder: Path, name: str, fmt: str, size: str = "", *options: str) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *options, str(folder / name), *([size] if size else [])],
                   check=True, timeout=30)
    (folder / name).chmod(0o644)


def test_imports_read_the_format_and_size_from_the_file(admin_client: Client, lab_host: Host,
                                                         test_pool: libvirt.virStoragePool) -> None:
    need(shutil.which("qemu-img") is not None, "qemu-img is not installed")
    pool = str(test_pool.name())
    folder = Path(StoragePool.from_xml(test_pool.XMLDesc(0)).target_path or "")
    _qemu_img(folder, "liar.qcow2", "raw", "64M")  # raw, whatever its name says
    _qemu_img(folder, "disk.img", "qcow2", "96M")  # qcow2, named like a raw file
    _qemu_img(folder, "overlay.qcow2", "qcow2", "", "-b", str(folder / "disk.img"), "-F", "qcow2")
    _qemu_img(folder, "disk.vmdk", "vmdk", "32M")
    test_pool.refresh(0)
    ImageLibrary.objects.create(host=lab_host, pool=pool)
    url = reverse("storage:image_import", args=[lab_host.name, pool])

    def post(volume: str, name: str) -> Any:
        return admin_client.post(url, {"volume": volume, "name": name, "os": "", "os_family": "debian",
                                       "os_version": "12", "default_user": "debian", "min_disk": "",
                                       "firmware": "bios"})

    for volume, name, fmt, size in (("liar.qcow2", "liar", "raw", 64 * MIB), ("disk.img", "disk", "qcow2", 96 * MIB)):
        response = post(volume, name)
        assert response.status_code == 302, response.context and response.context["form"].errors
        image = CloudImage.objects.get(host=lab_host, volume=volume)
        assert (image.format, image.virtual_bytes) == (fmt, size), volume
    for volume, words in (("overlay.qcow2", f"overlay on {folder / 'disk.img'}"), ("disk.vmdk", "format is vmdk")):
        response = post(volume, volume.replace(".", "-"))
        assert response.status_code == 200, volume
        errors = response.context["form"].errors
        assert list(errors) == ["volume"] and words in errors["volume"][0], errors
    assert sorted(CloudImage.objects.values_list("volume", flat=True)) == ["disk.img", "liar.qcow2"]
