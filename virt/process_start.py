"""When a VM's qemu process started, read from /proc: only for a hypervisor on the panel's own machine.

libvirt exposes no start time of a running VM over its API (the live status XML stays on the host and
dom.getTime() needs the guest agent), but the local qemu driver writes the process id to
/run/libvirt/qemu/NAME.pid, and /proc/PID/stat says when that process began. A remote host's /proc
is out of reach, so callers ask this for `qemu:///system` on the local socket only.
"""

from __future__ import annotations

import os
from pathlib import Path

PID_DIR = Path("/run/libvirt/qemu")
PROC = Path("/proc")


def _boot_time(proc: Path) -> float | None:
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return None


def started_at(name: str, uuid: str, pid_dir: Path = PID_DIR, proc: Path = PROC) -> float | None:
    """Epoch seconds at which the qemu process of VM `name` started, or None when it cannot be told (no pid
    file, no such process, or a process that is not this VM's qemu: a stale pid file)."""
    try:
        pid = int((pid_dir / f"{name}.pid").read_text().strip())
        cmdline = (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if uuid.lower() not in cmdline.lower():
            return None
        stat = (proc / str(pid) / "stat").read_text()
        # Field 22 (starttime, clock ticks after boot) counts from after the command name, which may hold spaces.
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = _boot_time(proc)
    except (OSError, ValueError, IndexError):
        return None
    if boot is None:
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")
