"""The live feed's fan-out inside one daphne process (ADR 0007).

Each process (each event loop) has one hub: one Redis pub/sub connection, subscribed to the
groups (`groups.channel`) that its clients follow, and the set of its clients per group.
A published message is read and decoded once, then handed to every local member with a plain
call (`Member.deliver`), which writes it to the client's socket at once when it can
(`transport.Outbox`). Channels' group machinery did the same job at a cost per client
per message of a msgpack decode, a queue, two task wake-ups and the framing of the same text:
with 500 clients it was most of the p99 of bench/live.py.

A member leaves every group at once (`discard`, `forget`) however its connection ended, and
one whose `deliver` raises is put out (logged once, `evicted`): a dead member would otherwise be
called, and fail, for every message published to its groups.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

from django.conf import settings
from redis.exceptions import RedisError

from energy_dashboard.live import groups

logger = logging.getLogger(__name__)


class Member(Protocol):
    """A client of the hub: a live consumer."""

    def deliver(self, event: dict[str, Any]) -> None:
        """Take one message (the header's fields and `text`); must not block."""

    def evicted(self) -> None:
        """The hub put this member out of every group: its `deliver` raised."""


class Hub:
    """One process's subscriptions and their local members."""

    def __init__(self) -> None:
        self._members: dict[str, set[Member]] = {}
        self._channels_of: dict[Member, set[str]] = {}  # the same, by member: a leave costs its groups
        # Channels whose last member left, to unsubscribe unless a member joins again first.
        self._emptied: set[str] = set()
        self._settling: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._redis: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def join(self, group: str, member: Member) -> None:
        """Add `member` to `group`; subscribes the process when it is the group's first."""
        name = groups.channel(group)
        async with self._lock:
            members = self._members.get(name)
            if members is None:
                if self._pubsub is None:
                    import redis.asyncio

                    self._redis = redis.asyncio.Redis.from_url(
                        settings.REDIS_URL, socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT_S
                    )
                    self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                try:
                    await self._pubsub.subscribe(name)
                except (OSError, RedisError):
                    if not self._members:
                        await self._close()  # nothing left open for a Redis that failed
                    raise
                members = self._members[name] = set()
                self._emptied.discard(name)
                if self._reader is None:
                    self._reader = asyncio.ensure_future(self._read(self._pubsub))
            members.add(member)
            self._channels_of.setdefault(member, set()).add(name)

    async def leave(self, group: str, member: Member) -> None:
        """Remove `member` from `group`; the last member out unsubscribes, and the last of all
        closes the connection (a test's event loop ends with nothing left running)."""
        name = groups.channel(group)
        if self._remove(member, name):
            await self._settle()

    def discard(self, member: Member) -> None:
        """Remove `member` from every group now; emptied groups are unsubscribed by a task.

        It does not wait, so that it can run where waiting is not possible: when the
        consumer's task is being cancelled, or from a callback.
        """
        if self._drop(member):
            task = asyncio.ensure_future(self._settle())
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def forget(self, member: Member) -> None:
        """Remove `member` from every group and unsubscribe the groups it was the last of."""
        if self._drop(member):
            await self._settle()

    def _drop(self, member: Member) -> bool:
        """Take `member` out of every group; True when a group was left empty."""
        emptied = False
        for name in list(self._channels_of.get(member, ())):
            emptied = self._remove(member, name) or emptied
        return emptied

    def _remove(self, member: Member, name: str) -> bool:
        """Take `member` out of one channel's members; True when none is left."""
        members = self._members.get(name)
        if not members or member not in members:
            return False
        members.discard(member)
        channels = self._channels_of[member]
        channels.discard(name)
        if not channels:
            del self._channels_of[member]
        if members:
            return False
        del self._members[name]
        self._emptied.add(name)
        return True

    async def _settle(self) -> None:
        """Unsubscribe the channels left with no member; close the connection when none has."""
        async with self._lock:
            names = sorted(name for name in self._emptied if name not in self._members)
            self._emptied.clear()
            if names and self._pubsub is not None:
                try:
                    await self._pubsub.unsubscribe(*names)
                except (OSError, RedisError) as exc:
                    logger.warning("live feed: unsubscribing %s failed: %s", ", ".join(names), exc)
            if not self._members:
                await self._close()

    async def _close(self) -> None:
        reader, pubsub, client = self._reader, self._pubsub, self._redis
        self._reader = self._pubsub = self._redis = None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        try:
            if pubsub is not None:
                await pubsub.aclose()
            if client is not None:
                await client.aclose()
        except (OSError, RedisError) as exc:
            logger.debug("live feed: closing the subscription failed: %s", exc)

    async def _read(self, pubsub: Any) -> None:
        """Hand every published message to the group's members, decoded once."""
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except (OSError, RedisError) as exc:
                # redis-py reconnects and subscribes again on the next read.
                logger.warning("live feed: reading from Redis failed, retrying: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            name = message["channel"]
            members = self._members.get(name.decode() if isinstance(name, bytes) else name)
            if not members:
                continue
            try:
                event = groups.decode(message["data"])
            except ValueError:
                logger.warning("live feed: undecodable message on %s dropped", name)
                continue
            for member in list(members):
                try:
                    member.deliver(event)
                except Exception:
                    # One client's failure is not the others'. A member that failed once is
                    # put out, or it would fail (and be logged) on every message from now on.
                    logger.exception("live feed: delivering to a client failed; it is put out of the feed")
                    self._evict(member)

    def _evict(self, member: Member) -> None:
        self.discard(member)
        try:
            member.evicted()
        except Exception:
            logger.exception("live feed: closing a client that was put out failed")


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """The running event loop's hub (daphne has one loop per process; tests one per case)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found
