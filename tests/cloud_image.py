"""A real cloud image for the tests that boot one: Debian 12 (bookworm) with `linux-image-cloud-amd64`,
`cloud-init` (NoCloud: the seed CD-ROM labelled `cidata`), `openssh-server` and `cloud-guest-utils`, built
from Debian's packages only (mmdebstrap through apt's configured source), as a qcow2 of 2 GiB virtual size.

The disk: an MBR with one partition (1 MiB .. end, ext4 labelled `root`, filled by `mkfs.ext4 -d` at an
offset: no loop device, no mount) and GRUB's own boot sector and core image written into the MBR gap with
its configuration embedded: it loads `/vmlinuz` and `/initrd.img` (the symlinks Debian's kernel package keeps,
so a kernel upgrade in the guest is booted too: no GRUB package in the guest has to keep anything up to date)
at once, no menu, no timeout. The kernel finds its root by
the partition's PARTUUID (any disk bus), with `console=ttyS0` (and tty0) and no resume probe.

In the guest: cloud-init renders its network configuration for systemd-networkd (the `networkd`
renderer of cloud-init 22.4; netplan is not installed, ifupdown neither; checked: DHCP as cloud-init's
fallback when the seed has no network-config, DHCP and a static address with gateway and DNS from a
network-config v2 matched by MAC as virt.cloudinit writes it), systemd-resolved for DNS,
growpart + resize2fs grow the root partition and filesystem to the disk's size on first boot, only
ed25519 and ECDSA host keys are generated (RSA key generation takes seconds under full emulation), the
datasource list is NoCloud only (no probing of clouds), apt's and e2scrub's timers are off. The default
user is Debian's (`debian`); the seed's user-data names others. qemu-guest-agent is in (it starts only
when the VM has its channel).

Cache: built once per machine into `$XDG_CACHE_HOME/webkvm` (else `~/.cache/webkvm`) as
`cloud-<key>/debian-12-cloud-amd64.qcow2`, written under a temporary name and renamed (one build at a
time per machine: `cloud.lock` beside it). The key is the SHA-256 of the recipe (`recipe()`: the files
written into the image, GRUB's configuration, the disk layout and the source of the functions that build
it, not this module's comments), the suite, the package list and the candidate versions that
`apt-cache policy` gives for the main packages (the kernel, cloud-init, openssh-server, systemd): a new
Debian point release or a changed recipe builds a new image (and removes the old ones). Package versions
that apt resolves inside mmdebstrap cannot be known before the download: the candidates stand for them.

Measured on this machine (2 cores, shared with other test runs, December 2026):
- build: 91 s on a quiet machine, up to 135 s under load (most of it mmdebstrap fetching and unpacking the
  packages); the qcow2 (zlib-compressed clusters) is 137 MiB, the root filesystem holds about 440 MB; the
  initramfs is 6 MiB (MODULES=list; 15 MiB with initramfs-tools' default).
- boot under TCG (pc machine, qemu64 CPU, 1 GiB): the kernel's first line on ttyS0 about 5 s after start
  (SeaBIOS, then GRUB reading 14 MiB of kernel and the initramfs); sshd answers 37-42 s after start with 2
  vCPUs, about 53 s with 1 vCPU (plain qemu, load average about 2). The lab test (libvirt, 2 vCPUs, static
  network-config) logged in over ssh 48 s after start at a load of 1-2, 61 s at 2-3.5 from other test
  runs, and plain qemu took 76-91 s at a load of 4-6: under full emulation CPU time is the budget.
  sshd waits for cloud-init's first two stages (cloud-init.service runs before sysinit.target):
  init-local about 12 s and init about 11 s, of which about 4 s per stage is Python importing cloud-init
  and 4 s growpart; nothing else is on that path (systemd-analyze critical-chain ssh.service).

Build by hand: `python -m tests.cloud_image [TARGET]` (prints the cached path when no TARGET).
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SUITE = "bookworm"
IMAGE_NAME = "debian-12-cloud-amd64.qcow2"
VIRTUAL_BYTES = 2 * 2**30
PART_START = 2048  # sectors of 512 bytes: 1 MiB, GRUB's core image lives in the gap before it
DISK_ID = 0x7765626B  # the MBR disk signature ("webk"): the root partition is PARTUUID=7765626b-01
ROOT_PARTUUID = f"{DISK_ID:08x}-01"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
GRUB_BIOS = Path("/usr/lib/grub/i386-pc")
# What the host needs to build it (scripts/install-system-packages.sh installs them).
TOOLS = {"mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "grub-mkimage": "grub-common",
         "qemu-img": "qemu-utils"}

MAIN_PACKAGES = ("linux-image-cloud-amd64", "cloud-init", "openssh-server", "systemd")
PACKAGES = (*MAIN_PACKAGES, "systemd-sysv", "systemd-resolved", "udev", "initramfs-tools", "cloud-guest-utils",
            "fdisk", "e2fsprogs", "iproute2", "sudo", "qemu-guest-agent", "ca-certificates", "less")

# The initramfs holds only what finds the root disk on a virtio, virtio-scsi or IDE bus (ext4 is built in;
# the cloud kernel has no AHCI driver at all): a third of the size of initramfs-tools' default (MODULES=most).
INITRD_MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "ata_piix")
CMDLINE = f"root=PARTUUID={ROOT_PARTUUID} rw console=tty0 console=ttyS0,115200 noresume"
# Run by GRUB's rescue parser straight from the core image: no normal mode, no menu, no modules read from disk.
GRUB_EARLY_CFG = f"""\
set root=(hd0,msdos1)
linux /vmlinuz {CMDLINE}
initrd /initrd.img
boot
"""
GRUB_MODULES = ("biosdisk", "part_msdos", "ext2", "linux", "boot")

CLOUD_CFG = """\
# Written by webkvm's tests/cloud_image.py
datasource_list: [NoCloud, None]
system_info:
  network:
    renderers: [networkd]
