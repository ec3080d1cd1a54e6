"""Pre-flight checks of a migration: facts from both hosts, then a judgement in words.

Facts are gathered with a handful of calls per host; the judgement is a plain function of those
facts, so each rule (same host, CPU, networks, bridges, storage, pools, memory, name, peer-to-peer)
is tested without libvirt. Every finding says what is wrong and what to do; blocking ones stop the
migration before anything moves.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os.path
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import libvirt
from lxml import etree

from virt.errors import Text, gettext_noop, joined, libvirt_message
from virt.uri import ConnectionSpec, Transport, validate_hostname
from virt.xml.codecs import iec
from virt.xml.domain import Domain
from virt.xml.parser import parse_xml
from virt.xml.storage import StoragePool

_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


# ---------------------------------------------------------------- what the user asked for


@dataclass(frozen=True)
class Options:
    copy_storage: bool = False  # full copy of non-shared disks into a pool with the same path
    peer_to_peer: bool = False  # the source's libvirtd talks to the target's itself
    tunnelled: bool = False  # data through the libvirtd connection (needs peer-to-peer)
    keep_source: bool = False  # leave an inactive definition on the source
    max_downtime_ms: int | None = None
    bandwidth_mib: int | None = None  # MiB/s
    migration_address: str = ""  # where the target receives the data: tcp://ADDR, listening there

    def __post_init__(self) -> None:
        if self.migration_address:
            validate_hostname(self.migration_address)

    def describe(self, live: bool) -> str:
        if not live:
            if self.keep_source:
                return Text(gettext_noop("offline, keep definition on source"))
            return Text(gettext_noop("offline"))
        words = [Text(gettext_noop("live"))]
        words += [w for on, w in ((self.copy_storage, Text(gettext_noop("copy storage"))),
                                  (self.peer_to_peer or self.tunnelled, Text(gettext_noop("peer-to-peer"))),
                                  (self.tunnelled, Text(gettext_noop("tunnelled"))),
                                  (self.keep_source, Text(gettext_noop("keep definition on source")))) if on]
        if self.max_downtime_ms:
            words.append(Text(gettext_noop("max downtime {ms} ms"), ms=self.max_downtime_ms))
        if self.bandwidth_mib:
            words.append(Text(gettext_noop("bandwidth {mib} MiB/s"), mib=self.bandwidth_mib))
        if self.migration_address:
            words.append(Text(gettext_noop("data to {address}"), address=self.migration_address))
        return joined(words, ", ")


@dataclass(frozen=True)
class Endpoint:
    """One host as the panel knows it: its name on the pages and how to connect."""

    name: str
    spec: ConnectionSpec

    @property
    def peer_uri(self) -> str | None:
        """The URI another host's libvirtd can use to reach this one (None: local or loopback only).
        Panel-side options (key files, certificate folders) are left off: they do not exist there."""
        if self.spec.transport in (Transport.LOCAL, Transport.TEST):
            return None
        host = self.spec.hostname.strip("[]").lower()
        if host in _LOOPBACK_NAMES:
            return None
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_loopback:
                return None
        return self.spec.display_uri()


# ---------------------------------------------------------------- pre-flight facts


@dataclass(frozen=True)
class DiskFact:
    dev: str
    device: str  # disk, cdrom
    path: str  # "" for network disks and empty drives
    format: str
    readonly: bool
    capacity: int | None  # bytes
    pool: str = ""  # for <disk type='volume'>
    volume: str = ""

    @property
    def copied(self) -> bool:
        """Does copy-storage copy it? libvirt skips read-only and empty drives."""
        return bool(self.path) and not self.readonly and self.device == "disk"


@dataclass(frozen=True)
class VMFacts:
    uuid: str
    name: str
    active: bool
    paused: bool
    persistent: bool
    autostart: bool
    memory_kib: int
    arch: str
    virt_type: str
    cpu_xml: str | None  # the <cpu> to compare on the target (None: nothing to compare)
    host_passthrough: bool
    host_cpu_xml: str | None  # the source host's CPU, for host-passthrough
    host_uuid: str | None
    disks: tuple[DiskFact, ...]
    networks: tuple[str, ...]
    bridges: tuple[str, ...]
    snapshots: int
    managed_save: bool
    nvram: bool


@dataclass(frozen=True)
class TargetFacts:
    host_uuid: str | None
    free_memory: int | None  # bytes
    same_name_uuid: str | None  # a different VM with this name
    same_uuid_active: bool | None  # None: not defined there
    networks: dict[str, bool]  # name -> active; missing ones absent
    bridges: dict[str, bool | None]  # name -> exists (None: the host cannot tell)
    cpu_problem: str | None
    cpu_unknown: str | None
    visible: frozenset[str]  # disk paths (or pool/volume) the target has a volume for
    pools_by_path: dict[str, str]  # target path of each active pool -> pool name
    pools: frozenset[str]  # names of active pools


@dataclass(frozen=True)
class Finding:
    code: str  # unreachable, same-host, state, cpu, network, bridge, storage, pool, memory, name, p2p, ...
    problem: str
    advice: str = ""
    blocking: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _optional(call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(*args)
    except libvirt.libvirtError:
        return None


def host_uuid(conn: libvirt.virConnect) -> str | None:
    """The host's identity as libvirt sees it (capabilities, else SMBIOS); None when unknown."""
    caps = parse_xml(conn.getCapabilities())
    found = (caps.findtext("./host/uuid") or "").strip()
    if not found:
        sysinfo = _optional(conn.getSysinfo, 0)
        if sysinfo:
            found = (parse_xml(sysinfo).findtext("./system/entry[@name='uuid']") or "").strip()
    return found.lower() or None


