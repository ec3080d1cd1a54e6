"""The cloud-init seed of a VM made from a cloud image: checks of what the form gives, and the NoCloud ISO.

The seed is an ISO 9660 image with Joliet and Rock Ridge names, volume label `cidata`, holding
`meta-data`, `user-data` and (when the NIC's MAC is known) `network-config`; cloud-init finds it by
its label. It is built in memory (pycdlib, no genisoimage) and reaches the host as a volume through a
libvirt stream, so it works over every transport.

Every value that goes into YAML is emitted by yaml.safe_dump, never formatted into a string. Each
refusal is a FieldProblem naming the form field: hostname, user, ssh_keys, password, user_data,
address, gateway, dns.

Which rule applies where:
- `parse_ssh_keys` checks each key; an empty field is allowed there. That at least one key or a
  password is given involves two fields: `check_login` (the form's clean(), and build_seed again).
- The admin's extra user-data is merged into the panel's own #cloud-config mapping (one document, no
  MIME multipart): cloud-init's merging of several parts lets a later part replace an earlier part's
  keys, so instead `check_user_data` refuses the keys the panel sets itself, with the reason.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import re
import secrets
import struct
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

import libvirt
import pycdlib
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from virt.devices import FieldProblem
from virt.errors import BadValue, Term, Text, Unreachable, gettext_noop, translate
from virt.shacrypt import ITOA64, sha512_crypt
from virt.storage import lookup
from virt.streams import SEND_BYTES, Upload
from virt.xml.codecs import iec

LABEL = "cidata"
USER_DATA_MAX = 16 * 1024  # bytes of the admin's extra user-data
USER_DATA_DEPTH = 32  # nesting of mappings and lists in it
MAX_KEYS = 20
MAX_KEY_LINE = 16 * 1024  # an RSA key of 16384 bits is about 2.8 KB of base64
MIN_RSA_BITS, MAX_RSA_BITS = 2048, 16384
PASSWORD_MIN, PASSWORD_MAX = 8, 128
SUDO_ALL = "ALL=(ALL) NOPASSWD:ALL"

# The keys of the panel's own #cloud-config; the admin's user-data may not set them, for these reasons.
PANEL_KEYS = {
    "users": gettext_noop("the panel creates the user from the User field, and a users list here would replace that "
                          "user "
             "and its ssh keys"),
    "ssh_authorized_keys": gettext_noop("ssh keys come from the SSH keys field and belong to the panel's user"),
    "chpasswd": gettext_noop("passwords come from the Password field, stored hashed; chpasswd could set, expire or "
                             "print them"),
    "password": gettext_noop("passwords come from the Password field, stored hashed"),
    "ssh_pwauth": gettext_noop("password log-in over ssh is turned on exactly when a password is given"),
    "hostname": gettext_noop("the host name comes from the Host name field"),
    "fqdn": gettext_noop("the host name comes from the Host name field"),
    "preserve_hostname": gettext_noop("the host name comes from the Host name field"),
    "prefer_fqdn_over_hostname": gettext_noop("the host name comes from the Host name field"),
    "manage_etc_hosts": gettext_noop("the panel has cloud-init write /etc/hosts for the host name"),
    "growpart": gettext_noop("the panel grows the root partition to the disk size chosen"),
    "resize_rootfs": gettext_noop("the panel grows the root file system to the disk size chosen"),
}

# The key types accepted, each with its curve (ECDSA) or "".
KEY_TYPES: dict[str, str] = {
    "ssh-ed25519": "",
    "ssh-rsa": "",
    "ecdsa-sha2-nistp256": "nistp256",
    "ecdsa-sha2-nistp384": "nistp384",
    "ecdsa-sha2-nistp521": "nistp521",
    "sk-ssh-ed25519@openssh.com": "",
    "sk-ecdsa-sha2-nistp256@openssh.com": "nistp256",
}
CURVES: dict[str, ec.EllipticCurve] = {"nistp256": ec.SECP256R1(), "nistp384": ec.SECP384R1(),
                                       "nistp521": ec.SECP521R1()}
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Accounts every Debian/Ubuntu/Fedora image already has: cloud-init would change them, not make a new user.
_SYSTEM_USERS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
    "backup", "list", "irc", "gnats", "nobody", "nogroup", "systemd-network", "systemd-resolve",
    "systemd-timesync", "messagebus", "sshd", "_apt", "polkitd", "syslog", "adm", "sudo", "wheel", "halt",
    "shutdown", "operator", "ftp", "admin", "staff", "users", "ssh", "tss", "uuidd", "tcpdump"})
_HASH_RE = re.compile(r"\$6\$(rounds=[0-9]+\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}")
_INSTANCE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class StaticNetwork:
    """A fixed address instead of DHCP: made by `static_network`, which checks it."""

    address: str  # with its prefix: "192.0.2.10/24", "2001:db8::10/64"
    gateway: str = ""  # empty: no default route
    dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeedSpec:
    hostname: str  # checked by check_hostname: "web-1" or "web-1.example.org"
    user: str  # checked by check_user
    ssh_keys: tuple[str, ...] = ()  # from parse_ssh_keys
    password_hash: str = ""  # from hash_password; empty: no password, the account stays locked
    user_data: str = ""  # from check_user_data
    network: StaticNetwork | None = None  # None: DHCP
    mac: str = ""  # the first NIC's MAC: network-config matches it; empty: cloud-init's fallback (DHCP)


# ---- the form's fields -------------------------------------------------------------------------------

def check_hostname(text: str) -> str:
    """An RFC 1123 host name, lower-cased: labels of 1-63 letters, digits and inner hyphens, 253 in all."""
    name = text.strip()
    if not name:
        raise FieldProblem("hostname", gettext_noop("Give a host name."))
    if not name.isascii():
        raise FieldProblem("hostname", gettext_noop("Use only the letters a-z, digits, '-' and '.' in the host name "
                                                    "(no accented or other non-ASCII letters)."))
    name = name.lower()
    if len(name) > 253:
        raise FieldProblem("hostname", gettext_noop("A host name has at most 253 characters; this one has {count}."),
                           count=len(name))
    for label in name.split("."):
        if not label:
            raise FieldProblem("hostname", gettext_noop("The host name has an empty part: no leading, trailing or "
                                                        "double dots."))
        if len(label) > 63:
            raise FieldProblem("hostname", gettext_noop("Each dot-separated part of a host name has at most 63 "
                                                        "characters; {part}... has {count}."), part=label[:20],
                               count=len(label))
        if not _LABEL_RE.fullmatch(label):
            bad = sorted({c for c in label if not (c.isalnum() or c == "-")})
            if bad:
                raise FieldProblem("hostname", gettext_noop("A host name cannot contain {characters}: use letters a-z, "
                                                            "digits, '-' and '.'."),
                                   characters=" ".join(repr(c) for c in bad))
            raise FieldProblem("hostname", gettext_noop("The part {part} of the host name starts or ends with '-': "
                                                        "a hyphen may only stand between letters or digits."),
                               part=repr(label))
    if name.rsplit(".", 1)[-1].isdigit():
        raise FieldProblem("hostname", gettext_noop("The last part of a host name cannot be all digits (it would read "
                                                    "as an IP address)."))
    return name


def check_user(text: str) -> str:
    """The login the panel creates: a new account, never one the image already has (root, daemon, ...)."""
    name = text.strip()
    if not name:
        raise FieldProblem("user", gettext_noop("Give a user name."))
    if not _USER_RE.fullmatch(name):
        raise FieldProblem("user", gettext_noop("A user name is 1 to 32 of lowercase letters, digits, '_' and '-', "
                                                "starting with a letter or '_'."))
    if name in _SYSTEM_USERS:
        raise FieldProblem("user", gettext_noop("{name} is an account or group the system already has: choose another "
                                                "name."), name=name)
    return name


def parse_ssh_keys(text: str) -> tuple[str, ...]:
    """One OpenSSH public key per line ("type base64 [comment]"); blank lines and '#' lines are skipped.

    Each key's base64 must decode to a key of the stated type (RSA: 2048 bits or more; points on the
    curve), with no options before it. An empty field gives (): see check_login for the key-or-password rule.
    Returns each key as "type base64[ comment]", duplicates dropped."""
    keys: list[str] = []
    # Split on line feeds only: str.splitlines() would also cut at control characters inside a comment.
    lines = [(n, line.strip()) for n, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if len(lines) > MAX_KEYS:
        raise FieldProblem("ssh_keys", gettext_noop("At most {limit} keys; there are {count}."), limit=MAX_KEYS,
                           count=len(lines))
    for number, line in lines:
        key = _parse_key(line, Text(gettext_noop("Line {number}"), number=number))
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _parse_key(line: str, where: str) -> str:
    if len(line) > MAX_KEY_LINE:
        raise FieldProblem("ssh_keys", gettext_noop("{where}: too long for a public key ({count} characters)."),
                           where=where, count=len(line))
    parts = line.split(None, 2)
    kind = parts[0]
    if kind not in KEY_TYPES:
        if "=" in kind or "," in kind or kind in {"restrict", "no-pty", "cert-authority", "no-port-forwarding"}:
            raise FieldProblem("ssh_keys", gettext_noop("{where}: options before the key ({options}) are not accepted: "
                                                        "paste the bare public key, starting with its type."),
                               where=where, options=kind[:40])
        raise FieldProblem("ssh_keys", gettext_noop("{where}: unknown key type {kind}; use one of {types}."),
                           where=where, kind=repr(kind[:40]), types=", ".join(KEY_TYPES))
    if len(parts) < 2:
        raise FieldProblem("ssh_keys", gettext_noop("{where}: the key's base64 part is missing after {kind}."),
                           where=where, kind=kind)
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise FieldProblem("ssh_keys", gettext_noop("{where}: the key's second part is not valid base64 "
                                                    "(was it cut or wrapped when copied?)."), where=where) from None
    try:
        _check_blob(kind, blob)
    except (ValueError, struct.error, IndexError) as exc:
        raise FieldProblem("ssh_keys", gettext_noop("{where}: {error}"), where=where,
                           error=exc if isinstance(exc, BadValue) else str(exc)) from None
    comment = parts[2] if len(parts) > 2 else ""
    if any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in comment):
        raise FieldProblem("ssh_keys", gettext_noop("{where}: the key's comment contains control characters."),
                           where=where)
    return f"{kind} {parts[1]}" + (f" {comment}" if comment else "")


class _Reader:
    """The SSH wire format of a public key: length-prefixed strings and integers."""

    def __init__(self, blob: bytes) -> None:
        self.blob, self.pos = blob, 0

    def string(self) -> bytes:
        if self.pos + 4 > len(self.blob):
            raise BadValue(gettext_noop("the key data is cut short."))
        (size,) = struct.unpack(">I", self.blob[self.pos:self.pos + 4])
        self.pos += 4
        if self.pos + size > len(self.blob):
            raise BadValue(gettext_noop("the key data is cut short."))
        self.pos += size
        return self.blob[self.pos - size:self.pos]

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def end(self) -> None:
        if self.pos != len(self.blob):
            raise BadValue(gettext_noop("the key data goes on after the key."))


def _check_blob(kind: str, blob: bytes) -> None:
    reader = _Reader(blob)
    inner = reader.string()
    if inner != kind.encode():
        shown = inner[:40].decode("ascii", "replace")
        raise BadValue(gettext_noop("the line says {kind} but the key data is of type {shown}."), kind=kind,
                       shown=repr(shown))
    if kind == "ssh-rsa":
        e, n = reader.mpint(), reader.mpint()
        if n.bit_length() < MIN_RSA_BITS:
            raise BadValue(gettext_noop("an RSA key of {bits} bits is too weak: use at least {least} bits "
                                        "(or an ed25519 key)."), bits=n.bit_length(), least=MIN_RSA_BITS)
        if n.bit_length() > MAX_RSA_BITS:
            raise BadValue(gettext_noop("an RSA key of more than {most} bits is not accepted."), most=MAX_RSA_BITS)
        rsa.RSAPublicNumbers(e, n).public_key()  # ValueError for a nonsensical exponent
    elif kind in {"ssh-ed25519", "sk-ssh-ed25519@openssh.com"}:
        point = reader.string()
        if len(point) != 32:
            raise BadValue(gettext_noop("an ed25519 key has 32 bytes."))
        ed25519.Ed25519PublicKey.from_public_bytes(point)
    else:
        curve = KEY_TYPES[kind]
        if reader.string() != curve.encode():
            raise BadValue(gettext_noop("the key data names another curve than {curve}."), curve=curve)
        ec.EllipticCurvePublicKey.from_encoded_point(CURVES[curve], reader.string())  # ValueError: not on it
    if kind.startswith("sk-") and not reader.string().startswith(b"ssh:"):
        raise BadValue(gettext_noop("a security-key key's application should start with 'ssh:'."))
    reader.end()


def check_login(ssh_keys: tuple[str, ...], password_hash: str) -> None:
    """At least one way in: without a key and a password nobody could log in to the new VM."""
    if not ssh_keys and not password_hash:
        raise FieldProblem("ssh_keys", gettext_noop("Give at least one ssh public key, or a password: otherwise nobody "
                                                    "can log in to the new VM."))


def check_user_data(text: str) -> str:
    """Extra #cloud-config for the admin (empty: none): a YAML mapping of at most 16 KiB, without
    anchors or aliases (a few lines of aliases expand to gigabytes), without the panel's own keys.
    Returns the text with Unix line ends."""
    text = text.replace("\r\n", "\n")
    if not text.strip():
        return ""
    size = len(text.encode())
    if size > USER_DATA_MAX:
        raise FieldProblem("user_data", gettext_noop("User-data has at most {limit}; this has {size}."),
                           limit=iec(USER_DATA_MAX), size=iec(size))
    if text.split("\n", 1)[0].rstrip() != "#cloud-config":
        raise FieldProblem("user_data", gettext_noop("User-data must start with the line #cloud-config (other formats, "
                                                     "such as scripts, are not accepted)."))
    _check_events(text)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FieldProblem("user_data", gettext_noop("User-data is not valid YAML: {error}"),
                           error=_yaml_words(exc)) from None
    if doc is None:
        return text
    if not isinstance(doc, dict):
        raise FieldProblem("user_data", gettext_noop("User-data must be a YAML mapping (key: value lines), "
                                                     "not a {kind}."), kind=type(doc).__name__)
    for key in doc:
        if not isinstance(key, str):
            raise FieldProblem("user_data", gettext_noop("User-data's top-level keys must be words, not {key}."),
                               key=repr(key))
        if key in PANEL_KEYS:
            raise FieldProblem("user_data", gettext_noop("User-data cannot set {key}: {why}."), key=key,
                               why=Term(PANEL_KEYS[key]))
    return text


def _check_events(text: str) -> None:
    """Refuse anchors and aliases, and nesting deeper than USER_DATA_DEPTH, before anything is built
    (the event parser is not recursive; composing a deeply nested document would be)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                mark = event.start_mark
                if mark is not None:
                    raise FieldProblem("user_data", gettext_noop("User-data cannot use YAML anchors or aliases (&, *): "
                                                                 "line {line}, write the values out."),
                                       line=mark.line + 1)
                raise FieldProblem("user_data", gettext_noop("User-data cannot use YAML anchors or aliases (&, *): "
                                                             "write the values out."))
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > USER_DATA_DEPTH:
                    raise FieldProblem("user_data", gettext_noop("User-data is nested more than {depth} levels deep."),
                                       depth=USER_DATA_DEPTH)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        raise FieldProblem("user_data", gettext_noop("User-data is not valid YAML: {error}"),
                           error=_yaml_words(exc)) from None