ssh_genkeytypes: [ed25519, ecdsa]
locale: C.UTF-8
growpart:
  mode: auto
  devices: ['/']
resize_rootfs: true
grub_dpkg:
  enabled: false
"""

# Runs in mmdebstrap's customize phase: "$1" is the new root.
CUSTOMIZE = f"""\
set -eu
root="$1"
printf '%s\\n' 'PARTUUID={ROOT_PARTUUID} / ext4 rw,discard,errors=remount-ro 0 0' > "$root/etc/fstab"
printf 'debian\\n' > "$root/etc/hostname"
printf '127.0.0.1 localhost\\n::1 localhost ip6-localhost ip6-loopback\\n' > "$root/etc/hosts"
printf 'RESUME=none\\n' > "$root/etc/initramfs-tools/conf.d/resume"
printf 'MODULES=list\\n' > "$root/etc/initramfs-tools/conf.d/webkvm"
printf '%s\\n' {" ".join(INITRD_MODULES)} >> "$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service
chroot "$root" systemctl disable apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \\
    e2scrub_reap.service fstrim.timer 2>/dev/null || true
# Early-boot units a VM on a panel has no use for, which compete for the one or two emulated CPUs while cloud-init
# starts: debug and tracing filesystems, binfmt, EFI pstore (BIOS guest), the DRM module (serial and VGA text).
chroot "$root" systemctl mask sys-kernel-debug.mount sys-kernel-tracing.mount systemd-binfmt.service \\
    proc-sys-fs-binfmt_misc.automount systemd-pstore.service modprobe@efi_pstore.service modprobe@drm.service
mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
printf '[Service]\\nExecStart=\\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30\\n' \\
    > "$root/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
