"""Who holds each VM's serial console: one viewer per VM, a second one may take it over.

Two backends behind one interface (`SerialSessions`), chosen like webkvm/leases.py chooses:
- `ProcessSerialSessions`: in this process's memory, for the single-process panel (no WEBKVM_REDIS_URL).
  The holder is told it was taken over through its `kick` callable.
- `RedisSerialSessions`: a Redis hash per VM (username, since, the holder consumer's Channels channel,
  a token of the holding session) that every panel process sees. The hash expires unless the process
  of its session renews it, so a crashed process's holder lapses within `ttl` seconds. A take over
  tells the holder, in whatever process it lives, through the channel layer ({"type": "serial.kick"},
  handled by console.serial_consumer.SerialConsumer). Claim, renewal and release run as Lua scripts
  that compare the token, so a session never extends or removes a record another one took since.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from console.tickets import Refused
from virt.errors import Message, Text, gettext_noop
from webkvm.formats import when

log = logging.getLogger(__name__)

Key = tuple[int, str]  # (host pk, VM UUID)
KICK = "serial.kick"  # channel layer message type; SerialConsumer.serial_kick handles it
TAKEN_OVER = gettext_noop("taken over by {user}")


class InUse(Refused):
    """The console is held by somebody else; the page offers an explicit take over."""


def _token() -> str:
    return secrets.token_hex(16)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(eq=False)
class Holder:
    """The session holding a VM's serial console."""

    username: str
    kick: Callable[[str], None]  # ends that session with a reason; called from any thread
    since: datetime = field(default_factory=timezone.now)
    channel: str = ""  # the holder consumer's Channels channel_name (how another process reaches it)
    token: str = field(default_factory=_token)  # this session's, in its Redis record

    def describe(self) -> Text:
        return Text(gettext_noop("in use by {user} since {since}"), user=self.username, since=when(self.since))


class SerialSessions(Protocol):
    def claim(self, key: Key, holder: Holder, *, take_over: bool) -> Holder | None:
        """Make `holder` the VM's session; returns the one it took over from (already told to close),
        or raises InUse (with "in use by USER since TIME") when held and no take over was asked for."""

    def release(self, key: Key, holder: Holder) -> None:
        """`holder` lets go; a record another session holds now stays."""

    def holder(self, key: Key) -> Holder | None:
        """The VM's session now, if any."""


