#!/usr/bin/env python3
"""Second lab host: an independent libvirtd in its own network + mount namespace (stdlib only).

    python3 lab/labctl.py up-host2 | down-host2 | status     (as root; `labctl up` brings it up too)

A veth pair joins the namespace to the machine: 10.213.0.1 (this side, "host 1") and 10.213.0.2
(inside, "host 2"); both addresses exist only on the pair. Inside, virtlogd and libvirtd run in a
private mount + UTS namespace with their own /etc/libvirt, /var/lib/libvirt, /run/libvirt,
/var/log/libvirt, /var/cache/libvirt, /etc/hosts and host name, and a host_uuid of their own (live
migration refuses equal host uuids). libvirtd listens on qemu+tcp://10.213.0.2:16509 (auth none)
and its qemu.conf puts migration and VNC on 10.213.0.2. Host 1 (the main daemon) listens on
loopback only, so host 2 cannot open a connection to it (no peer-to-peer migration towards host 1);
migrations towards host 1 send their data to 10.213.0.1 (`tcp://10.213.0.1` as migration URI and
listen address), and host 2's /etc/hosts names host 1's host name 10.213.0.1 for libvirt's default.
An iptables rule drops anything for 10.213.0.1 that does not come over the pair.
State: <lab state dir>/host2. See lab/README.md and /work/shared/notes/hypervisor-lab.md.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:  # imported as lab.host2 (tests, bench) or from lab/labctl.py run as a script
    from lab import labctl
except ImportError:  # pragma: no cover
    import labctl

NETNS = "webkvm-lab-h2"
VETH_OUTER, VETH_INNER = "wkvm-h2-o", "wkvm-h2-i"  # interface names have at most 15 characters
OUTER_ADDR, INNER_ADDR, PREFIX_LEN = "10.213.0.1", "10.213.0.2", 30
PORT = 16509
HOSTNAME = "webkvm-lab-host2"
URI = f"qemu+tcp://{INNER_ADDR}:{PORT}/system"
SKIP_ENV = "WEBKVM_LAB_SKIP_HOST2"
PRIVATE_DIRS = ("/etc/libvirt", "/var/lib/libvirt", "/run/libvirt", "/var/log/libvirt", "/var/cache/libvirt")
# Name -> (pidfile, process name), relative to the host2 state dir.
PROCS = {"virtlogd": ("virtlogd.pid", "virtlogd"), "libvirtd": ("libvirtd.pid", "libvirtd")}
FIREWALL = ["INPUT", "-d", f"{OUTER_ADDR}/32", "!", "-i", VETH_OUTER, "-j", "DROP"]


def state_dir(lab_state: labctl.StateDir = None) -> Path:
    return labctl.state_path(lab_state) / "host2"


def skipped() -> str:
    """Why host 2 is not wanted in this run ("" when it is). CI never skips it."""
    if os.environ.get(SKIP_ENV, "") not in ("1", "true", "yes"):
        return ""
    if os.environ.get("CI", "").lower() == "true":
        print(f"labctl: {SKIP_ENV} is ignored under CI=true", file=sys.stderr)
        return ""
    return f"{SKIP_ENV} is set"


# ---------------------------------------------------------------- processes

def _pid(h2: Path, name: str) -> int | None:
    rel, comm = PROCS[name]
    try:
        pid = int((h2 / rel).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if labctl._proc_state(pid, comm) else None


def _kill(pid: int, comm: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
        if not labctl._gone(pid, comm, 10):
            os.kill(pid, signal.SIGKILL)
            labctl._gone(pid, comm, 5)


def _stop(h2: Path, name: str) -> None:
    pid = _pid(h2, name)
    if pid:
        _kill(pid, PROCS[name][1])
    (h2 / PROCS[name][0]).unlink(missing_ok=True)


def _answers(timeout: float = 10) -> bool:
    try:
        return labctl._virsh(URI, "version", timeout=timeout, check=False).returncode == 0
    except labctl.LabError:
        return False


# ---------------------------------------------------------------- network

def _netns_exists() -> bool:
    return NETNS in labctl._run("ip", "netns", "list", check=False).stdout.split()


def _link_exists(name: str, netns: bool = False) -> bool:
    cmd = ["ip", "netns", "exec", NETNS, "ip", "link", "show", name] if netns else ["ip", "link", "show", name]
    return labctl._run(*cmd, check=False).returncode == 0


def _network() -> None:
    """Namespace, veth pair and addresses; each step only if missing, so repeating is harmless."""
    if not _netns_exists():
        labctl._run("ip", "netns", "add", NETNS)
    if not _link_exists(VETH_INNER, netns=True):
        if _link_exists(VETH_OUTER):
            labctl._run("ip", "link", "del", VETH_OUTER)  # half of an old pair
        labctl._run("ip", "link", "add", VETH_OUTER, "type", "veth", "peer", "name", VETH_INNER)
        labctl._run("ip", "link", "set", VETH_INNER, "netns", NETNS)
    labctl._run("ip", "addr", "replace", f"{OUTER_ADDR}/{PREFIX_LEN}", "dev", VETH_OUTER)
    labctl._run("ip", "link", "set", VETH_OUTER, "up")
    inside = ["ip", "netns", "exec", NETNS, "ip"]
    labctl._run(*inside, "addr", "replace", f"{INNER_ADDR}/{PREFIX_LEN}", "dev", VETH_INNER)
    labctl._run(*inside, "link", "set", VETH_INNER, "up")
    labctl._run(*inside, "link", "set", "lo", "up")
    # 10.213.0.1 is an address of this machine: never answer on it from any other interface.
    if shutil.which("iptables") and labctl._run("iptables", "-w", "-C", *FIREWALL, check=False).returncode:
        labctl._run("iptables", "-w", "-I", *FIREWALL)


def _remove_network() -> None:
    if shutil.which("iptables"):
        while labctl._run("iptables", "-w", "-D", *FIREWALL, check=False).returncode == 0:
            pass
    if _link_exists(VETH_OUTER):
        labctl._run("ip", "link", "del", VETH_OUTER, check=False)  # takes its peer with it
    if _netns_exists():
        labctl._run("ip", "netns", "del", NETNS, check=False)


# ---------------------------------------------------------------- configuration

def _configure(h2: Path) -> dict[str, Path]:
    root = h2 / "root"
    dirs = {target: root / target.strip("/").replace("/", "-") for target in PRIVATE_DIRS}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for sub in ("qemu", "images", "dnsmasq"):
        (dirs["/var/lib/libvirt"] / sub).mkdir(exist_ok=True)
    (dirs["/var/log/libvirt"] / "qemu").mkdir(exist_ok=True)
    host_uuid = labctl._host_uuid(h2 / "host_uuid")
    (h2 / "libvirtd.conf").write_text(
        "# libvirtd of lab host 2 (written by lab/host2.py); runs in its own network + mount namespace.\n"
        f'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "{INNER_ADDR}"\ntcp_port = "{PORT}"\n'
        'auth_tcp = "none"\nauth_unix_ro = "none"\nauth_unix_rw = "none"\n'
        "# Migration refuses a target whose host uuid equals the source's.\n"
        f'host_uuid = "{host_uuid}"\n'
        f'log_outputs = "3:file:{h2}/libvirtd.log"\n')
    (h2 / "virtlogd.conf").write_text(f'log_outputs = "3:file:{h2}/virtlogd.log"\n')
    # Seen as /etc/libvirt/qemu.conf inside: incoming migrations and VNC on the namespace's address.
    (dirs["/etc/libvirt"] / "qemu.conf").write_text(
        "# qemu.conf of lab host 2 (written by lab/host2.py)\n"
        f'migration_host = "{INNER_ADDR}"\nmigration_address = "{INNER_ADDR}"\n'
        f'vnc_listen = "{INNER_ADDR}"\nspice_listen = "{INNER_ADDR}"\n')
    hosts = root / "hosts"
    # Host 1 advertises its host name for incoming migrations: inside, that name means 10.213.0.1.
    hosts.write_text(f"127.0.0.1 localhost\n{INNER_ADDR} {HOSTNAME}\n{OUTER_ADDR} {socket.gethostname()}\n")
    return {**{target: src for target, src in dirs.items()}, "/etc/hosts": hosts}


def _start_daemons(h2: Path, binds: dict[str, Path]) -> None:
    """virtlogd and libvirtd in one private mount + UTS namespace inside the network namespace."""
    cpu = str(max(os.sched_getaffinity(0)))  # pinned, like the other lab daemons (stable capability cache)
    steps = [f"mount --bind {shlex.quote(str(src))} {target}" for target, src in binds.items()]
    steps += [
        f"hostname {HOSTNAME}",
        shlex.join(["virtlogd", "-d", "-f", str(h2 / "virtlogd.conf"), "-p", str(h2 / "virtlogd.pid")]),
        shlex.join(["exec", "taskset", "-c", cpu, "libvirtd", "-d", "-l", "-f", str(h2 / "libvirtd.conf"),
                    "-p", str(h2 / "libvirtd.pid")]),
    ]
    out = h2 / "daemons.out"
    with out.open("ab") as f:  # a file, never a pipe: the daemons inherit it
        rc = subprocess.run(["ip", "netns", "exec", NETNS, "unshare", "-m", "-u", "--propagation", "private",
                             "sh", "-ec", " && ".join(steps)],
                            stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=60).returncode
    if rc:
        raise labctl.LabError(f"host 2 daemons failed to start (exit {rc}):\n{labctl._tail(out, h2 / 'libvirtd.log')}")


# ---------------------------------------------------------------- public API

def info(lab_state: labctl.StateDir = None) -> dict[str, Any]:
    h2 = state_dir(lab_state)
    return {
        "uri": URI, "address": INNER_ADDR, "hostname": HOSTNAME, "netns": NETNS,
        "host1_address": OUTER_ADDR,  # host 1 as host 2 reaches it: migration URI tcp://10.213.0.1
        "host_uuid": (h2 / "host_uuid").read_text().strip() if (h2 / "host_uuid").exists() else "",
        "pids": {name: _pid(h2, name) for name in PROCS}, "state_dir": str(h2),
    }


def up(lab_state: labctl.StateDir = None) -> dict[str, Any]:
    """Bring host 2 up (idempotent; needs the main lab daemon). Returns info() plus "started_now"."""
    if os.geteuid() != 0:
        raise labctl.LabError("lab host 2 needs root")
    h2 = state_dir(lab_state)
    h2.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    _network()
    binds = _configure(h2)
    if not (_pid(h2, "libvirtd") and _pid(h2, "virtlogd") and _answers()):
        # Both or neither: they share one mount namespace, made when they start.
        for name in ("libvirtd", "virtlogd"):
            _stop(h2, name)
        _start_daemons(h2, binds)
        started += ["host2_virtlogd", "host2_libvirtd"]
    began = time.monotonic()
    deadline = began + labctl.START_TIMEOUT  # a cold start probes qemu (~8 s)
    while not _answers(timeout=max(1.0, deadline - time.monotonic())):
        if _pid(h2, "libvirtd") is None and time.monotonic() - began > 3:  # the pidfile comes a moment late
            raise labctl.LabError(f"host 2 libvirtd died during start-up:\n{labctl._tail(h2 / 'libvirtd.log')}")
        if time.monotonic() > deadline:
            raise labctl.LabError(f"host 2 libvirtd did not answer on {URI}:\n{labctl._tail(h2 / 'libvirtd.log')}")
        time.sleep(0.2)
    return {**info(lab_state), "started_now": started}


def _qemu_pids(h2: Path) -> list[int]:
    pids = []
    for pidfile in (h2 / "root" / "run-libvirt" / "qemu").glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().split()[0])
            if labctl._proc_state(pid, "qemu-system-x86"):
                pids.append(pid)
    return pids


def down(lab_state: labctl.StateDir = None) -> None:
    """Remove host 2 completely: its VMs, processes, namespace, veth pair, firewall rule and files."""
    h2 = state_dir(lab_state)
    if _pid(h2, "libvirtd"):
        os.kill(_pid(h2, "libvirtd") or 0, signal.SIGCONT)
        # Everything on host 2 belongs to the lab: destroy every VM so no qemu outlives its daemon.
        with contextlib.suppress(labctl.LabError):
            for name in labctl._names(URI, "dom"):
                labctl._virsh(URI, "destroy", name, check=False)
    for name in ("libvirtd", "virtlogd"):
        _stop(h2, name)
    if h2.exists():
        for pid in _qemu_pids(h2):  # a daemon that hung: kill its VMs by pidfile
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _remove_network()
    # The bind mounts lived only in the daemons' mount namespace, gone with its last process.
    shutil.rmtree(h2, ignore_errors=True)


def status(lab_state: labctl.StateDir = None) -> dict[str, dict[str, Any]]:
    h2 = state_dir(lab_state)
    answers = _answers(timeout=5)
    out = {}
    for name in PROCS:
        pid = _pid(h2, name)
        out[f"host2_{name}"] = {"pid": pid, "frozen": False, "answers": bool(pid) and answers}
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["up"], ["down"], ["status"]):
        print("usage: host2.py up|down|status", file=sys.stderr)
        return 2
    try:
        if args == ["up"]:
            print(up())
        elif args == ["down"]:
            down()
        else:
            print(status())
    except labctl.LabError as exc:
        print(f"host2 {args[0]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
