"""Which VMs use which volume, found from the VMs' disks.

The quick form asks getAllDomainStats for block devices once per host: it names every disk
path of every VM (running or not) and, for running VMs, their backing files too. Only VMs
with a disk the statistics give no path for (a pool/volume reference of a VM that is off,
a network disk, an empty CD-ROM drive) are read from their XML. The thorough form, for a
refusal to delete, reads every VM's saved definition as well, since it can differ from the
running one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import libvirt

from virt.xml.domain import Domain

_STATS_FLAGS = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING


@dataclass
class Usage:
    by_path: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # path -> VM names
    by_volume: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))  # (pool, vol)

    def users(self, pool: str, volume: str, path: str | None) -> list[str]:
        found = set(self.by_volume.get((pool, volume), ()))
        if path:
            found |= self.by_path.get(path, set())
        return sorted(found)

    def add_domain_xml(self, name: str, xml: str) -> None:
        for disk in Domain.from_xml(xml).disks:
            if disk.source_pool and disk.source_volume:
                self.by_volume[(disk.source_pool, disk.source_volume)].add(name)
            path = disk.source_file or disk.source_dev
            source = disk.element.find("source")
            if not path and source is not None and disk.type == "network":
                path = source.get("name")  # rbd: "cephpool/image", the volume's path in an RBD pool
            if path:
                self.by_path[path].add(name)
            for backing in disk.element.iterfind(".//backingStore/source"):
                if backing.get("file") or backing.get("dev"):
                    self.by_path[str(backing.get("file") or backing.get("dev"))].add(name)


def _from_stats(conn: libvirt.virConnect, usage: Usage) -> list[libvirt.virDomain]:
    """Fill usage from block statistics; returns the VMs that need their XML read."""
    unresolved = []
    for dom, stats in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_BLOCK, _STATS_FLAGS):
        name = str(dom.name())
        count = stats.get("block.count")
        if count is None:  # drivers without block statistics (the test driver)
            unresolved.append(dom)
            continue
        pathless = False
        for index in range(int(count)):
            path = stats.get(f"block.{index}.path")
            if path:
                usage.by_path[str(path)].add(name)
            elif f"block.{index}.backingIndex" not in stats:
                pathless = True
        if pathless:
            unresolved.append(dom)
    return unresolved


def _xml_of(dom: libvirt.virDomain, flags: int) -> str | None:
    try:
        return str(dom.XMLDesc(flags))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None  # undefined meanwhile
        raise


def disk_usage(conn: libvirt.virConnect, *, thorough: bool = False) -> Usage:
    usage = Usage()
    unresolved = _from_stats(conn, usage)
    if thorough:
        unresolved = list(conn.listAllDomains(0))
    for dom in unresolved:
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE) if thorough else (0,):
            xml = _xml_of(dom, flags)
            if xml is not None:
                usage.add_domain_xml(str(dom.name()), xml)
    return usage
