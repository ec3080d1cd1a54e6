"""The cloud-init seed (virt/cloudinit.py): the ISO read back byte-wise, hostile input refused with the
field's name and words, SHA-512 crypt against known vectors, and the seed's volume on the test driver."""

from __future__ import annotations

import base64
import io
import shutil
import struct
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import libvirt
import pycdlib
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.conftest import need
from virt.cloudinit import (
    SeedSpec,
    StaticNetwork,
    build_seed,
    check_hostname,
    check_login,
    check_user,
    check_user_data,
    hash_password,
    parse_ssh_keys,
    read_seed,
    remove_seed,
    static_network,
    upload_seed,
)
from virt.devices import FieldProblem
from virt.errors import VirtError
from virt.shacrypt import sha512_crypt

MAC = "52:54:00:12:34:56"
UUID = "0b5e4a1c-1f6e-4f6a-9d57-3f1f0c1d2e3f"


def openssh(key: Any) -> str:
    return str(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode())


def wire(*parts: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(p)) + p for p in parts)).decode()


@cache
def keys() -> dict[str, str]:
    """One public key line per accepted type (and a weak RSA one), made here."""
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_raw = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    p256 = ec.generate_private_key(ec.SECP256R1())
    point = p256.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {
        "ed25519": openssh(ed) + " alice@laptop",
        "rsa": openssh(rsa.generate_private_key(65537, 2048)),
        "rsa1024": openssh(rsa.generate_private_key(65537, 1024)),
        "p256": openssh(p256),
        "p384": openssh(ec.generate_private_key(ec.SECP384R1())),
        "p521": openssh(ec.generate_private_key(ec.SECP521R1())) + " with a longer comment",
        "sk-ed25519": "sk-ssh-ed25519@openssh.com " + wire(b"sk-ssh-ed25519@openssh.com", ed_raw, b"ssh:"),
        "sk-p256": "sk-ecdsa-sha2-nistp256@openssh.com " + wire(b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256",
                                                               point, b"ssh:"),
    }


def iso_of(data: bytes) -> pycdlib.PyCdlib:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    return iso


# ---- the seed, read back ---------------------------------------------------------------------------

def test_seed_round_trip_with_keys_password_and_user_data() -> None:
    password_hash = hash_password("correct horse battery")
    spec = SeedSpec(hostname="Web-1.Example.org", user="alice", ssh_keys=parse_ssh_keys(keys()["ed25519"]),
                    password_hash=password_hash,
                    user_data=check_user_data("#cloud-config\npackages: [nginx]\nruncmd:\n  - [touch, /tmp/x]\n"),
                    mac=MAC)
    data = build_seed(spec, UUID)
    files = read_seed(data)
    assert set(files) == {"meta-data", "user-data", "network-config"}
    assert yaml.safe_load(files["meta-data"]) == {"instance-id": UUID, "local-hostname": "web-1.example.org"}
    assert files["user-data"].startswith("#cloud-config\n")
    user_data = yaml.safe_load(files["user-data"])
    assert user_data == {
        "hostname": "web-1", "fqdn": "web-1.example.org", "manage_etc_hosts": True,
        "users": [{"name": "alice", "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash", "lock_passwd": False,
                   "passwd": password_hash, "ssh_authorized_keys": [keys()["ed25519"]]}],
        "ssh_pwauth": True, "growpart": {"mode": "auto", "devices": ["/"]}, "resize_rootfs": True,
        "packages": ["nginx"], "runcmd": [["touch", "/tmp/x"]],
    }
    assert list(user_data)[-2:] == ["packages", "runcmd"]  # the panel's part first, the admin's after it
    assert yaml.safe_load(files["network-config"]) == {
        "version": 2, "ethernets": {"nic0": {"match": {"macaddress": MAC}, "dhcp4": True}}}

    iso = iso_of(data)
    assert bytes(iso.pvd.volume_identifier).decode().rstrip() == "cidata"
    assert bytes(iso.joliet_vd.volume_identifier).decode("utf-16-be").rstrip() == "cidata"
    assert iso.has_rock_ridge() and iso.has_joliet()
    joliet = {bytes(c.file_identifier()).decode("utf-16-be") for c in iso.list_children(joliet_path="/")
              if c.is_file()}
    assert joliet == {"meta-data", "user-data", "network-config"}
    plain = {bytes(c.file_identifier()).decode() for c in iso.list_children(iso_path="/") if c.is_file()}
    assert plain == {"METADATA.;1", "USERDATA.;1", "NETCFG.;1"}
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, joliet_path="/user-data")
    assert out.getvalue().decode() == files["user-data"]  # Joliet and Rock Ridge name the same bytes
    iso.close()


