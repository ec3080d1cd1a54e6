"""libvirt errors translated into the few kinds the panel shows, in a sysadmin's words."""

from __future__ import annotations

import libvirt


class VirtError(Exception):
    """Base of every error raised by the virt layer; str() is a message for the page."""


class NotFound(VirtError):
    pass


class InvalidState(VirtError):
    pass


class Unreachable(VirtError):
    pass


class Unsupported(VirtError):
    pass


class InvalidInput(VirtError):
    pass


class Busy(VirtError):
    pass


class HostBusy(VirtError):
    """The host answers, but more callers wait for it than it has slots: "busy", not "unreachable"."""


def brief_words(words: str) -> str:
    """What a user who is not an admin is told of a host's trouble: its kind ("busy", "unreachable",
    "error"), never the host's own error text."""
    return words.split(":", 1)[0]


def host_words(error: VirtError) -> str:
    """How a host's part of a page names a failed read: busy, unreachable, or the error itself."""
    if isinstance(error, HostBusy):
        return str(error)
    if isinstance(error, Unreachable):
        return f"unreachable: {error}"
    return f"error: {error}"


_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT,
    libvirt.VIR_ERR_NO_INTERFACE,
    libvirt.VIR_ERR_NO_NODE_DEVICE,
    libvirt.VIR_ERR_NO_SECRET,
}
_INVALID_STATE = {libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_OPERATION_DENIED}
_UNSUPPORTED = {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, libvirt.VIR_ERR_CONFIG_UNSUPPORTED}
_INVALID_INPUT = {
    libvirt.VIR_ERR_INVALID_ARG,
    libvirt.VIR_ERR_XML_ERROR,
    libvirt.VIR_ERR_XML_DETAIL,
    libvirt.VIR_ERR_XML_INVALID_SCHEMA,
    libvirt.VIR_ERR_OPERATION_FAILED,
}
_UNREACHABLE = {
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_AUTH_CANCELLED,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE,
}


def explain_connect_failure(message: str) -> str:
    """Turn the most common connection failures into advice."""
    lowered = message.lower()
    if "host key verification failed" in lowered:
        return ("ssh host key verification failed: the host's key is not the one pinned for it "
                "(changed key or not yet accepted). Re-check the fingerprint before trusting it again.")
    if "permission denied (publickey" in lowered:
        return "ssh refused the panel's key: add the panel's public key to the host's authorized_keys."
    if "authentication failed" in lowered or ("auth" in lowered and "fail" in lowered):
        return "authentication failed: check the user name and password."
    if "connection refused" in lowered:
        return "connection refused: libvirtd is not listening there."
    if "no route to host" in lowered or "network is unreachable" in lowered:
        return "no route to host."
    if "name or service not known" in lowered or "could not resolve" in lowered:
        return "host name does not resolve."
    return message


def translate(exc: libvirt.libvirtError) -> VirtError:
    """Map a libvirtError onto one of our error kinds, keeping libvirt's own words."""
    code = exc.get_error_code()
    message = (exc.get_error_message() or str(exc)).strip()
    if code in _NOT_FOUND:
        return NotFound(message)
    if code in _INVALID_STATE:
        return InvalidState(message)
    if code in _UNSUPPORTED:
        return Unsupported(message)
    if code in _UNREACHABLE:
        return Unreachable(explain_connect_failure(message))
    if code in _INVALID_INPUT:
        return InvalidInput(message)
    return VirtError(message)
