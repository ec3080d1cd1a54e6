"""Storage pools: list, inspect, create by type, build/start/stop/autostart/refresh, delete.

Listing a host costs four list calls plus one XMLDesc per pool, whatever the pools hold
(libvirt has no bulk XML call). Definitions are built through virt.xml objects from a
PoolSpec whose every field passed virt.storage_rules first.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import libvirt

from virt.errors import InvalidInput, InvalidState, Term, Text, and_joined, gettext_noop, joined, reworded, translate
from virt.storage_rules import (
    Problem,
    StorageInputError,
    check_ceph_user,
    check_device,
    check_export,
    check_host,
    check_iqn,
    check_name,
    check_pool_path,
    check_port,
)
from virt.xml.parser import parse_xml
from virt.xml.secret import Secret
from virt.xml.storage import SourceDevice, SourceHost, StoragePool

log = logging.getLogger(__name__)

POOL_TYPES = {
    "dir": Term(gettext_noop("Directory")),
    "logical": Term(gettext_noop("LVM volume group")),
    "netfs": Term(gettext_noop("NFS share")),
    "iscsi": Term(gettext_noop("iSCSI target")),
    "rbd": Term(gettext_noop("Ceph RBD")),
    "disk": Term(gettext_noop("Whole disk (partitions)")),
}
# Volumes of these pools are files, so qcow2 and sparse raw files exist; elsewhere volumes are raw
# block devices (LVs, partitions, RBD images) and iSCSI pools cannot create volumes at all.
FILE_POOLS = frozenset({"dir", "fs", "netfs"})
NO_NEW_VOLUMES = frozenset({"iscsi", "scsi", "mpath"})
DISK_LABELS = ("gpt", "dos")
ISCSI_TARGET_PATH = "/dev/disk/by-path"
ACTIONS = ("build", "start", "stop", "refresh", "autostart", "no-autostart")
_STATES = {
    libvirt.VIR_STORAGE_POOL_INACTIVE: Term(gettext_noop("inactive")),
    libvirt.VIR_STORAGE_POOL_BUILDING: Term(gettext_noop("building")),
    libvirt.VIR_STORAGE_POOL_RUNNING: Term(gettext_noop("active")),
    libvirt.VIR_STORAGE_POOL_DEGRADED: Term(gettext_noop("degraded")),
    libvirt.VIR_STORAGE_POOL_INACCESSIBLE: Term(gettext_noop("inaccessible")),
}


@dataclass(frozen=True)
class PoolSummary:
    name: str
    uuid: str
    type: str
    active: bool
    autostart: bool
    persistent: bool
    capacity: int
    allocation: int
    available: int
    target_path: str
    source: str  # where the data lives, for display

    @property
    def state(self) -> str:
        return _STATES[libvirt.VIR_STORAGE_POOL_RUNNING] if self.active else _STATES[libvirt.VIR_STORAGE_POOL_INACTIVE]

    @property
    def file_based(self) -> bool:
        return self.type in FILE_POOLS

    @property
    def creates_volumes(self) -> bool:
        return self.type not in NO_NEW_VOLUMES


def describe_source(pool: StoragePool) -> str:
    hosts = ", ".join(h.name or "" for h in pool.source_hosts)
    devices = ", ".join(d.path or "" for d in pool.source_devices)
    if pool.type == "netfs":
        return f"{hosts}:{pool.source_dir or ''}"
    if pool.type == "iscsi":
        return f"{hosts} {devices}"
    if pool.type == "rbd":
        return Text(gettext_noop("{name} on {hosts}"), name=pool.source_name or "", hosts=hosts)
    if pool.type == "logical":
        if devices:
            return Text(gettext_noop("volume group {name} on {devices}"), name=pool.source_name or "", devices=devices)
        return Text(gettext_noop("volume group {name}"), name=pool.source_name or "")
    return devices  # dir: the target path says it all


def summary_from_xml(xml: str, *, active: bool, autostart: bool, persistent: bool) -> PoolSummary:
    pool = StoragePool.from_xml(xml)
    return PoolSummary(
        name=pool.name or "", uuid=pool.uuid or "", type=pool.type or "", active=active, autostart=autostart,
        persistent=persistent, capacity=pool.capacity or 0, allocation=pool.allocation or 0,
        available=pool.available or 0, target_path=pool.target_path or "", source=describe_source(pool),
    )


def _uuids(conn: libvirt.virConnect, flags: int) -> set[str]:
    return {str(p.UUIDString()) for p in conn.listAllStoragePools(flags)}


def list_pools(conn: libvirt.virConnect) -> list[PoolSummary]:
    pools = conn.listAllStoragePools(0)
    active = _uuids(conn, libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
    autostart = _uuids(conn, libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_AUTOSTART)
    transient = _uuids(conn, libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_TRANSIENT)
    found = []
    for pool in pools:
        uuid = str(pool.UUIDString())
        try:
            xml = pool.XMLDesc(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                continue  # removed meanwhile
            raise
        found.append(summary_from_xml(xml, active=uuid in active, autostart=uuid in autostart,
                                      persistent=uuid not in transient))
    return sorted(found, key=lambda p: p.name)


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
    return conn.storagePoolLookupByName(name)


def pool_summary(conn: libvirt.virConnect, name: str) -> PoolSummary:
    pool = lookup(conn, name)
    return summary_from_xml(pool.XMLDesc(0), active=bool(pool.isActive()), autostart=bool(pool.autostart()),
                            persistent=bool(pool.isPersistent()))


def supported_types(conn: libvirt.virConnect) -> list[str]:
    """The pool types this host's libvirt was built with (all of ours when it cannot say)."""
    try:
        caps = parse_xml(conn.getStoragePoolCapabilities(0))
    except libvirt.libvirtError:
        return list(POOL_TYPES)
    supported = {p.get("type") for p in caps.findall("pool") if p.get("supported") == "yes"}
    return [kind for kind in POOL_TYPES if kind in supported]