def test_seed_keys_only_static_network_and_no_mac() -> None:
    spec = SeedSpec(hostname="db", user="ops", ssh_keys=parse_ssh_keys(keys()["rsa"] + "\n" + keys()["p256"]),
                    network=static_network("192.0.2.10/24", "192.0.2.1", "192.0.2.53, 2001:db8::53"), mac=MAC)
    files = read_seed(build_seed(spec, UUID))
    user_data = yaml.safe_load(files["user-data"])
    assert user_data["hostname"] == "db" and "fqdn" not in user_data and "ssh_pwauth" not in user_data
    assert user_data["users"][0]["lock_passwd"] is True and "passwd" not in user_data["users"][0]
    assert user_data["users"][0]["ssh_authorized_keys"] == [keys()["rsa"], keys()["p256"]]
    assert yaml.safe_load(files["network-config"])["ethernets"]["nic0"] == {
        "match": {"macaddress": MAC}, "addresses": ["192.0.2.10/24"],
        "routes": [{"to": "0.0.0.0/0", "via": "192.0.2.1"}],
        "nameservers": {"addresses": ["192.0.2.53", "2001:db8::53"]}}
    # Without the NIC's MAC: no network-config, cloud-init's fallback (DHCP on the first NIC) applies.
    assert set(read_seed(build_seed(SeedSpec("db", "ops", password_hash=hash_password("12345678")), UUID))) == {
        "meta-data", "user-data"}
    with pytest.raises(ValueError, match="MAC"):
        build_seed(SeedSpec("db", "ops", ssh_keys=spec.ssh_keys, network=spec.network), UUID)


def test_values_are_yaml_not_formatted_text() -> None:
    """A comment that looks like YAML stays one string in the seed."""
    line = keys()["ed25519"].split(" alice")[0] + " x: y\n- z # {a: b}"
    keys_ = parse_ssh_keys(line.replace("\n", " "))
    files = read_seed(build_seed(SeedSpec("web", "alice", ssh_keys=keys_), UUID))
    assert yaml.safe_load(files["user-data"])["users"][0]["ssh_authorized_keys"] == list(keys_)


def test_blkid_sees_the_label(tmp_path: Path) -> None:
    """What cloud-init itself looks for: the filesystem label cidata (blkid reads Joliet's when present)."""
    need(shutil.which("blkid") is not None, "blkid (util-linux)")
    path = tmp_path / "seed.iso"
    path.write_bytes(build_seed(SeedSpec("web", "alice", ssh_keys=parse_ssh_keys(keys()["p384"])), UUID))
    found = subprocess.run(["blkid", "-p", "-o", "export", str(path)], capture_output=True, text=True, check=True)
    assert "LABEL=cidata" in found.stdout.splitlines() and "TYPE=iso9660" in found.stdout.splitlines()


def test_read_seed_refuses_another_label() -> None:
    iso = pycdlib.PyCdlib()
    iso.new(vol_ident="OTHER", rock_ridge="1.09")
    out = io.BytesIO()
    iso.write_fp(out)
    with pytest.raises(ValueError, match="cidata"):
        read_seed(out.getvalue())


# ---- accepted input ----------------------------------------------------------------------------------

def test_every_key_type_is_accepted_and_blank_lines_and_duplicates_are_dropped() -> None:
    lines = list(keys().values())
    lines.remove(keys()["rsa1024"])
    text = "\n\n".join(lines) + "\r\n# a comment line\n" + lines[0] + "\n"
    assert parse_ssh_keys(text) == tuple(lines)
    assert parse_ssh_keys("  \n") == ()


def test_good_names_and_networks() -> None:
    assert check_hostname(" web-01 ") == "web-01"
    assert check_hostname("a" * 63 + ".b1") == "a" * 63 + ".b1"
    assert check_user("deploy_2") == "deploy_2"
    assert check_user_data("") == "" and check_user_data("#cloud-config\r\n") == "#cloud-config\n"
    assert static_network("2001:db8::10/64", "2001:db8::1") == StaticNetwork("2001:db8::10/64", "2001:db8::1", ())
    check_login((), "$6$x")  # a password alone is enough


