"""The hypervisor lab itself: every transport answers, VMs run, faults can be injected.

Fixtures `lab` and `lab_domain` come from tests/lab.py (imported by the conftest)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest

from lab import labctl

pytestmark = pytest.mark.lab

CREDS = [libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE]


def sasl_open(uri: str, username: str, password: str) -> libvirt.virConnect:
    def answer(creds: list[list[Any]], _data: object) -> int:
        for cred in creds:
            cred[4] = username if cred[0] == libvirt.VIR_CRED_AUTHNAME else password
        return 0

    return libvirt.openAuth(uri, [CREDS, answer, None], 0)


def open_kind(info: dict[str, Any], kind: str) -> libvirt.virConnect:
    if kind == "sasl":
        return sasl_open(info["sasl"]["uri"], info["sasl"]["username"], info["sasl"]["password"])
    return libvirt.open({"unix": info["unix_uri"], "tcp": info["tcp_uri"], "ssh": info["ssh"]["uri"]}[kind])


@pytest.mark.parametrize("kind", ["unix", "tcp", "sasl", "ssh"])
def test_every_transport_answers(lab: dict[str, Any], kind: str) -> None:
    conn = open_kind(lab, kind)
    try:
        assert conn.getLibVersion() >= 9_000_000
        assert isinstance(conn.listAllDomains(), list)
    finally:
        conn.close()


def test_sasl_refuses_a_wrong_password(lab: dict[str, Any]) -> None:
    with pytest.raises(libvirt.libvirtError, match="authentication failed"):
        sasl_open(lab["sasl"]["uri"], lab["sasl"]["username"], "wrong-" + lab["sasl"]["password"])


def test_sasl_daemon_is_a_separate_host(lab: dict[str, Any], lab_domain: Callable[..., Any]) -> None:
    dom = lab_domain()
    conn = open_kind(lab, "sasl")
    try:
        assert dom.name() not in [d.name() for d in conn.listAllDomains()]
        assert conn.getHostname()  # answers, from its own private state
    finally:
        conn.close()


def test_ssh_host_key_is_pinned(lab: dict[str, Any]) -> None:
    known = Path(lab["ssh"]["known_hosts"]).read_text().splitlines()
    assert known == lab["ssh"]["host_keys"] and known
    text = Path(lab["ssh"]["command"]).read_text()
    assert "StrictHostKeyChecking=yes" in text and "BatchMode=yes" in text


def test_a_lab_domain_really_runs(lab: dict[str, Any], lab_domain: Callable[..., Any]) -> None:
    dom = lab_domain()
    assert dom.isActive()
    assert dom.name().startswith("test-")
    xml = dom.XMLDesc(0)
    assert f"type='{lab['domain_type']}'" in xml.splitlines()[0]
    assert "<graphics type='vnc' port='59" in xml  # autoport gave it a real port


def test_authorize_key_lets_a_new_key_in(lab: dict[str, Any], tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    labctl.authorize_key(Path(f"{key}.pub").read_text())
    uri = lab["ssh"]["uri"].replace(lab["ssh"]["keyfile"], str(key))
    conn = libvirt.open(uri)
    try:
        assert conn.getLibVersion() > 0
    finally:
        conn.close()


def test_freeze_and_thaw(lab: dict[str, Any]) -> None:
    conn = libvirt.open(lab["tcp_uri"])
    answers: list[int] = []
    labctl.freeze()
    try:
        call = threading.Thread(target=lambda: answers.append(conn.getLibVersion()), daemon=True)
        call.start()
        call.join(1.0)  # the deadline a caller would use
        assert call.is_alive() and not answers, "a frozen daemon answered"
    finally:
        labctl.thaw()
    call.join(10)
    assert answers and answers[0] > 0
    conn.close()


def test_running_vms_survive_a_daemon_restart(lab: dict[str, Any], lab_domain: Callable[..., Any]) -> None:
    dom_id = lab_domain().ID()
    old = labctl.running()
    assert "libvirtd" in old
    labctl.restart_main_daemon()
    conn = libvirt.open(lab["tcp_uri"])
    try:
        assert conn.lookupByID(dom_id).isActive()
    finally:
        conn.close()


def test_up_twice_is_harmless_and_fast(lab: dict[str, Any]) -> None:
    first = labctl.up()
    start = time.monotonic()
    second = labctl.up()
    assert time.monotonic() - start < 5
    assert second["started_now"] == []
    assert second["pids"] == first["pids"]
    assert all(s["answers"] for s in labctl.status().values())