def ceph_secrets(conn: libvirt.virConnect) -> list[tuple[str, str]]:
    """(uuid, usage name) of the host's Ceph secrets; none where the driver has no secrets."""
    try:
        secrets = conn.listAllSecrets(libvirt.VIR_CONNECT_LIST_SECRETS_EPHEMERAL
                                      | libvirt.VIR_CONNECT_LIST_SECRETS_NO_EPHEMERAL)
    except libvirt.libvirtError:
        return []
    return sorted((str(s.UUIDString()), str(s.usageID())) for s in secrets
                  if s.usageType() == libvirt.VIR_SECRET_USAGE_TYPE_CEPH)


# --- creating ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolSpec:
    """What a create form hands over; `problems()` checks it against the rules of its type."""

    type: str
    name: str
    target_path: str = ""  # dir, netfs (mount point); fixed or derived for the others
    hosts: tuple[tuple[str, int | None], ...] = ()  # netfs server, iSCSI portal, Ceph monitors
    source_dir: str = ""  # netfs export
    source_name: str = ""  # logical: volume group; rbd: Ceph pool
    devices: tuple[str, ...] = ()  # logical: physical volumes; disk: the disk
    source_format: str = ""  # disk: gpt/dos
    iqn: str = ""  # iscsi: target
    initiator_iqn: str = ""  # iscsi: ours (optional)
    ceph_user: str = ""
    secret_uuid: str = ""  # rbd: an existing secret (or one made from a key by define_pool)

    def problems(self, roots: Iterable[str]) -> list[Problem]:
        found: list[Problem] = []

        def check(field_name: str, rule: Callable[..., object], *args: object) -> None:
            try:
                rule(*args)
            except ValueError as exc:
                found.append(Problem.of(field_name, exc))

        if self.type not in POOL_TYPES:
            return [Problem("type", Text(gettext_noop("Unknown pool type {type}."), type=repr(self.type)))]
        check("name", check_name, self.name, "pool name")
        if self.type in ("dir", "netfs"):
            check("target_path", check_pool_path, self.target_path, list(roots))
        needs_host = self.type in ("netfs", "iscsi", "rbd")
        if needs_host and not self.hosts:
            found.append(Problem("hosts", Text(gettext_noop("Give the server's host name or address."))))
        for host, port in self.hosts:
            check("hosts", check_host, host)
            check("hosts", check_port, port)
        if self.type == "netfs":
            check("source_dir", check_export, self.source_dir)
        if self.type in ("logical", "rbd"):
            what = "volume group" if self.type == "logical" else "Ceph pool"
            check("source_name", check_name, self.source_name, what)
        if self.type == "disk" and len(self.devices) != 1:
            found.append(Problem("devices",
                                 Text(gettext_noop("Give the one disk this pool partitions, e.g. /dev/sdb."))))
        for device in self.devices:
            check("devices", check_device, device)
        if self.type == "disk" and self.source_format not in DISK_LABELS:
            found.append(Problem("source_format", Text(gettext_noop("Partition table: {first} or {second}."),
                                                           first=DISK_LABELS[0], second=DISK_LABELS[1])))
        if self.type == "iscsi":
            check("iqn", check_iqn, self.iqn)
            if self.initiator_iqn:
                check("initiator_iqn", check_iqn, self.initiator_iqn)
        if self.type == "rbd":
            check("ceph_user", check_ceph_user, self.ceph_user)
        return found

    def to_pool(self) -> StoragePool:
        pool = StoragePool.new(type=self.type, name=self.name)
        for host, port in self.hosts:
            pool.source_hosts.add(SourceHost.new(name=host, port=port))
        for device in self.devices if self.type in ("logical", "disk") else ():
            pool.source_devices.add(SourceDevice.new(path=device))
        if self.type == "iscsi":
            pool.source_devices.add(SourceDevice.new(path=self.iqn))
            if self.initiator_iqn:
                pool.initiator_iqn = self.initiator_iqn
            pool.target_path = ISCSI_TARGET_PATH
        if self.type == "netfs":
            pool.source_dir, pool.source_format = self.source_dir, "nfs"
        if self.type == "logical":
            pool.source_name, pool.source_format = self.source_name, "lvm2"
            pool.target_path = f"/dev/{self.source_name}"
        if self.type == "disk":
            pool.source_format, pool.target_path = self.source_format, "/dev"
        if self.type == "rbd":
            pool.source_name = self.source_name
            pool.auth_type, pool.auth_username = "ceph", self.ceph_user
            pool.auth_secret_uuid = self.secret_uuid or None
        if self.type in ("dir", "netfs"):
            pool.target_path = self.target_path
        return pool


