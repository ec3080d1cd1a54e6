#!/usr/bin/env python3
"""Hypervisor lab: real libvirt daemons and an sshd on loopback, for integration tests.

    python3 lab/labctl.py up|down|status|freeze|thaw      (as root; stdlib only)
    python3 lab/labctl.py up-host2|down-host2             (lab host 2 alone, lab/host2.py)

Runs virtlogd + the main libvirtd (qemu:///system, qemu+tcp://127.0.0.1:16509 without auth,
qemu+tls://127.0.0.1:16514 with client certificates of a private lab CA made with openssl),
a second libvirtd with SASL on 127.0.0.1:16510 in a private mount namespace, and sshd on
127.0.0.1:2222 for qemu+ssh. State lives in <repo>/var/lab (or $WEBKVM_LAB_DIR); the
result is described in <state>/lab.json. libvirt is driven through virsh, so the system
python3 is enough. See lab/README.md and /work/shared/notes/hypervisor-lab.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import grp
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "lab"
HOST = "127.0.0.1"
MAIN_PORT, SASL_PORT, SSH_PORT, TLS_PORT = 16509, 16510, 2222, 16514
UNIX_URI = "qemu:///system"
TCP_URI = f"qemu+tcp://{HOST}:{MAIN_PORT}/system"
# The main libvirtd accepts TLS clients with a certificate of the lab CA and exactly this DN
# (as GnuTLS prints it: RDNs in certificate order; see virt-pki-query-dn).
TLS_CLIENT_SUBJECT = "/O=webkvm lab/CN=webkvm-lab-client"
TLS_CLIENT_DN = "O=webkvm lab,CN=webkvm-lab-client"
CERT_DAYS = 3650
SASL_URI = f"qemu+tcp://{HOST}:{SASL_PORT}/system"
SASL_USER = "webkvm"
START_TIMEOUT = 60.0  # cold start probes qemu capabilities: 5-15 s
PREFIXES = ("lab-", "test-")  # libvirt objects that down() removes
VIRTLOGD_SOCK = "/run/libvirt/virtlogd-sock"
# The SASL daemon gets its own copy of these (bind mounts in its namespace).
PRIVATE_DIRS = ("/etc/libvirt", "/var/lib/libvirt", "/run/libvirt",
                "/var/log/libvirt", "/var/cache/libvirt", "/etc/sasl2")
# Daemon name -> (pidfile, log file) relative to the state dir, and its process name in /proc.
# Start-up output of each goes to logs/<name>.out.
DAEMONS = {
    "virtlogd": ("virtlogd.pid", "virtlogd.log", "virtlogd"),
    "libvirtd": ("libvirtd.pid", "libvirtd.log", "libvirtd"),
    "libvirtd_sasl": ("sasl/libvirtd.pid", "sasl/libvirtd.log", "libvirtd"),
    "sshd": ("ssh/sshd.pid", "ssh/sshd.log", "sshd"),
}
# Stop order: clients of libvirtd first, virtlogd last.
STOP_ORDER = ("sshd", "libvirtd_sasl", "libvirtd", "virtlogd")

StateDir = str | Path | None


class LabError(RuntimeError):
    """The lab could not be brought up (the message says why)."""


def state_path(state_dir: StateDir = None) -> Path:
    if state_dir is None:
        state_dir = os.environ.get("WEBKVM_LAB_DIR") or REPO / "var" / "lab"
    return Path(state_dir).resolve()


# ---------------------------------------------------------------- processes

def _proc_state(pid: int, comm: str) -> str | None:
    """One-letter state of a live process named comm, else None.

    PID 1 here never reaps orphans, so a dead daemon lingers as a zombie: that counts as dead.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
    return None if state in "ZXx" or name != comm else state