# ---- hostile input: refused with the field and words ------------------------------------------------

def key_cases() -> list[tuple[str, str]]:
    k = keys()
    ed_b64 = k["ed25519"].split()[1]
    return [
        (f'command="rm -rf /" {k["ed25519"]}', "options before the key"),
        (f"no-pty,from=\"*\" {k['ed25519']}", "options before the key"),
        (f"ssh-rsa {ed_b64}", "the key data is of type 'ssh-ed25519'"),
        ("ssh-ed25519 AAAA!!notbase64", "not valid base64"),
        ("ssh-ed25519 " + ed_b64[:-1], "not valid base64"),
        ("ssh-ed25519 " + ed_b64[:-8], "cut short"),
        ("ssh-ed25519 " + wire(b"ssh-ed25519", b"short"), "32 bytes"),
        ("ssh-ed25519 " + wire(b"ssh-ed25519", b"x" * 32, b"more"), "goes on after the key"),
        ("ecdsa-sha2-nistp256 " + wire(b"ecdsa-sha2-nistp256", b"nistp256", b"\x04" + b"\x01" * 64),
         "Line 1:"),  # not a point on the curve
        (k["rsa1024"], "1024 bits is too weak"),
        ("ssh-dss AAAAB3NzaC1kc3M=", "unknown key type 'ssh-dss'"),
        ("ssh-ed25519", "base64 part is missing"),
        (k["ed25519"] + "\x1b[2Jevil", "control characters"),
        (k["ed25519"] + "\u202eevil", "control characters"),
        ("\n".join([k["ed25519"]] * 21), "At most 20 keys; there are 21"),
        (k["ed25519"] + "\n\nssh-rsa", "Line 3:"),
    ]


def hostile() -> list[tuple[str, Callable[[str], object], str, str]]:
    big = "#cloud-config\nwrite_files:\n" + "  - {path: /tmp/f, content: " + "x" * 17000 + "}\n"
    bomb = "#cloud-config\na: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n"
    return [
        *[("hostname", check_hostname, text, words) for text, words in [
            ("-x", "starts or ends with '-'"), ("a_b", "cannot contain '_'"), ("x" * 64, "at most 63 characters"),
            ("a..b", "empty part"), ("wéb", "non-ASCII"), ("localhost;rm", "cannot contain ';'"),
            ("", "Give a host name"), ("web.", "empty part"), ("10.0.0.1", "all digits"),
            (".".join(["abcdefghi"] * 26), "at most 253")]],
        *[("user", check_user, text, words) for text, words in [
            ("root", "already has"), ("Alice", "lowercase"), ("a b", "lowercase"), ("x" * 33, "1 to 32")]],
        *[("ssh_keys", parse_ssh_keys, text, words) for text, words in key_cases()],
        *[("user_data", check_user_data, text, words) for text, words in [
            ("#!/bin/sh\nrm -rf /\n", "must start with the line #cloud-config"),
            ("packages: [x]\n", "must start with the line #cloud-config"),
            ("#cloud-config\n- a\n- b\n", "must be a YAML mapping"),
            ("#cloud-config\njust text\n", "must be a YAML mapping"),
            (big, "at most 16.0 KiB"),
            (bomb, "anchors or aliases"),
            ("#cloud-config\nusers:\n  - name: mallory\n", "cannot set users: the panel creates the user"),
            ("#cloud-config\nssh_authorized_keys: [x]\n", "cannot set ssh_authorized_keys"),
            ("#cloud-config\nchpasswd: {expire: false}\n", "cannot set chpasswd"),
            ("#cloud-config\nhostname: other\n", "Host name field"),
            ("#cloud-config\na: [1\n", "not valid YAML"),
            ("#cloud-config\na: !!python/object:os.system x\n", "not valid YAML"),
            ("#cloud-config\n" + "a: " + "[" * 40 + "]" * 40 + "\n", "nested more than 32"),
            ("#cloud-config\n---\na: 1\n---\nb: 2\n", "not valid YAML"),
            ("#cloud-config\n1: x\n", "keys must be words")]],
        *[("password", hash_password, text, words) for text, words in [
            ("short", "this one has 5"), ("p" * 129, "this one has 129"), ("line\nbreak", "control characters")]],
        ("address", static_network, "192.0.2.10", "prefix length"),
        ("address", static_network, "hello/24", "prefix length"),
        ("address", static_network, "127.0.0.5/8", "loopback"),
        ("address", static_network, "192.0.2.0/24", "network's own address"),
        ("gateway", lambda gw: static_network("192.0.2.10/24", gw), "198.51.100.1", "in the address's network"),
        ("gateway", lambda gw: static_network("192.0.2.10/24", gw), "192.0.2.10", "own address"),
        ("dns", lambda dns: static_network("192.0.2.10/24", "", dns), "8.8.8.8, evil.example", "not an IP"),
        ("dns", lambda dns: static_network("192.0.2.10/24", "", dns), "1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4", "At most 3"),
    ]