def create_ceph_secret(conn: libvirt.virConnect, pool_name: str, user: str, key: bytes) -> libvirt.virSecret:
    """A private, persistent libvirt secret holding the Ceph key; its value can never be read back."""
    xml = Secret.new(ephemeral=False, private=True, description=f"Ceph key of client.{user} for pool {pool_name}",
                     usage_type="ceph", usage_name=f"client.{user} {pool_name}").to_xml()
    secret = conn.secretDefineXML(xml, 0)
    try:
        secret.setValue(key, 0)
    except libvirt.libvirtError:
        with contextlib.suppress(libvirt.libvirtError):
            secret.undefine()
        raise
    return secret


def define_pool(conn: libvirt.virConnect, spec: PoolSpec, roots: Iterable[str], *, build: bool = False,
                start: bool = True, autostart: bool = False, ceph_key: bytes | None = None) -> str:
    """Define the pool (and its Ceph secret), then build, start and mark it autostart as asked.

    On any failure everything made so far is removed again; the error says what happened.
    """
    problems = spec.problems(roots)
    if spec.type == "rbd" and not spec.secret_uuid and ceph_key is None:
        problems.append(Problem("ceph_key", Text(gettext_noop("Give the Ceph key, or choose an existing secret."))))
    if problems:
        raise StorageInputError(problems)
    try:
        lookup(conn, spec.name)
        raise StorageInputError([Problem("name", Text(gettext_noop("A pool named {name} already exists on this host."),
                                                         name=spec.name))])
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise
    secret: libvirt.virSecret | None = None
    pool: libvirt.virStoragePool | None = None
    step = Term(gettext_noop("define the pool"))
    try:
        if spec.type == "rbd" and ceph_key is not None:
            step = Term(gettext_noop("store the Ceph key as a libvirt secret"))
            secret = create_ceph_secret(conn, spec.name, spec.ceph_user, ceph_key)
            spec = replace(spec, secret_uuid=str(secret.UUIDString()))
        step = Term(gettext_noop("define the pool"))
        pool = conn.storagePoolDefineXML(spec.to_pool().to_xml(), 0)
        if build:
            step = Term(gettext_noop("build the pool"))
            pool.build(0)
        if start:
            step = Term(gettext_noop("start the pool"))
            pool.create(0)
        if autostart:
            step = Term(gettext_noop("mark the pool autostart"))
            pool.setAutostart(1)
        return spec.name
    except libvirt.libvirtError as exc:
        error = translate(exc)
        left = _undo(pool, secret)
        raise reworded(error, gettext_noop("Could not {step}: {error} {left}"), step=step, error=error,
                       left=left) from None