def _pid(st: Path, daemon: str) -> int | None:
    rel, _, comm = DAEMONS[daemon]
    try:
        pid = int((st / rel).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _proc_state(pid, comm) else None


def _gone(pid: int, comm: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while _proc_state(pid, comm):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def _stop(st: Path, daemon: str) -> None:
    rel, _, comm = DAEMONS[daemon]
    pid = _pid(st, daemon)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a frozen daemon cannot act on SIGTERM
            os.kill(pid, signal.SIGTERM)
            if not _gone(pid, comm, 10):
                os.kill(pid, signal.SIGKILL)
                _gone(pid, comm, 5)
    (st / rel).unlink(missing_ok=True)


def _run(*cmd: str | Path, timeout: float = 30, check: bool = True, input: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = [str(c) for c in cmd]
    try:
        res = subprocess.run(args, input=input if input is not None else "", capture_output=True,
                             text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {shlex.join(args)}") from exc
    if check and res.returncode:
        raise LabError(f"{shlex.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _tail(*files: Path, lines: int = 15) -> str:
    out = []
    for f in files:
        with contextlib.suppress(OSError):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            if text:
                out.append(f"--- {f} ---\n" + "\n".join(text))
    return "\n".join(out) or "(no log output)"


def _logs(st: Path, daemon: str) -> tuple[Path, Path]:
    return st / DAEMONS[daemon][1], st / "logs" / f"{daemon}.out"


def _launch(st: Path, daemon: str, cmd: list[str]) -> None:
    """Run a command that daemonizes itself. Its stdio go to a file, never a pipe:
    a pipe inherited by the daemon would keep subprocess waiting forever."""
    log, out = _logs(st, daemon)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("ab") as f:
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=60).returncode
    if rc:
        raise LabError(f"{daemon} failed to start (exit {rc}):\n{_tail(out, log, lines=5)}")


def _answering(st: Path, daemon: str, timeout: float = 5) -> bool:
    """A real request, never a process-name check."""
    if daemon == "virtlogd":
        return _socket_answers(VIRTLOGD_SOCK)
    if daemon == "libvirtd":
        return all(_answers(uri, timeout=timeout) for uri in (TCP_URI, UNIX_URI, _tls_uri(st)))
    if daemon == "libvirtd_sasl":
        return _answers(SASL_URI, _sasl_env(st), timeout=timeout)
    return _sshd_host_keys(st) is not None


def _wait(st: Path, daemon: str, deadline: float) -> None:
    """Poll until the daemon answers; bounded by deadline. A cold libvirtd probes qemu
    (~8 s) on its first request, so one request may take that long."""
    started = time.monotonic()
    while not _answering(st, daemon, timeout=max(1.0, deadline - time.monotonic())):
        # The pidfile may appear a moment after the launcher returns.
        if time.monotonic() - started > 3 and _pid(st, daemon) is None:
            raise LabError(f"{daemon} died during start-up:\n{_tail(*_logs(st, daemon))}")
        if time.monotonic() > deadline:
            raise LabError(f"{daemon} did not answer within {START_TIMEOUT:.0f}s:\n"
                           f"{_tail(*_logs(st, daemon))}")
        time.sleep(0.2)


@contextlib.contextmanager
def _locked(st: Path) -> Iterator[None]:
    """Serialise up/down/restart between processes (e.g. parallel test workers)."""
    st.mkdir(parents=True, exist_ok=True)
    with (st / ".lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- libvirt via virsh

def _sasl_env(st: Path) -> dict[str, str]:
    return {**os.environ, "LIBVIRT_AUTH_FILE": str(st / "sasl" / "auth.conf")}


def _virsh(uri: str, *args: str, env: dict[str, str] | None = None, timeout: float = 15,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("virsh", "-q", "-c", uri, *args, env=env, timeout=timeout, check=check)


def _answers(uri: str, env: dict[str, str] | None = None, timeout: float = 20) -> bool:
    try:
        return _virsh(uri, "version", env=env, timeout=timeout, check=False).returncode == 0
    except LabError:  # timed out
        return False


def _names(uri: str, kind: str, *flags: str, env: dict[str, str] | None = None) -> list[str]:
    res = _virsh(uri, f"{kind}-list" if kind != "dom" else "list", *flags, "--name",
                 env=env, check=False)
    return [n for n in res.stdout.split() if n] if res.returncode == 0 else []


def _clean_libvirt(uri: str, env: dict[str, str] | None = None) -> None:
    """Remove what tests left: lab-/test- domains, networks and pools, and all transient domains."""
    lab = [n for n in _names(uri, "dom", "--all", env=env) if n.startswith(PREFIXES)]
    for name in dict.fromkeys(_names(uri, "dom", "--transient", env=env) + lab):
        _virsh(uri, "destroy", name, env=env, check=False)
    for name in lab:
        _virsh(uri, "undefine", name, "--managed-save", "--snapshots-metadata",
               "--checkpoints-metadata", "--nvram", env=env, check=False)
    for kind in ("net", "pool"):
        for name in _names(uri, kind, "--all", env=env):
            if name.startswith(PREFIXES):
                _virsh(uri, f"{kind}-destroy", name, env=env, check=False)
                _virsh(uri, f"{kind}-undefine", name, env=env, check=False)


# ---------------------------------------------------------------- host preparation

def _render(template: str, dest: Path, **values: str) -> None:
    text = string.Template((TEMPLATES / template).read_text()).substitute(values)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)


def _write_secret(path: Path, text: str) -> None:
    """Mode 0600 from the start; replaced atomically so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _host_uuid(path: Path) -> str:
    """A stable host uuid per daemon: two daemons must differ (migration compares them)."""
    if not path.exists():
        path.write_text(str(uuid.uuid4()))
    return path.read_text().strip()


def _prepare_host() -> None:
    """Directories, users and groups the Debian packages would make under systemd."""
    for d in ("/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/var/lib/libvirt/images",
              "/var/lib/libvirt/dnsmasq", "/var/cache/libvirt", "/run/libvirt", "/etc/sasl2",
              "/run/sshd"):
        os.makedirs(d, exist_ok=True)
    for group in ("kvm", "libvirt", "libvirt-qemu"):
        try:
            grp.getgrnam(group)
        except KeyError:
            _run("groupadd", "-r", group)
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        # libvirtd insists on its compiled-in default user, even if qemu.conf names another.
        _run("useradd", "-r", "-M", "-g", "libvirt-qemu", "-G", "kvm", "-d", "/var/lib/libvirt",
             "-s", "/usr/sbin/nologin", "libvirt-qemu")
    if "libvirt-qemu" not in grp.getgrnam("kvm").gr_mem:
        _run("usermod", "-aG", "kvm", "libvirt-qemu")
    if os.path.exists("/dev/kvm"):
        # qemu runs as libvirt-qemu; no udev here to apply the usual rule.
        os.chown("/dev/kvm", -1, grp.getgrnam("kvm").gr_gid)
        os.chmod("/dev/kvm", 0o660)


def _kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, 0xAE00) == 12  # KVM_GET_API_VERSION
    except OSError:
        return False
    finally:
        os.close(fd)


def _socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s, contextlib.suppress(OSError):
        s.settimeout(2)
        s.connect(path)
        return True
    return False


# ---------------------------------------------------------------- components

def _start_virtlogd(st: Path) -> None:
    _render("virtlogd.conf", st / "virtlogd.conf", STATE=str(st))
    _launch(st, "virtlogd", ["virtlogd", "-d", "-f", str(st / "virtlogd.conf"), "-p", str(st / "virtlogd.pid")])


def _pki_files(pki: Path) -> dict[str, Path]:
    return {"ca_cert": pki / "ca" / "cacert.pem", "ca_key": pki / "ca" / "cakey.pem",
            "server_cert": pki / "server" / "servercert.pem", "server_key": pki / "server" / "serverkey.pem",
            # Exactly what libvirt's pkipath= URI option reads.
            "client_dir": pki / "client", "client_ca": pki / "client" / "cacert.pem",
            "client_cert": pki / "client" / "clientcert.pem", "client_key": pki / "client" / "clientkey.pem"}


def _issue(pki: Path, cert: Path, key: Path, subject: str, ext: str, ca: tuple[Path, Path] | None) -> None:
    """A new EC P-256 key and certificate (self-signed if ca is None). Written under temporary
    names and renamed, key first: a cert file never exists without its key."""
    for d in (cert.parent, key.parent):
        d.mkdir(parents=True, exist_ok=True)
    tmp_cert, tmp_key = cert.with_name(f".{cert.name}.tmp"), key.with_name(f".{key.name}.tmp")
    tmp_key.unlink(missing_ok=True)
    os.close(os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # never readable by others
    signer = ["-CA", str(ca[0]), "-CAkey", str(ca[1])] if ca else []
    _run("openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", tmp_key, "-out", tmp_cert, "-subj", subject, "-days", str(CERT_DAYS), "-sha256",
         "-config", pki / "openssl.cnf", "-extensions", ext, *signer)
    tmp_key.chmod(0o600)
    tmp_cert.chmod(0o644)
    os.replace(tmp_key, key)
    os.replace(tmp_cert, cert)


def make_pki(pki: str | Path, host: str = HOST) -> list[str]:
    """A private CA and the certificates it signs under pki/: ca/{cacert,cakey}.pem,
    server/{servercert,serverkey}.pem (IP SAN host) and client/{cacert,clientcert,clientkey}.pem
    (a pkipath= directory). Makes only what is missing; a new CA re-issues both certificates.
    Returns what it made. Also used by tests to make a foreign CA."""
    pki = Path(pki)
    f = _pki_files(pki)
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "ca").mkdir(exist_ok=True)
    (pki / "ca").chmod(0o700)  # the CA key signs anything
    _render("pki.cnf", pki / "openssl.cnf", PKI=str(pki), HOST=host)
    made = []
    ca = (f["ca_cert"], f["ca_key"])
    if not all(p.is_file() for p in ca):
        _issue(pki, *ca, "/O=webkvm lab/CN=webkvm lab CA", "ca_ext", None)
        made.append("ca")
    for name, subject, ext in (("server", f"/O=webkvm lab/CN={host}", "server_ext"),
                               ("client", TLS_CLIENT_SUBJECT, "client_ext")):
        pair = (f[f"{name}_cert"], f[f"{name}_key"])
        if "ca" in made or not all(p.is_file() for p in pair):
            _issue(pki, *pair, subject, ext, ca)
            made.append(name)
    ca_pem = f["ca_cert"].read_bytes()
    if not f["client_ca"].is_file() or f["client_ca"].read_bytes() != ca_pem:
        f["client_ca"].write_bytes(ca_pem)
        f["client_ca"].chmod(0o644)
    return made


def _tls_uri(st: Path) -> str:
    return f"qemu+tls://{HOST}:{TLS_PORT}/system?pkipath={quote(str(_pki_files(st / 'pki')['client_dir']))}"


def _main_conf(st: Path) -> Path:
    """Render the main libvirtd's config; returns its path."""
    _render("libvirtd.conf", st / "libvirtd.conf", STATE=str(st), PKI=str(st / "pki"),
            TLS_PORT=str(TLS_PORT), CLIENT_DN=TLS_CLIENT_DN, HOST_UUID=_host_uuid(st / "host_uuid"))
    return st / "libvirtd.conf"


def _start_main(st: Path) -> None:
    make_pki(st / "pki")
    _main_conf(st)
    # Pinned to CPU 0: on these nested-KVM machines the qemu capability cache goes stale
    # when the probe runs on another CPU, adding ~8 s to every start.
    _launch(st, "libvirtd", ["taskset", "-c", "0", "libvirtd", "-d", "-l", "-f", str(st / "libvirtd.conf"),
                             "-p", str(st / "libvirtd.pid")])


def _sasl_password(st: Path) -> str:
    path = st / "sasl" / "password"
    if not path.exists():
        _write_secret(path, secrets.token_urlsafe(18))
    return path.read_text().strip()


def _start_sasl(st: Path) -> None:
    sd, root = st / "sasl", st / "sasl" / "root"
    binds = []
    for target in PRIVATE_DIRS:
        src = root / target.strip("/").replace("/", "-")
        src.mkdir(parents=True, exist_ok=True)
        binds.append(f"mount --bind {shlex.quote(str(src))} {target}")
    for sub in ("qemu", "images", "dnsmasq"):
        (root / "var-lib-libvirt" / sub).mkdir(exist_ok=True)
    (root / "var-log-libvirt" / "qemu").mkdir(exist_ok=True)
    password = _sasl_password(st)
    # Fresh sasldb each start: its realm is the host name, which could have changed.
    (sd / "passwd.db").unlink(missing_ok=True)
    _run("saslpasswd2", "-f", sd / "passwd.db", "-a", "libvirt", "-c", "-p", SASL_USER,
         input=password)
    (sd / "passwd.db").chmod(0o600)
    _render("sasl2-libvirt.conf", root / "etc-sasl2" / "libvirt.conf", STATE=str(st))
    _render("libvirtd-sasl.conf", sd / "libvirtd.conf", STATE=str(st),
            HOST_UUID=_host_uuid(sd / "host_uuid"))
    _write_secret(sd / "auth.conf",  # lets virsh (down, status) log in without a prompt
                  f"[credentials-lab]\nauthname={SASL_USER}\npassword={password}\n\n"
                  f"[auth-libvirt-{HOST}]\ncredentials=lab\n")
    # Its own CPU (same reason as the main daemon's pinning), so both cold probes run at once.
    daemon = shlex.join(["exec", "taskset", "-c", str(max(os.sched_getaffinity(0))), "libvirtd", "-d", "-l",
                         "-f", str(sd / "libvirtd.conf"), "-p", str(sd / "libvirtd.pid")])
    # Private mount namespace: its own domains, networks, sockets and caches.
    _launch(st, "libvirtd_sasl", ["unshare", "-m", "--propagation", "private", "sh", "-ec",
                                  " && ".join([*binds, daemon])])


def _ssh_paths(st: Path) -> dict[str, Path]:
    d = st / "ssh"
    return {"dir": d, "hostkey": d / "ssh_host_ed25519_key", "key": d / "id_ed25519",
            "authorized": d / "authorized_keys", "known": d / "known_hosts",
            "wrapper": d / "ssh-wrapper.sh", "config": d / "sshd_config"}


def _ssh_uri(st: Path) -> str:
    p = _ssh_paths(st)
    return (f"qemu+ssh://root@{HOST}:{SSH_PORT}/system?keyfile={quote(str(p['key']))}"
            f"&no_tty=1&command={quote(str(p['wrapper']))}")


def _start_sshd(st: Path) -> None:
    p = _ssh_paths(st)
    p["dir"].mkdir(parents=True, exist_ok=True)
    p["dir"].chmod(0o700)  # sshd StrictModes
    for key, comment in ((p["hostkey"], "webkvm-lab-host"), (p["key"], "webkvm-lab")):
        if not key.exists():
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key)
    authorize_key(Path(f"{p['key']}.pub").read_text(), st)
    _render("sshd_config", p["config"], STATE=str(st))
    _launch(st, "sshd", ["/usr/sbin/sshd", "-f", str(p["config"]), "-E", str(st / DAEMONS["sshd"][1])])


def _sshd_host_keys(st: Path) -> list[str] | None:
    """Host key lines of the sshd on 2222, if it is ours (same key as our host key file)."""
    p = _ssh_paths(st)
    try:
        res = _run("ssh-keyscan", "-T", "3", "-p", str(SSH_PORT), "-t", "ed25519", HOST,
                   check=False, timeout=10)
        ours = Path(f"{p['hostkey']}.pub").read_text().split()[1]
    except (LabError, OSError, IndexError):
        return None
    lines = [ln for ln in res.stdout.splitlines() if ln and not ln.startswith("#")]
    return lines if any(ln.split()[2] == ours for ln in lines) else None


def _write_ssh_client(st: Path, host_keys: list[str]) -> None:
    p = _ssh_paths(st)
    p["known"].write_text("".join(f"{ln}\n" for ln in host_keys))
    # libvirt's ssh transport takes no ssh options: its command= points here.
    p["wrapper"].write_text(
        "#!/bin/sh\n# ssh for libvirt's qemu+ssh command=: pinned host key, never prompts.\n"
        f"exec /usr/bin/ssh -o UserKnownHostsFile={shlex.quote(str(p['known']))}"
        ' -o StrictHostKeyChecking=yes -o BatchMode=yes "$@"\n')
    p["wrapper"].chmod(0o755)


# ---------------------------------------------------------------- lab host 2 (lab/host2.py)

def _host2() -> Any:
    """lab/host2.py, sharing this very module whether labctl was imported or run as a script."""
    try:
        from lab import host2
    except ImportError:  # run as a script: lab/ itself is on sys.path
        sys.modules.setdefault("labctl", sys.modules[__name__])
        import host2
    return host2


def _up_host2(st: Path) -> dict[str, Any]:
    """Host 2 beside the main daemon. WEBKVM_LAB_SKIP_HOST2=1 skips it for quick runs (never under
    CI=true); locally a failure is reported in lab.json instead of failing the whole lab."""
    host2 = _host2()
    reason = host2.skipped()
    if reason:
        return {"skipped": reason}
    try:
        return dict(host2.up(st))
    except RuntimeError as exc:
        if os.environ.get("CI", "").lower() == "true":
            raise
        print(f"labctl: lab host 2 did not start: {exc}", file=sys.stderr)
        return {"error": str(exc)}


# ---------------------------------------------------------------- public API

def running(state_dir: StateDir = None) -> set[str]:
    """Names of the lab daemons whose pidfile points at a live process."""
    st = state_path(state_dir)
    return {d for d in DAEMONS if _pid(st, d)}


def authorize_key(pubkey_line: str, state_dir: StateDir = None) -> None:
    """Let the holder of this public key log in to the lab sshd as root."""
    line = pubkey_line.strip()
    if not line or "\n" in line or len(line.split()) < 2:
        raise ValueError("expected one OpenSSH public key line")
    path = _ssh_paths(state_path(state_dir))["authorized"]
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text().splitlines() if path.exists() else []
    if line not in existing:
        with path.open("a") as f:
            f.write(line + "\n")
    path.chmod(0o600)


def up(state_dir: StateDir = None) -> dict[str, Any]:
    """Bring the lab up (idempotent) and return lab.json's content plus "started_now"."""
    if os.geteuid() != 0:
        raise LabError("the hypervisor lab needs root")
    st = state_path(state_dir)
    with _locked(st):
        return _up(st)


def _up(st: Path) -> dict[str, Any]:
    _prepare_host()
    saved = st / "ip_forward.saved"
    if not saved.exists():
        saved.write_text(Path("/proc/sys/net/ipv4/ip_forward").read_text())
    # The main libvirtd reads its config and certificates only when it starts: restart a running one
    # whose files changed (e.g. a lab started before TLS was added), so up() always converges.
    conf = st / "libvirtd.conf"
    old_conf = conf.read_text() if conf.exists() else None
    made = make_pki(st / "pki")
    if _pid(st, "libvirtd") and (made or _main_conf(st).read_text() != old_conf):
        _stop(st, "libvirtd")
    deadline = time.monotonic() + START_TIMEOUT
    started: list[str] = []
    starters: dict[str, Callable[[Path], None]] = {
        "virtlogd": _start_virtlogd, "libvirtd": _start_main, "libvirtd_sasl": _start_sasl, "sshd": _start_sshd}
    for name, start in starters.items():
        pid = _pid(st, name)
        if pid and _proc_state(pid, DAEMONS[name][2]) == "T":
            os.kill(pid, signal.SIGCONT)  # left frozen by an interrupted test
        if not pid:
            start(st)
            started.append(name)
        if name == "virtlogd":  # libvirtd does not spawn it; domains need it from the start
            _wait(st, name, deadline)
    # In parallel: each libvirtd probes qemu (~8 s cold) only when first asked.
    with ThreadPoolExecutor(3) as pool:
        for fut in [pool.submit(_wait, st, name, deadline) for name in ("libvirtd", "libvirtd_sasl", "sshd")]:
            fut.result()

    host_keys = _sshd_host_keys(st) or []
    _write_ssh_client(st, host_keys)
    ssh_uri = _ssh_uri(st)
    res = _virsh(ssh_uri, "version", check=False, timeout=30)
    if res.returncode:
        raise LabError(f"{ssh_uri} does not answer: {res.stderr.strip()}\n{_tail(*_logs(st, 'sshd'))}")
    caps = _virsh(TCP_URI, "capabilities").stdout
    p = _ssh_paths(st)
    pkipath = str(_pki_files(st / "pki")["client_dir"])
    info: dict[str, Any] = {
        "domain_type": "kvm" if _kvm_usable() and "<domain type='kvm'" in caps else "qemu",
        "unix_uri": UNIX_URI,
        "tcp_uri": TCP_URI,
        "sasl": {"uri": SASL_URI, "username": SASL_USER, "password": _sasl_password(st),
                 "auth_file": str(st / "sasl" / "auth.conf")},
        "ssh": {"host": HOST, "port": SSH_PORT, "user": "root", "keyfile": str(p["key"]),
                "known_hosts": str(p["known"]), "host_keys": host_keys,
                "command": str(p["wrapper"]), "uri": ssh_uri},
        "tls": {"uri": _tls_uri(st), "pkipath": pkipath, "port": TLS_PORT, "host": HOST,
                "ca_cert": str(st / "pki" / "ca" / "cacert.pem"), "client_dn": TLS_CLIENT_DN},
        "pids": {name: _pid(st, name) for name in DAEMONS},
        "state_dir": str(st),
        "started_by_us": True,
    }
    info["host2"] = _up_host2(st)
    started += info["host2"].pop("started_now", [])
    _write_secret(st / "lab.json", json.dumps(info, indent=2) + "\n")
    return {**info, "started_now": started}


def down(state_dir: StateDir = None) -> None:
    """Remove test objects, stop every lab process, undo host changes. Safe to repeat."""
    st = state_path(state_dir)
    if not st.exists():
        return
    with _locked(st):
        _host2().down(st)  # its own namespace, veth pair and files
        for name in ("libvirtd", "libvirtd_sasl"):
            pid = _pid(st, name)
            if pid:
                os.kill(pid, signal.SIGCONT)
        # A hung daemon times out here; its lab VMs are then killed by pidfile below.
        if _pid(st, "libvirtd"):
            with contextlib.suppress(LabError):
                _clean_libvirt(UNIX_URI)
        if _pid(st, "libvirtd_sasl"):
            with contextlib.suppress(LabError):
                _clean_libvirt(SASL_URI, _sasl_env(st))
        for name in STOP_ORDER:
            _stop(st, name)
        _kill_orphan_qemus(st)
        _clean_iptables()
        saved = st / "ip_forward.saved"
        if saved.exists():
            Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text())
            saved.unlink()
        (st / "lab.json").unlink(missing_ok=True)


def _kill_orphan_qemus(st: Path) -> None:
    """A lab VM whose daemon could not be asked to destroy it (hung daemon): kill by pidfile."""
    for rundir in (Path("/run/libvirt/qemu"), st / "sasl" / "root" / "run-libvirt" / "qemu"):
        for pidfile in rundir.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text().split()[0])
                if pidfile.stem.startswith(PREFIXES) and _proc_state(pid, "qemu-system-x86"):
                    os.kill(pid, signal.SIGKILL)


def _clean_iptables() -> None:
    """Drop the LIBVIRT_* chains (and the jumps to them) that virtual networks leave behind."""
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(tool):
            continue
        for table in ("filter", "nat", "mangle"):
            res = _run(tool, "-w", "-t", table, "-S", check=False)
            if res.returncode:
                continue
            rules = [shlex.split(ln) for ln in res.stdout.splitlines()]
            chains = [r[1] for r in rules if r[:1] == ["-N"] and r[1].startswith("LIBVIRT_")]
            for r in rules:
                if r[:1] == ["-A"] and not r[1].startswith("LIBVIRT_") and any(
                        a.startswith("LIBVIRT_") for a in r[2:]):
                    _run(tool, "-w", "-t", table, "-D", *r[1:], check=False)
            for op in ("-F", "-X"):
                for chain in chains:
                    _run(tool, "-w", "-t", table, op, chain, check=False)


def freeze(state_dir: StateDir = None) -> None:
    """SIGSTOP the main libvirtd: connections stay open, nothing answers.

    The calling process's garbage is collected first, and collection paused until thaw(): a libvirt object
    (a network, a domain) left by earlier code and freed while the daemon is stopped can drop the last
    reference to its connection, whose close then waits for the frozen daemon forever (no keepalive), in
    whatever thread the collector happened to run."""
    pid = _require(state_path(state_dir), "libvirtd")
    gc.collect()
    gc.disable()
    os.kill(pid, signal.SIGSTOP)


def thaw(state_dir: StateDir = None) -> None:
    os.kill(_require(state_path(state_dir), "libvirtd"), signal.SIGCONT)
    gc.enable()


def _require(st: Path, daemon: str) -> int:
    pid = _pid(st, daemon)
    if pid is None:
        raise LabError(f"{daemon} of the lab is not running (state dir {st})")
    return pid


def restart_main_daemon(state_dir: StateDir = None) -> int:
    """Stop and start the main libvirtd (running VMs survive); returns its new pid."""
    st = state_path(state_dir)
    with _locked(st):
        _stop(st, "libvirtd")
        _start_main(st)
        _wait(st, "libvirtd", time.monotonic() + START_TIMEOUT)
        pid = _require(st, "libvirtd")
        with contextlib.suppress(OSError, ValueError):
            info = json.loads((st / "lab.json").read_text())
            info["pids"]["libvirtd"] = pid
            _write_secret(st / "lab.json", json.dumps(info, indent=2) + "\n")
        return pid


def status(state_dir: StateDir = None) -> dict[str, dict[str, Any]]:
    """Per daemon: pid (from its pidfile), frozen (SIGSTOPped), answers (a real request)."""
    st = state_path(state_dir)
    out = {}
    for name in DAEMONS:
        pid = _pid(st, name)
        frozen = bool(pid) and _proc_state(pid or 0, DAEMONS[name][2]) == "T"
        out[name] = {"pid": pid, "frozen": frozen, "answers": bool(pid) and not frozen and _answering(st, name)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "freeze", "thaw", "up-host2", "down-host2"))
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        if args.command == "up":
            info = up()
            print(f"lab up in {time.monotonic() - t0:.1f}s (started: "
                  f"{', '.join(info['started_now']) or 'nothing, already up'}); "
                  f"domain type {info['domain_type']}; see {state_path() / 'lab.json'}")
        elif args.command == "down":
            down()
            print(f"lab down in {time.monotonic() - t0:.1f}s")
        elif args.command in ("up-host2", "down-host2"):  # host 2 alone, beside a running main lab
            st = state_path()
            with _locked(st):
                if args.command == "up-host2":
                    info = _host2().up(st)
                    print(f"lab host 2 up in {time.monotonic() - t0:.1f}s on {info['uri']} "
                          f"(started: {', '.join(info['started_now']) or 'nothing, already up'})")
                else:
                    _host2().down(st)
                    print(f"lab host 2 removed in {time.monotonic() - t0:.1f}s")
        elif args.command in ("freeze", "thaw"):  # fault injection by hand
            (freeze if args.command == "freeze" else thaw)()
        else:
            report = status()
            if not _host2().skipped():
                report.update(_host2().status())
            print(json.dumps(report, indent=2))
            return 0 if all(s["answers"] for s in report.values()) else 1
    except RuntimeError as exc:  # LabError, also as raised through lab/host2.py
        print(f"labctl {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