def _host_cpu(conn: libvirt.virConnect) -> str | None:
    cpu = parse_xml(conn.getCapabilities()).find("./host/cpu")
    return None if cpu is None else etree.tostring(cpu, encoding="unicode")


def _disk_facts(dom: libvirt.virDomain, xml: Domain, active: bool) -> tuple[DiskFact, ...]:
    disks = []
    for disk in xml.disks:
        path, pool, volume = "", "", ""
        if disk.type == "volume" and disk.source_pool and disk.source_volume:
            pool, volume = disk.source_pool, disk.source_volume
            path = f"{pool}/{volume}"
        elif disk.type in ("file", "block"):
            path = disk.source_file or disk.source_dev or ""
        size = _optional(dom.blockInfo, disk.target_dev) if active and path and disk.target_dev else None
        disks.append(DiskFact(dev=disk.target_dev or "", device=disk.device or "disk", path=path,
                              format=disk.driver_type or "raw", readonly=bool(disk.readonly),
                              capacity=int(size[0]) if size else None, pool=pool, volume=volume))
    return tuple(disks)


def source_facts(dom: libvirt.virDomain) -> VMFacts:
    """What the checks need from the source: one XMLDesc and a few cheap calls."""
    conn = dom.connect()
    state, _reason = dom.state()
    active = bool(dom.isActive())
    # The live definition names the CPU the guest really has; a shut-off VM's is what it will get.
    xml = Domain.from_xml(dom.XMLDesc(0 if active else libvirt.VIR_DOMAIN_XML_INACTIVE))
    cpu = xml.element.find("cpu")
    mode = cpu.get("mode", "custom") if cpu is not None else ""
    # check='none' in a saved definition: the hypervisor does not check the CPU when the VM starts
    # (libvirt's default qemu64 is written so), so neither do we. A running VM's live CPU is exact.
    comparable = cpu is not None and mode != "host-passthrough" and (
        cpu.find("model") is not None or mode == "host-model") and (active or cpu.get("check") != "none")
    interfaces = xml.interfaces
    return VMFacts(
        uuid=dom.UUIDString().lower(), name=dom.name(), active=active,
        paused=state == libvirt.VIR_DOMAIN_PAUSED, persistent=bool(dom.isPersistent()),
        autostart=bool(_optional(dom.autostart)), memory_kib=int(dom.info()[2] if active else xml.memory or 0),
        arch=xml.os.arch or "x86_64", virt_type=xml.type or "kvm",
        cpu_xml=etree.tostring(cpu, encoding="unicode") if comparable and cpu is not None else None,
        host_passthrough=mode == "host-passthrough",
        host_cpu_xml=_host_cpu(conn) if mode == "host-passthrough" else None,
        host_uuid=host_uuid(conn),
        disks=_disk_facts(dom, xml, active),
        networks=tuple(dict.fromkeys(i.source_network for i in interfaces if i.type == "network" and i.source_network)),
        bridges=tuple(dict.fromkeys(i.source_bridge for i in interfaces if i.type == "bridge" and i.source_bridge)),
        snapshots=int(_optional(dom.snapshotNum, 0) or 0),
        managed_save=bool(_optional(dom.hasManagedSaveImage, 0)),
        nvram=bool(xml.os.nvram),
    )