def _yaml_words(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return Text(gettext_noop("{problem} (line {line})."), problem=exc.problem or exc.context or "error",
                    line=exc.problem_mark.line + 1)
    return Text.of(str(exc).splitlines()[0])


def static_network(address: str, gateway: str = "", dns: str = "") -> StaticNetwork:
    """Checks a fixed address ("192.0.2.10/24"), its gateway (in the same network) and up to 3 DNS servers."""
    try:
        iface = ipaddress.ip_interface(address.strip())
    except ValueError:
        raise FieldProblem("address",
                           gettext_noop("Give the address with its prefix length, such as 192.0.2.10/24.")) from None
    if "/" not in address:
        raise FieldProblem("address", gettext_noop("Give the prefix length too, such as {ip}/24."), ip=str(iface.ip))
    ip, net = iface.ip, iface.network
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_link_local or ip.is_reserved:
        raise FieldProblem("address", gettext_noop("{ip} cannot be a VM's address (loopback, multicast, link-local or "
                                                   "reserved)."), ip=str(ip))
    if net.num_addresses > 2 and ip in {net.network_address, net.broadcast_address} and ip.version == 4:
        if ip == net.network_address:
            raise FieldProblem("address", gettext_noop("{ip} is the network's own address in {net}: choose a host "
                                                       "address."), ip=str(ip), net=str(net))
        raise FieldProblem("address", gettext_noop("{ip} is the network's own broadcast address in {net}: choose a "
                                                   "host "
                                                   "address."), ip=str(ip), net=str(net))
    gw = ""
    if gateway.strip():
        try:
            gw_ip = ipaddress.ip_address(gateway.strip())
        except ValueError:
            raise FieldProblem("gateway", gettext_noop("The gateway is an IP address, such as 192.0.2.1.")) from None
        if gw_ip.version != ip.version or gw_ip not in net:
            raise FieldProblem("gateway", gettext_noop("The gateway must be in the address's network {net}."),
                               net=str(net))
        if gw_ip == ip:
            raise FieldProblem("gateway", gettext_noop("The gateway cannot be the VM's own address."))
        gw = str(gw_ip)
    servers: list[str] = []
    for word in dns.replace(",", " ").split():
        try:
            servers.append(str(ipaddress.ip_address(word)))
        except ValueError:
            raise FieldProblem("dns", gettext_noop("{word} is not an IP address: list DNS servers by address."),
                               word=repr(word[:40])) from None
    if len(servers) > 3:
        raise FieldProblem("dns", gettext_noop("At most 3 DNS servers."))
    return StaticNetwork(str(iface), gw, tuple(servers))


# ---- passwords ---------------------------------------------------------------------------------

HASH_ROUNDS = 50_000  # about 45 ms here in pure Python; glibc's default of 5000 is ten times cheaper to guess


def hash_password(text: str, *, salt: str = "", rounds: int | None = HASH_ROUNDS) -> str:
    """The password as a SHA-512 crypt hash ("$6$rounds=50000$salt$..."; virt.shacrypt), 8-128 characters."""
    if not PASSWORD_MIN <= len(text) <= PASSWORD_MAX:
        raise FieldProblem("password", gettext_noop("A password has {least} to {most} characters; this one has "
                                                    "{count}."), least=PASSWORD_MIN, most=PASSWORD_MAX, count=len(text))
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise FieldProblem("password", gettext_noop("A password cannot contain control characters (such as a line "
                                                    "break)."))
    salt = salt or "".join(secrets.choice(ITOA64) for _ in range(16))
    return sha512_crypt(text.encode(), salt, rounds)


# ---- the seed --------------------------------------------------------------------------------------

def seed_files(spec: SeedSpec, instance_id: str) -> dict[str, str]:
    """The seed's files by name: meta-data, user-data and (with a MAC) network-config."""
    hostname = check_hostname(spec.hostname)
    user = check_user(spec.user)
    check_login(spec.ssh_keys, spec.password_hash)
    if spec.password_hash and not _HASH_RE.fullmatch(spec.password_hash):
        raise ValueError("password_hash is not a SHA-512 crypt hash: make it with hash_password")
    if not _INSTANCE_ID_RE.fullmatch(instance_id):
        raise ValueError(f"instance id {instance_id!r}: letters, digits, '.', '_', '-' (the VM's UUID)")
    account: dict[str, Any] = {"name": user, "sudo": SUDO_ALL, "shell": "/bin/bash",
                               "lock_passwd": not spec.password_hash}
    if spec.password_hash:
        account["passwd"] = spec.password_hash
    if spec.ssh_keys:
        account["ssh_authorized_keys"] = list(spec.ssh_keys)
    config: dict[str, Any] = {"hostname": hostname.split(".", 1)[0]}
    if "." in hostname:
        config["fqdn"] = hostname
    config["manage_etc_hosts"] = True
    config["users"] = [account]
    if spec.password_hash:
        config["ssh_pwauth"] = True
    config["growpart"] = {"mode": "auto", "devices": ["/"]}
    config["resize_rootfs"] = True
    extra = yaml.safe_load(check_user_data(spec.user_data)) if spec.user_data else None
    if isinstance(extra, dict):
        config.update(extra)  # check_user_data refused every key the panel sets
    files = {"meta-data": _dump({"instance-id": instance_id, "local-hostname": hostname}),
             "user-data": "#cloud-config\n" + _dump(config)}
    network = _network_config(spec)
    if network is not None:
        files["network-config"] = _dump(network)
    return files


def _network_config(spec: SeedSpec) -> dict[str, Any] | None:
    """Version 2, the first NIC matched by its MAC. Without a MAC: None, and cloud-init's own fallback
    (DHCP on the first NIC) applies; a static address needs the MAC, to be sure which NIC gets it."""
    if not spec.mac:
        if spec.network is not None:
            raise ValueError("a static address needs the NIC's MAC")
        return None
    mac = spec.mac.lower()
    if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac):
        raise ValueError(f"MAC {spec.mac!r}")
    nic: dict[str, Any] = {"match": {"macaddress": mac}}
    if spec.network is None:
        nic["dhcp4"] = True
    else:
        net = static_network(spec.network.address, spec.network.gateway, " ".join(spec.network.dns))
        nic["addresses"] = [net.address]
        if net.gateway:  # "to: default" is newer than Debian 12's cloud-init (22.4): the explicit network
            default = "0.0.0.0/0" if ipaddress.ip_address(net.gateway).version == 4 else "::/0"
            nic["routes"] = [{"to": default, "via": net.gateway}]
        if net.dns:
            nic["nameservers"] = {"addresses": list(net.dns)}
    return {"version": 2, "ethernets": {"nic0": nic}}


