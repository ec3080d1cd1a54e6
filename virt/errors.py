"""libvirt errors translated into the few kinds the panel shows, in a sysadmin's words."""

from __future__ import annotations

import libvirt


def gettext_noop(text: str) -> str:
    """Marks a message of our own for translation where it reaches a user (webkvm/i18n.said): the virt layer
    never imports Django, and `manage.py makemessages` finds the call by this name."""
    return text


class Said:
    """A message of the panel's own: an English template with named parameters ("{name} is not running."),
    the template marked with gettext_noop. str() is the English sentence; the edge of the panel translates
    the template and fills in the parameters (webkvm/i18n.said). The template is the message's stable code.
    Parameters stay as they are: names, numbers, and libvirt's or ssh's own words."""

    template: str
    params: dict[str, object]

    def _say(self, message: str, params: dict[str, object]) -> str:
        self.template, self.params = message, params
        return message.format(**params) if params else message

    def as_dict(self) -> dict[str, object]:
        """The message as plain data (JSON, the channel layer, the database): Message.from_dict reads it back,
        webkvm.i18n.said_dict shows it translated. Parameters that are messages of ours travel as such dicts
        ("said"), words of ours as words ("terms")."""
        params: dict[str, object] = {}
        for key, value in self.params.items():
            params[key] = value.as_dict() if isinstance(value, Said) and not isinstance(value, Term) else (
                str(value) if isinstance(value, (BaseException, Term)) else value)
        return {"template": self.template, "params": params,
                "terms": sorted(k for k, v in self.params.items() if isinstance(v, Term)),
                "said": sorted(k for k, v in self.params.items() if isinstance(v, Said) and not isinstance(v, Term))}


class Term(str):
    """A word of ours used as a parameter of a message ("VM" in "{what} name: ..."): translated with it.
    Mark it too: Term(gettext_noop("VM"))."""

    __slots__ = ()


