"""The VM page's IP addresses: DHCP leases, then the QEMU guest agent (VMs the panel makes have its channel),
then the host's ARP table; each address once per MAC, loopback and link-local ones left out, and an agent
that hangs never holds the page."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest

from virt import domains
from virt.create import NewVM, build_domain_xml
from virt.domains import AGENT, ARP, LEASE, merge_addresses
from virt.xml.domain import GUEST_AGENT, Channel, Domain


def _ignore(_ctx: object, _err: object) -> None:
    pass


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(_ignore, None)
    connection = libvirt.open("test:///default")
    try:
        yield connection
    finally:
        connection.close()


def _iface(mac: str, *addrs: tuple[str, int]) -> dict[str, Any]:
    return {"hwaddr": mac, "addrs": [{"addr": a, "prefix": p, "type": 1 if ":" in a else 0} for a, p in addrs]}


# --- the channel --------------------------------------------------------------------------------------------


def test_new_vms_get_the_guest_agent_channel_and_libvirt_keeps_it(conn: libvirt.virConnect) -> None:
    xml = build_domain_xml(NewVM(name="agent-1", vcpus=1, memory_mib=64, disk=None, domain_type="test"), None)
    assert [(c.type, c.target_type, c.target_name, c.source_path) for c in Domain.from_xml(xml).channels] == [
        ("unix", "virtio", GUEST_AGENT, None)]  # libvirt picks the socket path
    dom = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    try:
        agent = Domain.from_xml(dom.XMLDesc(0)).guest_agent
        assert agent is not None and agent.type == "unix"
    finally:
        dom.undefine()


def test_only_the_agents_channel_counts_and_a_disconnected_agent_is_not_asked() -> None:
    dom = Domain.new(type="kvm", name="x")
    assert dom.guest_agent is None and not domains._agent_ready(dom)
    dom.channels.add(Channel.new(type="spicevmc", target_type="virtio", target_name="com.redhat.spice.0"))
    assert dom.guest_agent is None
    dom.channels.add(Channel.guest_agent())
    assert domains._agent_ready(dom)  # no state: a driver that does not say (the test driver); ask
    for state, ready in (("connected", True), ("disconnected", False)):
        live = Domain.from_xml(dom.to_xml())
        agent = live.guest_agent
        assert agent is not None
        agent.target_state = state
        assert domains._agent_ready(live) is ready


# --- merging ------------------------------------------------------------------------------------------------


def test_merge_keeps_the_sources_order_and_each_address_once_per_mac() -> None:
    lease = {"vnet0": _iface("52:54:00:AA:00:01", ("192.0.2.10", 24))}
    agent = {"lo": _iface("00:00:00:00:00:00", ("127.0.0.1", 8), ("::1", 128)),
             "eth0": _iface("52:54:00:aa:00:01", ("192.0.2.10", 24), ("10.0.0.5", 16), ("fe80::5054:ff:feaa:1", 64),
                            ("2001:db8::5", 64)),
             "eth1": _iface("52:54:00:aa:00:02", ("198.51.100.7", 24))}
    arp = {"vnet1": _iface("52:54:00:aa:00:02", ("198.51.100.7", 0)), "vnet0": _iface("52:54:00:aa:00:01")}
    assert merge_addresses([lease, agent, arp]) == {
        "52:54:00:aa:00:01": ["192.0.2.10/24", "10.0.0.5/16", "2001:db8::5/64"],
        "52:54:00:aa:00:02": ["198.51.100.7/24"],  # not again from ARP, which knows no prefix (says 0)
    }
    assert merge_addresses([arp, agent])["52:54:00:aa:00:02"] == ["198.51.100.7/0"]
    assert merge_addresses([]) == {}


def test_merge_leaves_out_loopback_and_link_local_addresses() -> None:
    noise = [("127.0.0.1", 8), ("127.1.2.3", 8), ("::1", 128), ("fe80::1", 64), ("fe80::2%eth0", 64),
             ("febf::1", 64), ("169.254.3.4", 16), ("not-an-address", 1)]
    kept = [("fec0::1", 64), ("128.0.0.1", 8), ("10.1.2.3", 8)]
    assert merge_addresses([{"eth0": _iface("52:54:00:00:00:09", *noise, *kept)}]) == {
        "52:54:00:00:00:09": ["fec0::1/64", "128.0.0.1/8", "10.1.2.3/8"]}


# --- asking libvirt -----------------------------------------------------------------------------------------


class FakeDomain:
    """interfaceAddresses by source; the agent's answer waits for `release` when `hang` is set."""

    def __init__(self, answers: dict[int, Any], hang: bool = False) -> None:
        self.answers, self.asked = answers, list[int]()
        self.release, self.hang = threading.Event(), hang

    def connect(self) -> object:
        return self

    def UUIDString(self) -> str:  # libvirt's names
        return "6695eb01-f6a4-8304-79aa-97f2502e193f"

    def interfaceAddresses(self, source: int, flags: int = 0) -> Any:
        self.asked.append(source)
        if source == AGENT and self.hang:
            self.release.wait(10)
        answer = self.answers.get(source)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_fetch_asks_leases_then_the_agent_then_arp() -> None:
    lease, agent, arp = ({"v": _iface("52:54:00:00:00:01", (ip, 24))} for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    dom = FakeDomain({LEASE: lease, AGENT: agent, ARP: arp})
    assert domains._addresses(dom, True) == {"52:54:00:00:00:01": ["10.0.0.1/24", "10.0.0.2/24", "10.0.0.3/24"]}
    assert dom.asked == [LEASE, AGENT, ARP]
    dom.asked.clear()
    assert domains.fetch_addresses(dom, False) == [lease, arp]  # no channel, or not running: never the agent
    assert dom.asked == [LEASE, ARP]


def test_a_failing_source_is_skipped() -> None:
    agent = {"eth0": _iface("52:54:00:00:00:01", ("10.0.0.2", 24))}
    dom = FakeDomain({LEASE: libvirt.libvirtError("no lease file"), AGENT: agent,
                      ARP: libvirt.libvirtError("unsupported")})
    assert domains._addresses(dom, True) == {"52:54:00:00:00:01": ["10.0.0.2/24"]}
    not_connected = FakeDomain({AGENT: libvirt.libvirtError("Guest agent is not responding: not connected")})
    assert domains._addresses(not_connected, True) == {}


def test_a_hanging_agent_holds_the_page_a_second_at_most_and_is_not_asked_again_meanwhile() -> None:
    arp = {"vnet0": _iface("52:54:00:00:00:01", ("10.0.0.3", 0))}
    dom = FakeDomain({AGENT: {"eth0": _iface("52:54:00:00:00:01", ("10.0.0.2", 24))}, ARP: arp}, hang=True)
    try:
        began = time.monotonic()
        assert domains._addresses(dom, True) == {"52:54:00:00:00:01": ["10.0.0.3/0"]}
        assert time.monotonic() - began < domains.AGENT_WAIT_SECONDS + 0.5
        assert domains._ask_agent(dom, wait=0.05) is None  # still hanging: no second question
        assert dom.asked.count(AGENT) == 1
    finally:
        dom.release.set()
    for _ in range(100):  # the question ends: the next page asks again
        if not domains._agent_asking:
            break
        time.sleep(0.01)
    dom.hang = False
    assert domains._ask_agent(dom) == dom.answers[AGENT] and dom.asked.count(AGENT) == 2


def test_the_vm_page_asks_the_agent_only_of_a_running_vm_with_the_channel(conn: libvirt.virConnect,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    xml_reads: list[int] = []
    real_addresses, real_xml = libvirt.virDomain.interfaceAddresses, libvirt.virDomain.XMLDesc

    def addresses(self: libvirt.virDomain, source: int, flags: int = 0) -> Any:
        asked.append(source)
        return real_addresses(self, source, flags)

    def xml_desc(self: libvirt.virDomain, flags: int = 0) -> str:
        xml_reads.append(flags)
        return str(real_xml(self, flags))

    monkeypatch.setattr(libvirt.virDomain, "interfaceAddresses", addresses)
    monkeypatch.setattr(libvirt.virDomain, "XMLDesc", xml_desc)
    spec = NewVM(name="agent-2", vcpus=1, memory_mib=64, disk=None, domain_type="test")
    dom = conn.defineXML(build_domain_xml(spec, None))
    try:
        assert domains.domain_detail(dom).nics == [] and asked == []  # shut off: nobody is asked
        dom.create()
        domains.domain_detail(dom)
        assert asked == [LEASE, AGENT, ARP] and len(xml_reads) == 2  # one XMLDesc per page read
        dom.suspend()
        asked.clear()
        domains.domain_detail(dom)
        assert asked == [LEASE, ARP]  # paused: the agent would not answer
        dom.destroy()
    finally:
        dom.undefine()
    asked.clear()
    legacy = conn.lookupByName("test")  # the test driver's own VM: running, no agent channel
    detail = domains.domain_detail(legacy)
    assert asked == [LEASE, ARP] and detail.nics[0].addresses == ["192.168.122.3/24"]