class ProcessSerialSessions:
    """VM -> the one session holding its serial console, in this process.

    With several processes and no Redis a session of another process is not listed here, but
    libvirt's own console lock still refuses a second opener (then the page says "in use by another
    client"), and a take over opens with VIR_DOMAIN_CONSOLE_FORCE, which cuts off any holder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Key, Holder] = {}

    def claim(self, key: Key, holder: Holder, *, take_over: bool) -> Holder | None:
        with self._lock:
            current = self._held.get(key)
            if current is not None and not take_over:
                raise InUse(current.describe())
            self._held[key] = holder
        if current is not None:
            current.kick(Text(TAKEN_OVER, user=holder.username))
        return current

    def release(self, key: Key, holder: Holder) -> None:
        with self._lock:
            if self._held.get(key) is holder:
                del self._held[key]

    def holder(self, key: Key) -> Holder | None:
        with self._lock:
            return self._held.get(key)


# KEYS[1] the VM's record; ARGV[1] "1" to take over, ARGV[2] expiry in ms, then the new record's
# field/value pairs. Returns the record found (empty when free); writes the new one unless it was held
# and no take over was asked for.
_CLAIM = """local found = redis.call('hgetall', KEYS[1])
if #found > 0 and ARGV[1] ~= '1' then return found end
redis.call('del', KEYS[1])
redis.call('hset', KEYS[1], unpack(ARGV, 3))
redis.call('pexpire', KEYS[1], ARGV[2])
return found"""
_EXTEND = """if redis.call('hget', KEYS[1], 'token') == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0"""
_RELEASE = """if redis.call('hget', KEYS[1], 'token') == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0"""


class RedisSerialSessions:
    """SerialSessions in Redis: one viewer per VM among all panel processes.

    This process renews the records of its own sessions every ttl/3. A renewal that finds its record
    gone to another session tells the local holder itself, should the channel layer message be lost."""

    def __init__(self, client: redis.Redis, *, ttl: float = 10.0, prefix: str = "webkvm:serial:",
                 layer_alias: str = "default") -> None:
        self.client = client
        self.ttl_ms = int(ttl * 1000)
        self.prefix = prefix
        self.layer_alias = layer_alias
        self._claim = client.register_script(_CLAIM)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self._mine: dict[str, Holder] = {}  # record key -> this process's session holding it
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()

    def _key(self, key: Key) -> str:
        return f"{self.prefix}{key[0]}:{key[1].lower()}"

    def claim(self, key: Key, holder: Holder, *, take_over: bool) -> Holder | None:
        name = self._key(key)
        try:
            current = self._swap(name, holder, take_over=take_over)
        except redis.RedisError:
            raise Refused("the panel's shared store (Redis) does not answer") from None
        if current is not None and not take_over:
            raise InUse(current.describe())
        with self._lock:
            self._mine[name] = holder
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew, name="serial-console-renewer", daemon=True)
                self._renewer.start()
        if current is not None:
            current.kick(Text(TAKEN_OVER, user=holder.username))
        return current

    def release(self, key: Key, holder: Holder) -> None:
        name = self._key(key)
        with self._lock:
            if self._mine.get(name) is holder:
                del self._mine[name]
        try:
            self._release(keys=[name], args=[holder.token])
        except redis.RedisError:
            pass  # nobody renews it any more: the record lapses within ttl

    def holder(self, key: Key) -> Holder | None:
        return self._holder(self.client.hgetall(self._key(key)))

    def _swap(self, name: str, holder: Holder, *, take_over: bool) -> Holder | None:
        record = {"username": holder.username, "since": holder.since.isoformat(), "channel": holder.channel,
                  "token": holder.token}
        pairs = [item for pair in record.items() for item in pair]
        found = self._claim(keys=[name], args=["1" if take_over else "0", self.ttl_ms, *pairs])
        return self._holder(dict(zip(found[::2], found[1::2], strict=True)))

    def _holder(self, record: dict[Any, Any]) -> Holder | None:
        if not record:
            return None
        fields = {_text(name): _text(value) for name, value in record.items()}
        return Holder(fields["username"], functools.partial(self._tell, fields["channel"], fields["token"]),
                      since=datetime.fromisoformat(fields["since"]), channel=fields["channel"],
                      token=fields["token"])

    def _tell(self, channel: str, token: str, reason: str) -> None:
        """Tell the session on `channel` (of any process) to close; called from a worker thread."""
        layer = get_channel_layer(self.layer_alias)
        if not channel or layer is None:
            return  # its process's renewal finds the record gone and tells it
        try:
            message: dict[str, object] = {"type": KICK, "reason": str(reason), "token": token}
            if isinstance(reason, Text):  # the receiver says it in its user's language
                message["said"] = Message.of(reason).as_dict()
            async_to_sync(layer.send)(channel, message)
        except Exception as exc:  # channel full, Redis away: the renewal is the fallback, as above
            log.warning("serial console: could not tell %s to close: %s", channel, exc)

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            with self._lock:
                mine = dict(self._mine)
            for name, holder in mine.items():
                try:
                    if not self._extend(keys=[name], args=[holder.token, self.ttl_ms]):
                        self._lost(name, holder)
                except redis.RedisError:
                    pass  # the next round tries again; the record lapses only if Redis stays away for ttl

    def _lost(self, name: str, holder: Holder) -> None:
        """`holder`'s record is gone: taken over (tell it, in case the channel layer's word was lost), or
        lapsed while Redis was away (hold it again if still free)."""
        with self._lock:
            if self._mine.get(name) is not holder:
                return  # released meanwhile
            current = self._swap(name, holder, take_over=False)
            if current is None:
                return
            del self._mine[name]
        holder.kick(Text(TAKEN_OVER, user=current.username))
