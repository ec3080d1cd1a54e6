"""Finding and opening the byte stream to a VM's VNC server, on the panel's side only.

The address comes from the host's record and the VM's live XML, and is always an address of
the VM's own host: local hosts (and tcp/tls hosts on this machine) are reached on loopback or
another address of this machine; ssh hosts through `ssh -W` with the panel's key and pinned
known_hosts, so the VNC port never has to leave the hypervisor's loopback; remote tcp/tls hosts
on the host's own address. A display whose live XML names any other address is refused: the
XML is not a way to make the proxy connect somewhere else.
A display with a password is opened by the proxy itself (console/rfb.py): the password is
read from the live XML here and never leaves the server.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from dataclasses import dataclass, field

import libvirt

from console import rfb
from console.tickets import Refused, host_refusal
from hosts import services
from hosts.models import Host
from virt.console import ANY_ADDRESSES, NoDisplay, VncDisplay, vnc_display
from virt.errors import NotFound, Text, VirtError, gettext_noop
from virt.xml.domain import Domain

CONNECT_TIMEOUT = 5.0
THIS_MACHINE = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Target:
    """Where the proxy connects: TCP address, or through ssh to an address on the host."""

    display: VncDisplay
    address: str
    port: int
    via_ssh: bool = False
    # The display's VNC password, for the proxy's own authentication; kept out of repr and logs.
    password: str | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        where = f"{self.address}:{self.port}"
        return f"{where} on the host through ssh" if self.via_ssh else where


def _is_local(host: Host) -> bool:
    return host.transport in ("local", "test") or (
        host.transport in ("tcp", "tls") and host.hostname.strip("[]").lower() in THIS_MACHINE)


def current_display(host: Host, vm_uuid: str) -> VncDisplay:
    """The VM's VNC display now, or Refused with the reason in words."""
    try:
        return services.call(host, lambda conn: vnc_display(conn.lookupByUUIDString(vm_uuid)))
    except NotFound:
        raise Refused(gettext_noop("the VM no longer exists on this host")) from None
    except NoDisplay as exc:
        raise Refused(Text.of(exc)) from None
    except VirtError as exc:
        raise host_refusal(Text(gettext_noop("host {host} does not answer"), host=host.name), exc) from None