def _cpu_check(conn: libvirt.virConnect, vm: VMFacts) -> tuple[str | None, str | None]:
    """(problem, unknown): why the VM's CPU cannot run on this host, or why that could not be told."""
    fail = libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE
    try:
        if vm.host_passthrough and vm.host_cpu_xml:
            conn.compareCPU(vm.host_cpu_xml, fail)  # the guest sees the source's own CPU
        elif vm.cpu_xml:
            conn.compareHypervisorCPU(None, vm.arch, None, vm.virt_type, vm.cpu_xml, fail)
    except libvirt.libvirtError as exc:
        message = libvirt_message(exc)
        if exc.get_error_code() == libvirt.VIR_ERR_CPU_INCOMPATIBLE:
            return message, None
        return None, message
    return None, None


def active_pools(conn: libvirt.virConnect) -> tuple[dict[str, libvirt.virStoragePool], dict[str, str]]:
    by_name, by_path = {}, {}
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        name = pool.name()
        by_name[name] = pool
        path = StoragePool.from_xml(pool.XMLDesc(0)).target_path
        if path:
            by_path[os.path.normpath(path)] = name
    return by_name, by_path


def _visible(conn: libvirt.virConnect, vm: VMFacts, by_name: dict[str, libvirt.virStoragePool],
             by_path: dict[str, str]) -> frozenset[str]:
    """Disk paths the target has a volume for (after refreshing the pools they would be in)."""
    for disk in vm.disks:
        pool = by_name.get(disk.pool) or by_name.get(by_path.get(os.path.dirname(disk.path), ""))
        if pool is not None and disk.path:
            with contextlib.suppress(libvirt.libvirtError):
                pool.refresh(0)  # files made by another host on shared storage
    seen = set()
    for disk in vm.disks:
        if not disk.path:
            continue
        try:
            if disk.pool:
                by_name[disk.pool].storageVolLookupByName(disk.volume)
            else:
                conn.storageVolLookupByPath(disk.path)
        except (libvirt.libvirtError, KeyError):
            continue
        seen.add(disk.path)
    return frozenset(seen)


def _bridge_exists(conn: libvirt.virConnect, name: str) -> bool | None:
    try:
        conn.interfaceLookupByName(name)
    except libvirt.libvirtError as exc:
        return False if exc.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE else None
    return True


def target_facts(conn: libvirt.virConnect, vm: VMFacts) -> TargetFacts:
    """What the checks need from the target, for this VM."""
    same_name_uuid = None
    with contextlib.suppress(libvirt.libvirtError):
        other = conn.lookupByName(vm.name).UUIDString().lower()
        same_name_uuid = other if other != vm.uuid else None
    same_uuid_active = None
    with contextlib.suppress(libvirt.libvirtError):
        same_uuid_active = bool(conn.lookupByUUIDString(vm.uuid).isActive())
    networks = {}
    for name in vm.networks:
        with contextlib.suppress(libvirt.libvirtError):
            networks[name] = bool(conn.networkLookupByName(name).isActive())
    by_name, by_path = active_pools(conn)
    problem, unknown = _cpu_check(conn, vm)
    free = _optional(conn.getFreeMemory)
    return TargetFacts(
        host_uuid=host_uuid(conn), free_memory=int(free) if free else None,
        same_name_uuid=same_name_uuid, same_uuid_active=same_uuid_active, networks=networks,
        bridges={name: _bridge_exists(conn, name) for name in vm.bridges},
        cpu_problem=problem, cpu_unknown=unknown, visible=_visible(conn, vm, by_name, by_path),
        pools_by_path=by_path, pools=frozenset(by_name),
    )


def unreachable(target: str, reason: str) -> Finding:
    return Finding("unreachable", Text(gettext_noop("{target} does not answer: {reason}"), target=target,
                                       reason=Text.of(reason)),
                   Text(gettext_noop("Check that libvirtd runs on {target} and that the panel can reach it (Hosts → "
                                     "{target} → Test connection), then check again."), target=target))


# ---------------------------------------------------------------- pre-flight judgement


