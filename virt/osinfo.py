"""Operating systems a new VM can be made for, read from libosinfo's database (Debian package osinfo-db).

The database is a tree of XML files, one operating system each (/usr/share/osinfo/os/VENDOR/NAME.xml).
An entry may derive from another (`<derives-from>`, or `<clones>` for a rebuild such as AlmaLinux): its
devices and resources are inherited, and it may take a device back (`supported="false"`).

What the create form needs of an entry: a name, a vendor to group by, the release and end-of-life dates
to keep the list short and current, the recommended (or else minimum) vCPUs, memory and disk, whether
the guest has virtio drivers for disks and NICs built in (else SATA and e1000), and whether it boots
with UEFI only.

The whole tree (800 files in osinfo-db 0.20221130) is parsed once per process, 0.3 to 0.5 s on the lab
machine (lxml; only the elements named above are looked at); then `catalogue()` answers from memory and
choosing the current entries for a day takes about 1 ms.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from lxml import etree

from virt.errors import Term, gettext_noop
from virt.xml.parser import XMLInputError, parse_xml

DEFAULT_DB = Path("/usr/share/osinfo")
ARCHES = ("x86_64", "all")  # resources for our arch win over the arch-less ones
MIB = 1 << 20
GIB = 1 << 30
# A release whose end of life lies further back than this is not offered; one without an end-of-life date
# is not offered once it is older than MAX_AGE_YEARS; and of each line (Debian, Fedora, Windows) only the
# newest PER_LINE releases are, so the list stays short enough to read.
EOL_GRACE_YEARS = 2
MAX_AGE_YEARS = 8
PER_LINE = 3
HIDDEN_STATUSES = ("prerelease", "snapshot")

# PCI ids of virtio devices (transitional and virtio 1.0), as libosinfo names them.
VIRTIO_DISK = frozenset({"http://pcisig.com/pci/1af4/1001", "http://pcisig.com/pci/1af4/1042"})
VIRTIO_NET = frozenset({"http://pcisig.com/pci/1af4/1000", "http://pcisig.com/pci/1af4/1041"})

OTHER = ""  # the choice "another operating system": generic defaults


@dataclass(frozen=True)
class OsEntry:
    """One operating system, with what a VM for it should have."""

    id: str
    name: str
    vendor: str
    family: str = ""
    short_id: str = ""
    released: date | None = None
    eol: date | None = None
    vcpus: int = 1
    memory_mib: int = 1024
    disk_gib: int = 10
    virtio_disk: bool = False
    virtio_net: bool = False
    efi_only: bool = False

    @property
    def disk_bus(self) -> str:
        return "virtio" if self.virtio_disk else "sata"

    def nic_model(self, machine: str = "") -> str:
        """virtio where the guest has the driver; else the Intel NIC every installer knows (e1000e on q35)."""
        if self.virtio_net:
            return "virtio"
        return "e1000e" if "q35" in machine else "e1000"

    @property
    def memory(self) -> str:
        """The memory as the size fields write it: 2G, or 1536M."""
        return f"{self.memory_mib // 1024}G" if self.memory_mib % 1024 == 0 else f"{self.memory_mib}M"


# Generic defaults for an operating system the database does not know: devices every installer drives.
OTHER_VENDORS = Term(gettext_noop("Other vendors"))
GENERIC = OsEntry(id=OTHER, name=Term(gettext_noop("Another operating system")), vendor="")


@dataclass
class _Raw:
    """An <os> element as written, before inheritance."""

    id: str
    name: str = ""
    vendor: str = ""
    family: str = ""
    short_id: str = ""
    status: str = ""
    released: date | None = None
    eol: date | None = None
    parents: list[str] = field(default_factory=list)
    devices: dict[str, bool] = field(default_factory=dict)  # id -> supported
    recommended: dict[str, int] = field(default_factory=dict)  # n-cpus, ram, storage (bytes)
    minimum: dict[str, int] = field(default_factory=dict)
    efi_only: bool = False


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text else None
    except ValueError:
        return None


def _text(os_el: etree._Element, tag: str) -> str:
    """The untranslated text of a child (translations carry xml:lang)."""
    for child in os_el.iterfind(tag):
        if not child.get("{http://www.w3.org/XML/1998/namespace}lang"):
            return (child.text or "").strip()
    return ""


def _resources(os_el: etree._Element, kind: str) -> dict[str, int]:
    for arch in ARCHES:
        found = os_el.find(f"resources[@arch='{arch}']/{kind}")
        if found is not None:
            return {child.tag: int(child.text) for child in found
                    if isinstance(child.tag, str) and child.text and child.text.strip().isdigit()}
    return {}


def _raw(os_el: etree._Element) -> _Raw:
    firmwares = {(f.get("type"), f.get("supported", "true")) for f in os_el.iterfind("firmware")
                 if f.get("arch") in ("x86_64", None)}
    return _Raw(
        id=str(os_el.get("id", "")), name=_text(os_el, "name"), vendor=_text(os_el, "vendor"),
        family=_text(os_el, "family"), short_id=_text(os_el, "short-id"), status=_text(os_el, "release-status"),
        released=_date(os_el.findtext("release-date")), eol=_date(os_el.findtext("eol-date")),
        parents=[str(p.get("id")) for p in (*os_el.iterfind("derives-from"), *os_el.iterfind("clones"))
                 if p.get("id")],
        devices={str(d.get("id")): d.get("supported", "true") != "false"
                 for d in os_el.iterfind("devices/device") if d.get("id")},
        recommended=_resources(os_el, "recommended"), minimum=_resources(os_el, "minimum"),
        efi_only=("bios", "false") in firmwares and ("efi", "true") in firmwares,
    )


def _files(db: Path) -> Iterable[Path]:
    # VENDOR/NAME.xml only: the VENDOR/NAME.d/ folders add installable drivers, nothing the form uses.
    return sorted((db / "os").glob("*/*.xml"))


def read_entries(db: Path) -> dict[str, _Raw]:
    """Every <os> of the database by id; a file that does not parse is skipped (the rest still serves)."""
    found: dict[str, _Raw] = {}
    for path in _files(db):
        try:
            root = parse_xml(path.read_bytes())
        except (OSError, XMLInputError):
            continue
        for os_el in root.iterfind("os"):
            raw = _raw(os_el)
            if raw.id:
                found[raw.id] = raw
    return found


class _Resolver:
    """Devices and resources with inheritance along derives-from (cycles cut, missing parents ignored)."""

    def __init__(self, raws: dict[str, _Raw]) -> None:
        self.raws = raws
        self._devices: dict[str, frozenset[str]] = {}

    def devices(self, os_id: str, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        if os_id in self._devices:
            return self._devices[os_id]
        raw = self.raws.get(os_id)
        if raw is None or os_id in seen:
            return frozenset()
        inherited: set[str] = set()
        for parent in raw.parents:
            inherited |= self.devices(parent, seen | {os_id})
        own = {d for d, ok in raw.devices.items() if ok}
        gone = {d for d, ok in raw.devices.items() if not ok}
        result = frozenset((inherited | own) - gone)
        self._devices[os_id] = result
        return result

    def resource(self, os_id: str, key: str, seen: frozenset[str] = frozenset()) -> int | None:
        """Recommended, else minimum, from the entry or the nearest ancestor that says."""
        raw = self.raws.get(os_id)
        if raw is None or os_id in seen:
            return None
        value = raw.recommended.get(key) or raw.minimum.get(key)
        if value:
            return value
        for parent in raw.parents:
            value = self.resource(parent, key, seen | {os_id})
            if value:
                return value
        return None


def _ceil_div(value: int, unit: int) -> int:
    return -(-value // unit)


def resolve(raws: dict[str, _Raw]) -> list[OsEntry]:
    resolver = _Resolver(raws)
    entries = []
    for raw in raws.values():
        devices = resolver.devices(raw.id)
        cpus, ram, storage = (resolver.resource(raw.id, key) for key in ("n-cpus", "ram", "storage"))
        entries.append(OsEntry(
            id=raw.id, name=raw.name or raw.short_id or raw.id, vendor=raw.vendor or OTHER_VENDORS,
            family=raw.family, short_id=raw.short_id, released=raw.released, eol=raw.eol,
            vcpus=max(1, cpus or GENERIC.vcpus),
            memory_mib=max(64, _ceil_div(ram, MIB)) if ram else GENERIC.memory_mib,
            disk_gib=max(1, _ceil_div(storage, GIB)) if storage else GENERIC.disk_gib,
            virtio_disk=bool(devices & VIRTIO_DISK), virtio_net=bool(devices & VIRTIO_NET), efi_only=raw.efi_only,
        ))
    return entries


def _line(os_id: str) -> str:
    """http://debian.org/debian/11 -> http://debian.org/debian: the releases of one line."""
    return os_id.rsplit("/", 1)[0]


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _newest_first(entry: OsEntry) -> tuple[date, list[int]]:
    numbers = [int(n) for n in re.findall(r"\d+", entry.id.rsplit("/", 1)[-1])]
    return entry.released or date.min, numbers