def vnc_password(host: Host, vm_uuid: str) -> str | None:
    """The VNC password of the VM's display, read with VIR_DOMAIN_XML_SECURE (libvirt hides it otherwise)."""
    def read(conn: libvirt.virConnect) -> str | None:
        xml = Domain.from_xml(conn.lookupByUUIDString(vm_uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
        return next((g.passwd for g in xml.graphics if g.type == "vnc"), None)
    try:
        return services.call(host, read)
    except NotFound:
        raise Refused(gettext_noop("the VM no longer exists on this host")) from None
    except VirtError as exc:
        raise host_refusal(Text(gettext_noop("host {host} does not answer"), host=host.name), exc) from None


def _on_this_machine(address: str) -> bool:
    """Is `address` one of this machine's own? Only an own address can be bound (net.ipv4.ip_nonlocal_bind
    off, the default)."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _host_addresses(host: Host) -> set[str]:
    """The addresses the host's name stands for (the admin's record, never the VM's XML)."""
    try:
        found = socket.getaddrinfo(host.hostname.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {str(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])) for info in found}


def _own_address(host: Host, display: VncDisplay) -> str:
    """Where the proxy connects for `display`: an address of the VM's own host, or Refused in words."""
    if display.on_loopback and (_is_local(host) or host.transport == "ssh"):
        return display.address_on_host()  # this machine's loopback, or the ssh host's through the tunnel
    if display.listen in ANY_ADDRESSES:
        return host.hostname.strip("[]")
    if display.on_loopback:
        raise Refused(gettext_noop("{vm}'s VNC display listens on {listen} of host {host}, which the panel cannot "
                                   "reach over {transport}: add the host over ssh to use its consoles (the panel "
                                   "then tunnels to the host's loopback)."),
                      vm=display.vm_name, listen=display.listen, host=host.name, transport=host.transport)
    own = _on_this_machine(display.listen) if _is_local(host) else display.listen in _host_addresses(host)
    if not own:
        raise Refused(gettext_noop("{vm}'s VNC display listens on {listen}, which is not an address of host "
                                   "{host}: the console connects only to the VM's own host (an admin can set the "
                                   "display's listen address to 127.0.0.1 or 0.0.0.0)"),
                      vm=display.vm_name, listen=display.listen, host=host.name)
    return display.listen


def resolve(host: Host, vm_uuid: str) -> Target:
    display = current_display(host, vm_uuid)
    address = _own_address(host, display)
    # The proxy answers the password challenge itself, so the browser never receives the password.
    password = vnc_password(host, vm_uuid) if display.has_password else None
    return Target(display, address, display.port, via_ssh=host.transport == "ssh", password=password)


@dataclass
class TargetStream:
    """A connected socket to the VNC server; for ssh, one end of a socket pair fed by `ssh -W`."""

    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None
    closed: bool = field(default=False)
    # True when the proxy did the VNC authentication: the browser is then offered security type None.
    authenticated: bool = False

    def ssh_error(self) -> str:
        """What ssh said when the tunnel failed (e.g. forwarding prohibited by the host's sshd)."""
        if self.process is None or self.process.stderr is None:
            return ""
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return ""
        return self.process.stderr.read(2000).decode(errors="replace").strip()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        finally:
            if self.process is not None:
                if self.process.poll() is None:
                    self.process.terminate()
                try:
                    self.process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                if self.process.stderr is not None:
                    self.process.stderr.close()


def _ssh_command(host: Host, target: Target) -> list[str]:
    host.spec()  # validates hostname, port and user against strict patterns before they reach argv
    identity = services.identity()
    identity.ensure()
    address = str(ipaddress.ip_address(target.address))
    forward = f"[{address}]:{target.port}" if ":" in address else f"{address}:{target.port}"
    args = [str(identity.wrapper), "-T", "-p", str(host.port or 22), "-W", forward]
    if host.username:
        args += ["-l", host.username]
    return [*args, "--", host.hostname.strip("[]")]


def connect(host: Host, target: Target) -> TargetStream:
    """Open the stream; raises Refused when the VNC server cannot be reached."""
    if not target.via_ssh:
        sock = None
        try:
            sock = socket.create_connection((target.address, target.port), timeout=CONNECT_TIMEOUT)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # fails on a connection reset already
        except OSError as exc:
            if sock is not None:
                sock.close()
            # Where and the system's words are the host's: for admins and the audit record (Refused.host_said).
            raise Refused(Text(gettext_noop("cannot reach the VNC server of {vm}"), vm=target.display.vm_name),
                          f"{target.describe()}: {exc.strerror or exc}") from None
        return TargetStream(sock)
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(_ssh_command(host, target), stdin=theirs.fileno(), stdout=theirs.fileno(),
                                   stderr=subprocess.PIPE, close_fds=True, start_new_session=True)
    except (OSError, VirtError, ValueError) as exc:
        ours.close()
        raise Refused(Text(gettext_noop("cannot start ssh to {host}"), host=host.name), str(exc)) from None
    finally:
        theirs.close()
    return TargetStream(ours, process)


def open_stream(host: Host, target: Target) -> TargetStream:
    """connect(), then, for a display with a password, the RFB opening up to a successful
    SecurityResult; the server then waits for the browser's ClientInit. Refused on failure."""
    stream = connect(host, target)
    if target.password is None:
        return stream
    try:
        rfb.authenticate(stream.sock, target.password)
    except rfb.RfbError as exc:
        try:
            said = stream.ssh_error() if isinstance(exc, rfb.RfbClosed) else ""
        finally:
            stream.close()
        if said:
            raise Refused(Text(gettext_noop("{vm}: ssh tunnel to the host failed"), vm=target.display.vm_name),
                          said) from None
        failure = rfb.words(exc)
        if failure.template == rfb.FAILED:  # the connection failed: the system's words are the host's (admins')
            raise Refused(Text(gettext_noop("cannot reach the VNC server of {vm}"), vm=target.display.vm_name),
                          str(failure.params["error"])) from None
        raise Refused(gettext_noop("{vm}: {error}"), vm=target.display.vm_name, error=failure) from None
    except BaseException:
        stream.close()  # whatever went wrong, the socket and the ssh process go with it
        raise
    stream.authenticated = True
    return stream