def _undo(pool: libvirt.virStoragePool | None, secret: libvirt.virSecret | None) -> Text:
    left: list[Text] = []
    if pool is not None:
        try:
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        except libvirt.libvirtError as exc:
            log.warning("rollback: could not undefine pool: %s", exc)
            left.append(Text(gettext_noop("the pool definition ({error})"), error=translate(exc)))
    if secret is not None:
        try:
            secret.undefine()
        except libvirt.libvirtError as exc:
            log.warning("rollback: could not undefine secret: %s", exc)
            left.append(Text(gettext_noop("the secret {uuid} ({error})"), uuid=secret.UUIDString(),
                             error=translate(exc)))
    if left:
        return Text(gettext_noop("Could not remove {what}: please remove it by hand."), what=and_joined(left))
    return Text(gettext_noop("Nothing was left behind."))


# --- lifecycle ------------------------------------------------------------------------


def pool_action(conn: libvirt.virConnect, name: str, action: str) -> str:
    """Run one lifecycle action; returns what happened, in words."""
    pool = lookup(conn, name)
    if action == "build":
        pool.build(0)
        return Text(gettext_noop("Pool {name} built."), name=name)
    if action == "start":
        pool.create(0)
        return Text(gettext_noop("Pool {name} started."), name=name)
    if action == "stop":
        pool.destroy()
        return Text(gettext_noop("Pool {name} stopped."), name=name)
    if action == "refresh":
        pool.refresh(0)
        return Text(gettext_noop("Pool {name} refreshed."), name=name)
    if action in ("autostart", "no-autostart"):
        pool.setAutostart(1 if action == "autostart" else 0)
        if action == "autostart":
            return Text(gettext_noop("Pool {name} starts with the host."), name=name)
        return Text(gettext_noop("Pool {name} no longer starts with the host."), name=name)
    raise InvalidInput(gettext_noop("Unknown pool action {action}."), action=repr(action))


@dataclass
class PoolDeleteReport:
    name: str
    stopped: bool = False
    volumes_deleted: list[str] = field(default_factory=list)
    storage_deleted: bool = False
    undefined: bool = False

    def words(self) -> Text:
        done: list[Text] = []
        if self.stopped:
            done.append(Text(gettext_noop("stopped")))
        if self.volumes_deleted:
            done.append(Text(gettext_noop("{count} volume(s) deleted"), count=len(self.volumes_deleted)))
        if self.storage_deleted:
            done.append(Text(gettext_noop("its storage deleted")))
        done.append(Text(gettext_noop("definition removed")) if self.undefined
                    else Text(gettext_noop("gone (it was transient)")))
        return Text(gettext_noop("Pool {name}: {done}."), name=self.name, done=joined(done, ", "))


def delete_pool(conn: libvirt.virConnect, name: str, *, delete_storage: bool = False) -> PoolDeleteReport:
    """Stop and undefine the pool. Only with delete_storage are its volumes and the storage itself
    (directory, volume group, partition table) deleted as well."""
    pool = lookup(conn, name)
    report = PoolDeleteReport(name)
    persistent = bool(pool.isPersistent())
    if delete_storage:
        if not pool.isActive():
            pool.create(0)  # volumes can only be listed and deleted on an active pool
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
            report.volumes_deleted.append(str(vol.name()))
    if pool.isActive():
        pool.destroy()
        report.stopped = True
    if delete_storage and persistent:  # a transient pool is gone once stopped
        try:
            pool.delete(0)
        except libvirt.libvirtError as exc:
            raise InvalidState(gettext_noop("{done} Deleting the storage itself failed: {error}"), done=report.words(),
                               error=translate(exc)) from None
        report.storage_deleted = True
    if persistent:
        pool.undefine()
        report.undefined = True
    return report