def current(entries: Iterable[OsEntry], statuses: dict[str, str], today: date) -> list[OsEntry]:
    """The entries worth offering on `today` (see EOL_GRACE_YEARS ...), grouped by vendor, newest first."""
    eol_limit, age_limit = _years_before(today, EOL_GRACE_YEARS), _years_before(today, MAX_AGE_YEARS)
    lines: dict[str, list[OsEntry]] = {}
    for entry in entries:
        if statuses.get(entry.id) in HIDDEN_STATUSES:
            continue
        if entry.eol is not None and entry.eol < eol_limit:
            continue
        if entry.eol is None and (entry.released is None or entry.released < age_limit) \
                and statuses.get(entry.id) != "rolling":
            continue
        lines.setdefault(_line(entry.id), []).append(entry)
    kept = [e for line in lines.values() for e in sorted(line, key=_newest_first, reverse=True)[:PER_LINE]]
    by_name = {e.name: e for e in sorted(kept, key=_newest_first)}  # one "Fedora CoreOS", not three streams
    by_vendor = sorted(by_name.values(), key=_newest_first, reverse=True)
    return sorted(by_vendor, key=lambda e: e.vendor.casefold())  # stable: newest first within a vendor


@dataclass(frozen=True)
class Catalogue:
    """The parsed database of one folder: every entry by id, and the current ones for a day."""

    entries: dict[str, OsEntry]
    statuses: dict[str, str]

    def get(self, os_id: str) -> OsEntry | None:
        return GENERIC if os_id == OTHER else self.entries.get(os_id)

    def offered(self, today: date) -> list[OsEntry]:
        return current(self.entries.values(), self.statuses, today)


@functools.lru_cache(maxsize=4)
def catalogue(db: Path = DEFAULT_DB) -> Catalogue:
    """The database at `db`, parsed once per process. An absent database is an empty catalogue: the form
    then offers "another operating system" only."""
    raws = read_entries(db)
    return Catalogue({e.id: e for e in resolve(raws)}, {r.id: r.status for r in raws.values() if r.status})