"""

DPKG_OPTS = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/locale/*",
             "path-include=/usr/share/locale/locale.alias", "path-exclude=/usr/share/doc/*",
             "path-include=/usr/share/doc/*/copyright")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "webkvm"


def missing_tools() -> list[str]:
    return sorted({package for tool, package in TOOLS.items() if not shutil.which(tool)}
                  | (set() if (GRUB_BIOS / "boot.img").exists() else {"grub-pc-bin"}))


def apt_policy() -> str:
    """The candidate version apt would install of each main package ("name=version"), empty when apt knows
    none (no `apt-get update` yet)."""
    shown = subprocess.run(["apt-cache", "policy", *MAIN_PACKAGES], capture_output=True, text=True,
                           env={**os.environ, "LC_ALL": "C"})
    versions, name = [], ""
    for line in shown.stdout.splitlines():
        if line and not line.startswith(" "):
            name = line.rstrip(":")
        elif line.strip().startswith("Candidate:"):
            versions.append(f"{name}={line.split(':', 1)[1].strip()}")
    return "\n".join(sorted(versions))


def recipe() -> str:
    """Everything that decides what is built: the texts written into the image, the layout, and the code
    of the functions that build it (so that editing a comment or a test helper here rebuilds nothing)."""
    code = "".join(inspect.getsource(f) for f in (build, mbr, grub_core))
    texts = (CUSTOMIZE, CLOUD_CFG, GRUB_EARLY_CFG, *DPKG_OPTS, *GRUB_MODULES, *INITRD_MODULES)
    return "\n".join((*texts, str(VIRTUAL_BYTES), str(PART_START), str(DISK_ID), code))


def cache_key() -> str:
    inputs = "\n".join([recipe(), SUITE, " ".join(PACKAGES), apt_policy()])
    return hashlib.sha256(inputs.encode()).hexdigest()[:16]


def mbr(boot_code: bytes, total_sectors: int) -> bytes:
    """A master boot record: GRUB's boot code, the disk signature and one bootable Linux partition from
    PART_START to the end of the disk (CHS fields at their "use LBA" maximum)."""
    sectors = total_sectors - PART_START
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", PART_START, sectors)
    return (boot_code[:440] + struct.pack("<IH", DISK_ID, 0) + entry + bytes(48) + b"\x55\xaa")


def grub_core(tmp: Path) -> bytes:
    early = tmp / "early.cfg"
    early.write_text(GRUB_EARLY_CFG)
    core = tmp / "core.img"
    subprocess.run(["grub-mkimage", "-O", "i386-pc", "-d", str(GRUB_BIOS), "-c", str(early), "-o", str(core),
                    "-p", "(hd0,msdos1)/boot/grub", *GRUB_MODULES], check=True, capture_output=True, text=True)
    data = core.read_bytes()
    assert len(data) < (PART_START - 1) * 512, "GRUB's core image does not fit before the partition"
    return data


def run(args: list[str], **kwargs: object) -> None:
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {(done.stderr or done.stdout)[-3000:]}")


def build(target: Path) -> None:
    """Build the image at `target` (a qcow2), written under another name first so that no half-built file is
    ever used. Needs root (mmdebstrap's root mode) and the packages of TOOLS."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="webkvm-cloud-", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        rootfs, hook = tmp / "root", tmp / "customize.sh"
        hook.write_text(CUSTOMIZE)
        (tmp / "cloud.cfg").write_text(CLOUD_CFG)
        mirror = str(SOURCES) if SOURCES.exists() else "http://deb.debian.org/debian"
        run(["mmdebstrap", "--mode=root", "--variant=minbase", "--include=" + ",".join(PACKAGES),
             *[f"--dpkgopt={opt}" for opt in DPKG_OPTS],
             f"--customize-hook=cp {tmp / 'cloud.cfg'} \"$1/etc/cloud/cloud.cfg.d/90_webkvm.cfg\"",
             f"--customize-hook=sh {hook} \"$1\"",
             SUITE, str(rootfs), mirror])
        for link in ("vmlinuz", "initrd.img"):
            assert (rootfs / link).exists(), f"/{link} is missing in the new root"
        raw = tmp / "disk.raw"
        with raw.open("wb") as out:
            out.truncate(VIRTUAL_BYTES)
        fs_bytes = VIRTUAL_BYTES - PART_START * 512
        run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), "-E", f"offset={PART_START * 512}",
             str(raw), f"{fs_bytes // 1024}k"])
        core = grub_core(tmp)
        with raw.open("r+b") as disk:
            disk.write(mbr((GRUB_BIOS / "boot.img").read_bytes(), VIRTUAL_BYTES // 512))
            disk.seek(512)
            disk.write(core)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(partial)])
        partial.replace(target)


def cloud_image_path() -> Path:
    """The cached image, built first when this machine has none for these inputs (one build at a time per
    machine: a second test run waits for the first one's image instead of building its own)."""
    target = cache_dir() / f"cloud-{cache_key()}" / IMAGE_NAME
    if target.exists():
        return target
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / "cloud.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            for stale in cache_dir().glob("cloud-*"):
                if stale != target.parent:
                    shutil.rmtree(stale, ignore_errors=True)
            build(target)
    return target


def can_build() -> str:
    """Why this machine cannot build the image, or "" when it can."""
    if os.geteuid() != 0:
        return "building the cloud image needs root (mmdebstrap --mode=root)"
    missing = missing_tools()
    return f"building the cloud image needs the Debian packages {' '.join(missing)}" if missing else ""


@pytest.fixture(scope="session")
def cloud_image() -> Path:
    """The path of the cached Debian 12 cloud image (qcow2), built on first use; fails under CI=true when it
    cannot be built."""
    from tests.conftest import need  # here: tests.conftest needs Django, `python -m tests.cloud_image` does not

    cached = cache_dir() / f"cloud-{cache_key()}" / IMAGE_NAME
    if cached.exists():
        return cached
    reason = can_build()
    need(not reason, reason)
    try:
        return cloud_image_path()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        need(False, f"the cloud image could not be built: {exc}")
        raise


def main(argv: list[str]) -> int:
    reason = can_build()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    started = time.monotonic()
    if argv:
        build(Path(argv[0]).resolve())
        path = Path(argv[0]).resolve()
    else:
        path = cloud_image_path()
    print(f"{path} ({path.stat().st_size / 2**20:.0f} MiB, {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