@pytest.mark.parametrize(("field", "check", "text", "words"), hostile(),
                         ids=[f"{c[0]}-{n}" for n, c in enumerate(hostile())])
def test_hostile_input_is_refused_in_words(field: str, check: Callable[[str], object], text: str,
                                           words: str) -> None:
    with pytest.raises(FieldProblem) as caught:
        check(text)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_no_key_and_no_password_is_refused_on_the_keys_field() -> None:
    with pytest.raises(FieldProblem) as caught:
        check_login((), "")
    assert caught.value.field == "ssh_keys" and "or a password" in str(caught.value)
    with pytest.raises(FieldProblem):
        build_seed(SeedSpec("web", "alice"), UUID)


# ---- SHA-512 crypt -----------------------------------------------------------------------------------

# From the specification (https://www.akkadia.org/drepper/SHA-crypt.txt); the slow ones are left out.
VECTORS = [
    ("saltstring", None, "Hello world!",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("saltstringsaltstring", 10000, "Hello world!",
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/"
     "y3RnOaw5v."),
    ("toolongsaltstring", 5000, "This is just a test",
     "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8"
     "audkUEm0"),
    ("anotherlongsaltstring", 1400,
     "a very much longer text to encrypt.  This one even stretches over morethan one line.",
     "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwG"
     "qd8p4ur1"),
    ("roundstoolow", 10, "the minimum number is still observed",
     "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHH"
     "rsX."),
]


@pytest.mark.parametrize(("salt", "rounds", "password", "expected"), VECTORS)
def test_sha512_crypt_vectors(salt: str, rounds: int | None, password: str, expected: str) -> None:
    assert sha512_crypt(password.encode(), salt, rounds) == expected


def test_hash_password_agrees_with_the_system_crypt() -> None:
    hashed = hash_password("pässword with 64+ characters " + "x" * 50, salt="Zq3./abcdefghijk")
    assert hashed.startswith("$6$rounds=50000$Zq3./abcdefghijk$") and len(hashed.rsplit("$", 1)[1]) == 86
    assert hash_password("12345678") != hash_password("12345678")  # a fresh salt each time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:  # Python 3.13 and later: the vectors above are the check
            return
    password = "pässword with 64+ characters " + "x" * 50
    assert crypt.crypt(password, hashed) == hashed


# ---- the seed's volume -----------------------------------------------------------------------------

@pytest.fixture
def test_conn() -> Iterator[libvirt.virConnect]:
    conn = libvirt.open(f"test://{Path(__file__).parents[1] / 'worlds' / 'basic.xml'}")
    yield conn
    conn.close()


def test_upload_refused_by_the_driver_leaves_no_volume(test_conn: libvirt.virConnect) -> None:
    """The test driver has no volume upload: the volume made for it is deleted again (the real upload
    is tested on the lab: tests/integration/test_cloudinit_lab.py)."""
    name = f"seed-{uuid.uuid4().hex[:8]}.iso"
    with pytest.raises(VirtError, match="not supported"):
        upload_seed(test_conn, "images", name, b"x" * 4096, timeout=10)
    assert name not in test_conn.storagePoolLookupByName("images").listVolumes()


def test_remove_seed(test_conn: libvirt.virConnect) -> None:
    pool = test_conn.storagePoolLookupByName("images")
    pool.createXML("<volume><name>vm-seed.iso</name><capacity>4096</capacity></volume>", 0)
    assert remove_seed(test_conn, "images", "vm-seed.iso") is True
    assert "vm-seed.iso" not in pool.listVolumes()
    assert remove_seed(test_conn, "images", "vm-seed.iso") is False