def _judge_storage(vm: VMFacts, tgt: TargetFacts, target: str, opts: Options) -> list[Finding]:
    out = []
    copy = opts.copy_storage and vm.active
    for disk in vm.disks:
        if not disk.path:
            continue
        what = Text(gettext_noop("disk {disk} ({path})"), disk=disk.dev or "?", path=disk.path)
        if copy and disk.copied:
            pool_ok = disk.pool in tgt.pools if disk.pool else os.path.dirname(disk.path) in tgt.pools_by_path
            if not pool_ok:
                where = (Text(gettext_noop("a pool named {pool}"), pool=disk.pool) if disk.pool else
                         Text(gettext_noop("a pool with path {path}"), path=os.path.dirname(disk.path)))
                out.append(Finding("pool", Text(gettext_noop("{what}: {target} has no active {where}, so the copy has "
                                                             "nowhere to go."), what=what, target=target, where=where),
                                   Text(gettext_noop("Define and start {where} on {target} (copy storage writes the "
                                                     "copy at the same path), or choose shared storage."),
                                        where=where, target=target)))
            elif disk.path in tgt.visible:
                out.append(Finding("storage", Text(gettext_noop("{what}: {target} already has a volume at this path; "
                                                                "copying would overwrite it."), what=what,
                                                   target=target),
                                   Text(gettext_noop("If it is shared storage, untick copy storage; otherwise remove "
                                                     "or rename that volume on {target}."), target=target)))
            continue
        if disk.path in tgt.visible:
            continue
        if disk.copied:
            advice = (Text(gettext_noop("Tick “copy storage” (a full copy into a pool with the same path on the "
                                        "target), or put the disk on storage both hosts share.")) if vm.active else
                      Text(gettext_noop("Start the VM and migrate it live with “copy storage”, or put the disk on "
                                        "shared storage.")))
        else:
            advice = Text(gettext_noop("Eject the medium, or make the same file available in a storage pool on "
                                       "{target}."), target=target)
        out.append(Finding("storage", Text(gettext_noop("{what} is on storage {target} cannot see."), what=what,
                                           target=target), advice))
    return out


