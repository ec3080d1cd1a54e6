"""Pytest fixtures for the hypervisor lab (lab/labctl.py): real libvirtd, SASL libvirtd, sshd.

Import them into a conftest: ``from tests.lab import lab, lab_domain``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import pytest
from lxml import etree
from lxml.builder import E

from lab import labctl  # lab/ is a plain folder: the repo root is on sys.path under pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def lab() -> Iterator[dict[str, Any]]:
    """The lab's lab.json. Started once per run; stopped at the end only if this run started it."""
    was_running = "libvirtd" in labctl.running()
    try:
        info, reason = labctl.up(), ""
    except Exception as exc:  # any failure to start is reported, never a crash in a test
        info, reason = {}, f"hypervisor lab did not start: {exc}"
        if not was_running:
            with contextlib.suppress(Exception):
                labctl.down()
    if reason:
        if IN_CI:  # CI never skips silently
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    yield info
    if not was_running:
        labctl.down()


@pytest.fixture(scope="session")
def lab2(lab: dict[str, Any]) -> dict[str, Any]:
    """Lab host 2 (lab/host2.py): a second libvirtd in its own network namespace, brought up by
    `labctl.up()` with the lab. Fails under CI=true when it is not up; skips otherwise."""
    info = lab.get("host2") or {"error": "this lab.json predates host 2"}
    reason = info.get("skipped") or info.get("error") or ""
    if not reason:
        try:
            libvirt.open(info["uri"]).close()
        except libvirt.libvirtError as exc:
            reason = f"does not answer on {info['uri']}: {exc}"
    if reason:
        if IN_CI:
            pytest.fail(f"lab host 2: {reason}", pytrace=False)
        pytest.skip(f"lab host 2: {reason}")
    return info


def domain_xml(name: str, domain_type: str, memory_mib: int = 64, graphics: bool = True) -> str:
    """A small diskless VM: boots to SeaBIOS, VNC on the daemon's vnc_listen, a serial console."""
    # No listen attribute: each host applies its own vnc_listen (127.0.0.1 by default).
    vnc = [E.graphics(type="vnc", autoport="yes")] if graphics else []
    dom = E.domain(
        E.name(name),
        E.memory(str(memory_mib), unit="MiB"),
        E.vcpu("1"),
        E.os(E.type("hvm", arch="x86_64")),
        E.on_poweroff("destroy"),
        E.on_reboot("restart"),
        E.on_crash("destroy"),
        E.devices(
            *vnc,
            E.serial(E.target(port="0"), type="pty"),
            E.console(E.target(type="serial", port="0"), type="pty"),
            E.memballoon(model="none"),
        ),
        type=domain_type,
    )
    return etree.tostring(dom, encoding="unicode")


@pytest.fixture
def lab_domain(lab: dict[str, Any]) -> Iterator[Callable[..., libvirt.virDomain]]:
    """Factory: ``dom = lab_domain()`` defines and starts a test- VM on the main daemon."""
    conn = libvirt.open(lab["unix_uri"])
    made: list[libvirt.virDomain] = []

    def make(name: str | None = None, memory_mib: int = 64) -> libvirt.virDomain:
        name = name or f"test-{uuid.uuid4().hex[:8]}"
        if not name.startswith("test-"):
            raise ValueError("lab domains are named test-*: labctl down removes them")
        dom = conn.defineXML(domain_xml(name, lab["domain_type"], memory_mib))
        made.append(dom)
        dom.create()
        return dom

    yield make
    for dom in made:
        remove_domain(dom)
    conn.close()


def remove_domain(dom: libvirt.virDomain) -> bool:
    """Force a lab VM off and undefine it with its saved state; False if it was already gone."""
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                          | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                          | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    except libvirt.libvirtError:
        return False
    return True