def _dump(doc: dict[str, Any]) -> str:
    return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16))


# The ISO 9660 (level 1) name of each file; Rock Ridge and Joliet carry the real name.
_ISO_NAMES = {"meta-data": "/METADATA.;1", "user-data": "/USERDATA.;1", "network-config": "/NETCFG.;1"}


def build_seed(spec: SeedSpec, instance_id: str) -> bytes:
    """The NoCloud seed ISO (label cidata; ISO 9660 + Joliet + Rock Ridge), built in memory."""
    files = seed_files(spec, instance_id)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, vol_ident=LABEL, joliet=3, rock_ridge="1.09")
    for name, text in files.items():
        data = text.encode()
        iso.add_fp(io.BytesIO(data), len(data), iso_path=_ISO_NAMES[name], rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_seed(data: bytes) -> dict[str, str]:
    """The files of a seed ISO by their Rock Ridge names (what Linux mounts show); ValueError when the
    volume label is not cidata (cloud-init would not find it)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        label = bytes(iso.pvd.volume_identifier).decode().rstrip()
        if label != LABEL:
            raise ValueError(f"the volume label is {label!r}, not {LABEL}")
        files: dict[str, str] = {}
        for child in iso.list_children(rr_path="/"):
            if not child.is_file():
                continue
            if child.rock_ridge is None:
                raise ValueError("the seed has no Rock Ridge names")
            name = bytes(child.rock_ridge.name()).decode()
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            files[name] = out.getvalue().decode()
        return files
    finally:
        iso.close()


# ---- on the host -----------------------------------------------------------------------------------

def upload_seed(conn: libvirt.virConnect, pool_name: str, volume_name: str, data: bytes, *,
                timeout: float) -> str:
    """The seed as a new raw volume of len(data) bytes in the pool, written through a libvirt stream (any
    transport); returns the volume's path. Past `timeout` seconds (checked between chunks of SEND_BYTES;
    a send that hangs is ended by libvirt's keepalive) the stream is aborted. On any failure the partial
    volume is deleted (virt.streams.Upload); a taken name is a StorageInputError on the field "name"."""
    deadline = time.monotonic() + timeout
    try:
        upload = Upload.begin(conn, pool_name, volume_name, len(data))
    except libvirt.libvirtError as exc:
        raise translate(exc) from None
    try:
        for start in range(0, len(data), SEND_BYTES):
            if time.monotonic() > deadline:
                raise Unreachable(gettext_noop("no answer within {seconds} s while uploading the seed"),
                                  seconds=f"{timeout:g}")
            upload.send(data[start:start + SEND_BYTES])
        upload.finish()
    except BaseException as exc:
        upload.abort()
        if isinstance(exc, libvirt.libvirtError):
            raise translate(exc) from None
        raise
    try:
        return str(lookup(conn, pool_name).storageVolLookupByName(volume_name).path())
    except libvirt.libvirtError as exc:
        raise translate(exc) from None


def remove_seed(conn: libvirt.virConnect, pool_name: str, name: str) -> bool:
    """Delete the seed volume; False when it was already gone."""
    try:
        vol = lookup(conn, pool_name).storageVolLookupByName(name)
        vol.delete(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return False
        raise translate(exc) from None
    return True