def judge(vm: VMFacts, tgt: TargetFacts, source: str, target: str, opts: Options,
          peer_uri: str | None = "") -> list[Finding]:
    """Every reason not to migrate now (blocking) and what is worth knowing (not blocking).

    `peer_uri`: the target's URI as the source's libvirtd would use it (None: local/loopback)."""
    out: list[Finding] = []
    live = vm.active
    if vm.host_uuid and tgt.host_uuid and vm.host_uuid == tgt.host_uuid:
        out.append(Finding("same-host", Text(gettext_noop("{source} and {target} are the same hypervisor (host UUID "
                                                          "{uuid})."), source=source, target=target,
                                             uuid=vm.host_uuid),
                           Text(gettext_noop("Choose another target. If they really are two machines, give each its "
                                             "own host_uuid in libvirtd.conf."))))
    elif not (vm.host_uuid and tgt.host_uuid):
        out.append(Finding("same-host", Text(gettext_noop("The host UUIDs could not be compared, so the panel cannot "
                                                          "tell whether {source} and {target} are different "
                                                          "machines."), source=source, target=target),
                           blocking=False))
    if vm.managed_save and not live:
        out.append(Finding("state", Text(gettext_noop("{vm} has a saved memory state on {source}, which does not "
                                                      "move."), vm=vm.name, source=source),
                           Text(gettext_noop("Restore it (start) and migrate it live, or discard the saved state."))))
    if vm.snapshots and (live or not opts.keep_source):
        out.append(Finding("state", Text(gettext_noop("{vm} has {count} snapshot(s): libvirt does not move "
                                                      "snapshots."), vm=vm.name, count=vm.snapshots),
                           Text(gettext_noop("Delete the snapshots first.")) if live else
                           Text(gettext_noop("Delete the snapshots first, or keep the definition on the source."))))
    if tgt.cpu_problem:
        out.append(Finding("cpu", Text(gettext_noop("The VM's CPU does not work on {target}: {reason}"), target=target,
                                       reason=tgt.cpu_problem),
                           Text(gettext_noop("Choose a target with a compatible CPU, or give the VM a CPU model both "
                                             "hosts offer (shut it down, change the CPU mode, start it)."))))
    elif tgt.cpu_unknown:
        out.append(Finding("cpu", Text(gettext_noop("The CPU could not be compared on {target}: {reason}"),
                                       target=target, reason=tgt.cpu_unknown), blocking=False))
    for name in vm.networks:
        if name not in tgt.networks:
            out.append(Finding("network", Text(gettext_noop("Network {name} used by a NIC does not exist on "
                                                            "{target}."), name=name, target=target),
                               Text(gettext_noop("Define network {name} on {target} (same name), or move the NIC to a "
                                                 "network the target has."), name=name, target=target)))
        elif not tgt.networks[name]:
            out.append(Finding("network", Text(gettext_noop("Network {name} exists on {target} but is not started."),
                                               name=name, target=target),
                               Text(gettext_noop("Start network {name} on {target}."), name=name, target=target),
                               blocking=live))
    for name, exists in tgt.bridges.items():
        if exists is False:
            out.append(Finding("bridge", Text(gettext_noop("Bridge {name} used by a NIC does not exist on {target}."),
                                              name=name, target=target),
                               Text(gettext_noop("Create bridge {name} on {target}, or move the NIC to a network the "
                                                 "target has."), name=name, target=target)))
        elif exists is None:
            out.append(Finding("bridge", Text(gettext_noop("{target} cannot tell whether bridge {name} exists."),
                                              target=target, name=name), blocking=False))
    out += _judge_storage(vm, tgt, target, opts)
    need = vm.memory_kib * 1024
    if tgt.free_memory is None:
        out.append(Finding("memory", Text(gettext_noop("{target} does not report its free memory."), target=target),
                           blocking=False))
    elif tgt.free_memory < need:
        out.append(Finding("memory", Text(gettext_noop("{target} has {free} free; the VM needs {need}."),
                                          target=target, free=iec(tgt.free_memory), need=iec(need)),
                           Text(gettext_noop("Free memory on {target} (stop or move other VMs) or choose another "
                                             "target."), target=target) if live
                           else Text(gettext_noop("It would not start there until {target} has that much free."),
                                     target=target), blocking=live))
    if tgt.same_name_uuid:
        out.append(Finding("name", Text(gettext_noop("{target} already has a different VM named {vm} (UUID {uuid})."),
                                        target=target, vm=vm.name, uuid=tgt.same_name_uuid),
                           Text(gettext_noop("Rename one of the two VMs first."))))
    if tgt.same_uuid_active:
        out.append(Finding("name", Text(gettext_noop("{vm} is already running on {target} (same UUID)."), vm=vm.name,
                                        target=target),
                           Text(gettext_noop("Check both hosts: the same VM must not run twice. Stop one copy "
                                             "first."))))
    elif tgt.same_uuid_active is False:
        out.append(Finding("name", Text(gettext_noop("{target} already keeps an inactive definition of {vm}; the "
                                                     "migration replaces it."), target=target, vm=vm.name),
                           blocking=False))
    if live and (opts.peer_to_peer or opts.tunnelled):
        if peer_uri is None:
            out.append(Finding("p2p", Text(gettext_noop("Peer-to-peer: {source}'s libvirtd connects to {target} "
                                                        "itself, "
                                                        "but the panel reaches {target} through a local or loopback "
                                                        "address, which on {source} means {source} itself."),
                                           source=source, target=target),
                               Text(gettext_noop("Untick peer-to-peer, or add {target} to the panel with an address "
                                                 "{source} can reach."), target=target, source=source)))
        elif peer_uri and not peer_uri.startswith("qemu+tcp://"):
            out.append(Finding("p2p", Text(gettext_noop("Peer-to-peer: {source}'s libvirtd opens {uri} with its own "
                                                        "credentials (ssh keys or certificates of root on that host), "
                                                        "not the panel's."), source=source, uri=peer_uri),
                               blocking=False))
    if not live and vm.nvram:
        out.append(Finding("nvram", Text(gettext_noop("The UEFI variables (NVRAM file) stay on {source}; {target} "
                                                      "starts with fresh ones unless the file is on shared storage."),
                                         source=source, target=target), blocking=False))
    if opts.keep_source and vm.autostart:
        out.append(Finding("autostart", Text(gettext_noop("Autostart moves to {target} and is turned off on {source}, "
                                                          "so the VM cannot start on both hosts."),
                                             target=target, source=source), blocking=False))
    return out


def blocking(findings: list[Finding]) -> bool:
    return any(f.blocking for f in findings)