class Message(Said):
    """A message that is not an error (a job's phase, how a host's part of a page is doing): str() is English;
    as_dict() travels through the database or the channel layer, and webkvm.i18n.said() shows it translated."""

    def __init__(self, message: str, /, **params: object) -> None:
        self.text = self._say(message, params)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Message({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(self.text)

    @classmethod
    def of(cls, said: Said | str) -> Message:
        """Any message of ours (an error, a Text) as a Message; a plain string as a message of its own."""
        if isinstance(said, Said):
            return cls(said.template, **said.params)
        return cls("{text}", text=said)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Message:
        params = dict(data.get("params") or {})  # type: ignore[call-overload]
        for name in data.get("terms") or []:  # type: ignore[attr-defined]
            params[name] = Term(params[name])
        for name in data.get("said") or []:  # type: ignore[attr-defined]
            if isinstance(params.get(name), dict):
                params[name] = cls.from_dict(params[name])
        return cls(str(data.get("template", "")), **params)


class Text(Said, str):
    """A message of ours that stays a string: equal to, and used like, its English text, while
    webkvm.i18n.said() shows it translated (a form field's problem, a report's words, a host's trouble)."""

    def __new__(cls, message: str, /, **params: object) -> Text:
        self = str.__new__(cls, message.format(**params) if params else message)
        self.template, self.params = message, params
        return self

    @classmethod
    def of(cls, said: Said | str) -> Text:
        """An error of ours (a BadValue, a VirtError) or a Message as a Text; a plain string stands for itself."""
        if isinstance(said, Text):
            return said
        if isinstance(said, Said):
            return cls(said.template, **said.params)
        return cls("{text}", text=said)


def joined(parts: list[Text] | list[str], separator: str = "; ") -> Text:
    """Several messages of ours as one (each translated on its own)."""
    if len(parts) == 1:
        return Text.of(parts[0])
    template = separator.replace("{", "{{").replace("}", "}}").join(f"{{part{i}}}" for i in range(len(parts)))
    return Text(template, **{f"part{i}": Text.of(part) for i, part in enumerate(parts)})


class VirtError(Said, Exception):
    """Base of every error raised by the virt layer; str() is a message for the page.

    `from_host`: the message carries the host's own words (libvirt's, ssh's), which only admins read;
    errors the panel words itself ("db-01 has no disk vdz.") are for everybody."""

    from_host = False

    def __init__(self, message: str = "", /, **params: object) -> None:
        super().__init__(self._say(message, params))


class BadValue(Said, ValueError):
    """Input that breaks one of our rules (a name, a size, a MAC): a form shows it on the field."""

    def __init__(self, message: str, /, **params: object) -> None:
        super().__init__(self._say(message, params))


class NotFound(VirtError):
    pass


class InvalidState(VirtError):
    pass


class Unreachable(VirtError):
    from_host = True  # the connection's own reason (ssh, TLS, the daemon's address)


class Unsupported(VirtError):
    pass


class InvalidInput(VirtError):
    pass


class Busy(VirtError):
    pass


class HostBusy(VirtError):
    """The host answers, but more callers wait for it than it has slots: "busy", not "unreachable"."""


def and_joined(parts: list[Text]) -> Text:
    """"a, b and c": several things of one message (each translated on its own)."""
    if len(parts) == 1:
        return parts[0]
    return Text(gettext_noop("{first} and {last}"), first=joined(parts[:-1], ", "), last=parts[-1])


# How a host's trouble is named where its own words are not shown: Texts (strings equal to the English words,
# which webkvm.i18n.said shows translated).
HOST_UNAVAILABLE = Text(gettext_noop("host unavailable"))
HOST_BUSY = Text(gettext_noop("host busy"))
HOST_ERROR = Text(gettext_noop("the host reported an error"))


def brief_words(words: str) -> Text:
    """What a user who is not an admin is told of a host's trouble (host_words), never the host's own
    error text: "host busy" or "host unavailable"."""
    return HOST_BUSY if words.startswith("busy") else HOST_UNAVAILABLE


def hidden_words(error: VirtError) -> Text:
    """What stands for the host's own words (from_host) where they may not be shown."""
    return HOST_UNAVAILABLE if isinstance(error, Unreachable) else HOST_ERROR


def reworded(error: VirtError, message: str, /, **params: object) -> VirtError:
    """`error` with a longer message (what the panel did about it: a template of ours, with the error itself
    as a parameter where it is quoted), of the same kind and origin."""
    new = type(error).__new__(type(error))
    new.__dict__.update(error.__dict__)
    VirtError.__init__(new, message, **params)
    new.from_host = error.from_host
    return new


def host_words(error: VirtError) -> Text:
    """How a host's part of a page names a failed read: busy, unreachable, or the error itself."""
    if isinstance(error, HostBusy):
        return Text.of(error)
    if isinstance(error, Unreachable):
        return Text(gettext_noop("unreachable: {error}"), error=Text.of(error))
    return Text(gettext_noop("error: {error}"), error=Text.of(error))


# The same as Messages (as_dict() for the channel layer and the database, webkvm.i18n.said to show them):
def host_message(error: VirtError) -> Message:
    return Message.of(host_words(error))


def brief_message(words: str) -> Message:
    return Message.of(brief_words(words))


def hidden_message(error: VirtError) -> Message:
    return Message.of(hidden_words(error))


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


def explain_connect_failure(message: str) -> Text:
    """Turn the most common connection failures into advice; any other failure in the host's own words."""
    lowered = message.lower()
    if "host key verification failed" in lowered:
        return Text(gettext_noop("ssh host key verification failed: the host's key is not the one pinned for it "
                                 "(changed key or not yet accepted). Re-check the fingerprint before trusting it "
                                 "again."))
    if "permission denied (publickey" in lowered:
        return Text(gettext_noop("ssh refused the panel's key: add the panel's public key to the host's "
                                 "authorized_keys."))
    if "authentication failed" in lowered or ("auth" in lowered and "fail" in lowered):
        return Text(gettext_noop("authentication failed: check the user name and password."))
    if "connection refused" in lowered:
        return Text(gettext_noop("connection refused: libvirtd is not listening there."))
    if "no route to host" in lowered or "network is unreachable" in lowered:
        return Text(gettext_noop("no route to host."))
    if "name or service not known" in lowered or "could not resolve" in lowered:
        return Text(gettext_noop("host name does not resolve."))
    return Text.of(message)


def said_as(kind: type[VirtError], said: Said | str) -> VirtError:
    """An error of `kind` saying what `said` says (a Text, another error's message, or libvirt's words)."""
    if isinstance(said, Said):
        return kind(said.template, **said.params)
    return kind("{message}", message=said)


def libvirt_message(exc: libvirt.libvirtError) -> str:
    """libvirt's own words for an error, without the lines of a document it could not parse.

    An XML parse error reads "FILE:LINE: what failed", then the offending line of the document and a
    caret under it: for a file libvirt read inside the panel (a test-driver world) that line is the
    file's content, so only the first line (what failed, and where) is kept."""
    message = (exc.get_error_message() or str(exc)).strip()
    first, _, rest = message.partition("\n")
    if exc.get_error_code() == libvirt.VIR_ERR_XML_DETAIL or rest.rstrip().endswith("^"):
        return first.strip()
    return message


def translate(exc: libvirt.libvirtError) -> VirtError:
    """Map a libvirtError onto one of our error kinds, keeping libvirt's own words."""
    code = exc.get_error_code()
    message = libvirt_message(exc)
    error: VirtError
    kind: type[VirtError] = VirtError
    if code in _NOT_FOUND:
        kind = NotFound
    elif code in _INVALID_STATE:
        kind = InvalidState
    elif code in _UNSUPPORTED:
        kind = Unsupported
    elif code in _UNREACHABLE:
        error = said_as(Unreachable, explain_connect_failure(message))
        error.from_host = True
        return error
    elif code in _INVALID_INPUT:
        kind = InvalidInput
    error = kind("{message}", message=message)
    error.from_host = True
    return error
