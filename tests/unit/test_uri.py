"""URIs are assembled from validated parts; hostile values never reach libvirt."""

import pytest

from virt.errors import InvalidInput
from virt.uri import ConnectionSpec, Transport


@pytest.mark.parametrize(("spec", "uri"), [
    (ConnectionSpec(Transport.LOCAL), "qemu:///system"),
    (ConnectionSpec(Transport.LOCAL, path="session"), "qemu:///session"),
    (ConnectionSpec(Transport.TEST, path="default"), "test:///default"),
    (ConnectionSpec(Transport.TEST, path="/srv/w.xml"), "test:///srv/w.xml"),
    (ConnectionSpec(Transport.TCP, hostname="kvm1.example.org"), "qemu+tcp://kvm1.example.org/system"),
    (ConnectionSpec(Transport.TCP, hostname="10.0.0.5", port=16510, sasl_username="ops"), "qemu+tcp://10.0.0.5:16510/system"),
    (ConnectionSpec(Transport.TCP, hostname="fe80::1"), "qemu+tcp://[fe80::1]/system"),
    (ConnectionSpec(Transport.TLS, hostname="KVM2", tls_pkipath="/etc/pki/w"), "qemu+tls://kvm2/system?pkipath=/etc/pki/w"),
    (ConnectionSpec(Transport.SSH, hostname="h", port=2222, username="root", ssh_keyfile="/k/id", ssh_command="/k/ssh"),
     "qemu+ssh://root@h:2222/system?keyfile=/k/id&command=/k/ssh&no_tty=1"),
])
def test_uri_is_built_from_parts(spec: ConnectionSpec, uri: str) -> None:
    assert spec.uri() == uri


BAD = [
    {"hostname": "evil/system?command=/bin/sh#"},
    {"hostname": "-oProxyCommand=x"},
    {"hostname": "two words"},
    {"hostname": ""},
    {"hostname": "a" * 300},
    {"hostname": "h", "username": "-l"},
    {"hostname": "h", "username": "root user"},
    {"hostname": "h", "username": "root@x"},
    {"hostname": "h", "port": 0},
    {"hostname": "h", "port": 70000},
    {"hostname": "h", "path": "system?command=/bin/sh"},
    {"hostname": "h", "ssh_keyfile": "/tmp/../etc/shadow"},
    {"hostname": "h", "ssh_keyfile": "relative/key"},
    {"hostname": "h", "ssh_command": "/bin/sh -c x"},
]


@pytest.mark.parametrize("fields", BAD, ids=[repr(b) for b in BAD])
def test_hostile_values_are_refused(fields: dict) -> None:
    with pytest.raises(InvalidInput):
        ConnectionSpec(Transport.SSH, **fields)


def test_sasl_password_is_not_part_of_identity_or_repr() -> None:
    a = ConnectionSpec(Transport.TCP, hostname="h", sasl_username="u", sasl_password="s3cr3t-A")
    b = ConnectionSpec(Transport.TCP, hostname="h", sasl_username="u", sasl_password="s3cr3t-B")
    assert a == b
    assert "s3cr3t" not in repr(a) and "s3cr3t" not in a.uri()


def test_test_world_path_traversal_refused() -> None:
    with pytest.raises(InvalidInput):
        ConnectionSpec(Transport.TEST, path="/srv/../etc/passwd")
