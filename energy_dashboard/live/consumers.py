"""The live feed's WebSocket consumer at /api/v1/ws: what the bus's topics say, to the clients that
follow it (the topics and their messages: energy_dashboard.live.receivers)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from redis.exceptions import RedisError

from energy_dashboard.live import groups
from energy_dashboard.live.hub import Hub, hub
from energy_dashboard.live.transport import (
    CLOSE_INTERNAL_ERROR,
    AuthenticatedJsonConsumer,
    ErrorMessage,
    Outbox,
    attach_flow_control,
    error_message,
)

if TYPE_CHECKING:
    from channels.consumer import _ChannelScope

logger = logging.getLogger(__name__)


class LiveConsumer(AuthenticatedJsonConsumer):
    """Clients subscribe to everything, to rooms or to sensors, and receive typed JSON messages.

    Client messages: ``{"type": "subscribe"|"unsubscribe", "all": true}``,
    ``{"type": "subscribe", "rooms": [...]}``, ``{"type": "subscribe", "sensors": [...]}``,
    ``{"type": "ping"}``. Each answer and each pushed message has a ``type``; a message that
    cannot be taken is answered with an `ErrorMessage` (`transport`) and the connection goes
    on. A pushed message that names no room and no sensor reaches followers of everything
    only. One connection follows at most LIVE_MAX_SUBSCRIPTIONS rooms and sensors in all.

    Everything this consumer sends goes through one bounded `Outbox` (LIVE_CLIENT_BUFFER
    frames): a client that reads too slowly loses its oldest frames and gets a `lagging`
    message saying how many, while other clients are served as usual. Published messages
    come from the process's hub, not through Channels' groups (ADR 0007).

    However the connection ends (the client closes or resets it, a handler raises, the writer
    fails, daphne cancels the consumer), the consumer leaves the hub at once: see `__call__`.
    """

    follow_all: bool
    rooms: set[str]
    sensors: set[str]
    joined: set[str]
    outbox: Outbox
    writer: asyncio.Task[None] | None = None
    _hub: Hub | None = None  # set at the first join
    _ended = False
    _closer: asyncio.Task[None] | None = None

    async def __call__(self, scope: _ChannelScope, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Channels calls disconnect() only when it dispatches websocket.disconnect; an
            # exception in a handler (or a cancellation) ends the consumer before that, and its
            # member would stay in the hub, delivered to (and failing) on every message.
            self._end()

    async def on_authenticated(self) -> None:
        self.follow_all, self.rooms, self.sensors, self.joined = False, set(), set(), set()
        self.outbox = Outbox(self._write, limit=settings.LIVE_CLIENT_BUFFER)
        attach_flow_control(self.base_send, self.outbox)
        self.writer = asyncio.ensure_future(self.outbox.run())
        self.writer.add_done_callback(self._writer_done)
        user = self.scope["user"]
        assert user is not None  # authenticated: AuthenticatedJsonConsumer closed it otherwise
        self._queue({"type": "welcome", "user": user.get_username()})

    async def _write(self, text: str) -> None:
        await self.send(text_data=text)

    def _queue(self, message: dict[str, Any] | ErrorMessage) -> None:
        self.outbox.put(json.dumps(message, separators=(",", ":")))

    async def refuse(
        self, code: str, message: str, *, field: str | None = None, limit: int | None = None
    ) -> None:
        self._queue(error_message(code, message, field=field, limit=limit))  # through the outbox

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self._ended:
            return  # closing after a failure: nothing more is taken
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.refuse("invalid_message", "expected an object with a 'type'")
            return
        kind = content["type"]
        if kind == "ping":
            self._queue({"type": "pong", "dropped_total": self.outbox.dropped_total})
        elif kind in ("subscribe", "unsubscribe"):
            await self._change(kind, content)
        else:
            await self.refuse("unknown_type", f"unknown type {kind[:64]!r}", field="type")

    async def _change(self, kind: str, content: dict[str, Any]) -> None:
        limit = settings.LIVE_MAX_SUBSCRIPTIONS
        try:
            wanted = groups.subscription(content, limit=limit)
        except groups.TooManySubscriptions as exc:
            await self.refuse(exc.code, str(exc), limit=exc.limit)
            return
        except groups.SubscriptionError as exc:
            await self.refuse(exc.code, str(exc), field=exc.field)
            return
        adding = kind == "subscribe"
        before = self.follow_all, self.rooms, self.sensors
        rooms = self.rooms | wanted.rooms if adding else self.rooms - wanted.rooms
        sensors = self.sensors | wanted.sensors if adding else self.sensors - wanted.sensors
        if adding and len(rooms) + len(sensors) > limit:  # before any group is joined
            exc = groups.TooManySubscriptions(limit=limit, wanted=len(rooms) + len(sensors))
            await self.refuse(exc.code, str(exc), limit=limit)
            return
        if wanted.follow_all:
            self.follow_all = adding
        self.rooms, self.sensors = rooms, sensors
        try:
            await self._sync_groups()
        except (OSError, RedisError) as exc:
            logger.warning("live feed: following what a client asked failed: %s", exc)
            # Back to what was followed; leaving what the failed change joined needs no Redis.
            self.follow_all, self.rooms, self.sensors = before
            await self._sync_groups()
            await self.refuse("unavailable", "the live feed is unavailable now; try again later")
            return
        self._queue({"type": f"{kind}d", "subscriptions": self._describe()})

    def _describe(self) -> dict[str, Any]:
        return {"all": self.follow_all, "rooms": sorted(self.rooms), "sensors": sorted(self.sensors)}

    async def _sync_groups(self) -> None:
        # Sensor followers listen on the all-group and filter (see groups.publish_readings).
        target = {groups.room_group(r) for r in self.rooms}
        if self.follow_all or self.sensors:
            target.add(groups.ALL)
        if self._hub is None:
            self._hub = hub()
        for group in target - self.joined:
            await self._hub.join(group, self)
            self.joined.add(group)
            if self._ended:  # the connection failed while this join waited for Redis
                self._hub.discard(self)
                return
        for group in self.joined - target:
            await self._hub.leave(group, self)
            self.joined.discard(group)

    async def disconnect(self, code: int) -> None:
        self._end(leave_hub=False)
        if self._hub is not None:
            await self._hub.forget(self)  # waits for the unsubscribes, unlike `_end`

    def _end(self, *, leave_hub: bool = True) -> None:
        """Stop writing and leave every group of the hub, now (it never waits, so it runs in a
        `finally` of a cancelled task as well)."""
        self._ended = True
        if self.writer is not None:
            self.writer.cancel()
        outbox: Outbox | None = getattr(self, "outbox", None)
        if outbox is not None:
            outbox.close()
        if leave_hub and self._hub is not None:
            self._hub.discard(self)

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        if writer.cancelled():
            return
        exc = writer.exception()  # retrieved, or asyncio logs it with a traceback
        if exc is None or self._ended:
            return
        logger.info("live feed: writing to a client failed (%s); closing it", exc)
        self._fail()

    def evicted(self) -> None:
        """The hub put this client out (its delivery raised): close the connection."""
        self._fail()

    def _fail(self) -> None:
        """Something under this connection failed: leave the feed now and close it with 4500,
        so the client reconnects rather than waiting on a feed that no longer reaches it."""
        if self._ended:
            return
        self._end()
        self._closer = asyncio.ensure_future(self._close_failed())

    async def _close_failed(self) -> None:
        try:
            await self.close(code=CLOSE_INTERNAL_ERROR)
        except (OSError, RuntimeError) as exc:  # the connection is gone already
            logger.debug("live feed: closing a failed connection: %s", exc)

    def _sensor_share(self, room: str | None, sensor_id: str | None) -> bool:
        # What a sensor follower takes from the all-group: its sensors, unless their room's
        # group already brings them.
        return sensor_id in self.sensors and (room is None or room not in self.rooms)

    def deliver(self, event: dict[str, Any]) -> None:
        """A message published to one of this client's groups (see `groups`), handed over by
        the process's hub (`hub`).

        A message goes to the all-group and to the group of each room it concerns; this
        client may be in several. Followers of everything take it from the all-group only;
        room followers from the room's group; sensor followers from the all-group, keeping
        their sensors in rooms they do not follow. So each reaches the client once, and the
        common cases forward the text encoded once by the publisher.
        """
        from_all = event["group"] == groups.ALL
        if self.follow_all:
            if from_all:
                self.outbox.put(event["text"])
            return
        if not from_all:
            self.outbox.put(event["text"])  # a followed room's group: all of it is wanted
            return
        if event["kind"] == "reading":
            readings = [
                r
                for r in json.loads(event["text"])["readings"]
                if self._sensor_share(r.get("room"), r["sensor_id"])
            ]
            if readings:
                self._queue({"type": "reading", "readings": readings})
        elif self._sensor_share(event.get("room"), event.get("sensor_id")):
            self.outbox.put(event["text"])
