"""The live feed at /api/v1/ws: readings, room metrics, sensor status, DR and ingestion news."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from django.conf import settings

from energy_dashboard.ws import AuthenticatedJsonConsumer, Outbox, attach_flow_control
from sensors import live
from sensors.live_hub import hub

logger = logging.getLogger(__name__)


class LiveConsumer(AuthenticatedJsonConsumer):
    """Clients subscribe to everything, to rooms or to sensors, and receive typed JSON messages.

    Client messages: ``{"type": "subscribe"|"unsubscribe", "all": true}``,
    ``{"type": "subscribe", "rooms": [...]}``, ``{"type": "subscribe", "sensors": [...]}``,
    ``{"type": "ping"}``. Each answer and each pushed message has a ``type``. Followers of
    everything also get `dr_event` and `ingestion` messages.

    Everything this consumer sends goes through one bounded `Outbox` (LIVE_CLIENT_BUFFER
    frames): a client that reads too slowly loses its oldest frames and gets a `lagging`
    message saying how many, while other clients are served as usual. Published messages
    come from the process's hub, not through Channels' groups (ADR 0007).
    """

    follow_all: bool
    rooms: set[str]
    sensors: set[str]
    joined: set[str]
    outbox: Outbox
    writer: asyncio.Task[None] | None = None

    async def on_authenticated(self) -> None:
        self.follow_all, self.rooms, self.sensors, self.joined = False, set(), set(), set()
        self.outbox = Outbox(self._write, limit=settings.LIVE_CLIENT_BUFFER)
        attach_flow_control(self.base_send, self.outbox)
        self.writer = asyncio.ensure_future(self.outbox.run())
        self._queue({"type": "welcome", "user": self.scope["user"].get_username()})

    async def _write(self, text: str) -> None:
        await self.send(text_data=text)

    def _queue(self, message: dict[str, Any]) -> None:
        self.outbox.put(json.dumps(message, separators=(",", ":")))

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            self._queue({"type": "error", "message": "expected an object with a 'type'"})
            return
        kind = content["type"]
        if kind == "ping":
            self._queue({"type": "pong", "dropped_total": self.outbox.dropped_total})
        elif kind in ("subscribe", "unsubscribe"):
            try:
                wanted = live.subscription(content)
            except ValueError as exc:
                self._queue({"type": "error", "message": str(exc)})
                return
            adding = kind == "subscribe"
            if wanted.follow_all:
                self.follow_all = adding
            self.rooms = self.rooms | wanted.rooms if adding else self.rooms - wanted.rooms
            self.sensors = self.sensors | wanted.sensors if adding else self.sensors - wanted.sensors
            await self._sync_groups()
            self._queue({"type": f"{kind}d", "subscriptions": self._describe()})
        else:
            self._queue({"type": "error", "message": f"unknown type {kind!r}"})

    def _describe(self) -> dict[str, Any]:
        return {"all": self.follow_all, "rooms": sorted(self.rooms), "sensors": sorted(self.sensors)}

    async def _sync_groups(self) -> None:
        # Sensor followers listen on the all-group and filter (see live.publish_readings).
        target = {live.room_group(r) for r in self.rooms}
        if self.follow_all or self.sensors:
            target.add(live.ALL)
        for group in target - self.joined:
            await hub().join(group, self)
        for group in self.joined - target:
            await hub().leave(group, self)
        self.joined = target

    async def disconnect(self, code: int) -> None:
        if self.writer is not None:
            self.writer.cancel()
        for group in getattr(self, "joined", set()):
            await hub().leave(group, self)

    def _sensor_share(self, room: str | None, sensor_id: str | None) -> bool:
        # What a sensor follower takes from the all-group: its sensors, unless their room's
        # group already brings them.
        return sensor_id in self.sensors and (room is None or room not in self.rooms)

    def deliver(self, event: dict[str, Any]) -> None:
        """A message published to one of this client's groups (see sensors.live), handed over
        by the process's hub (sensors.live_hub).

        A message goes to the all-group and to the group of each room it concerns; this
        client may be in several. Followers of everything take it from the all-group only;
        room followers from the room's group; sensor followers from the all-group, keeping
        their sensors in rooms they do not follow. So each reaches the client once, and the
        common cases forward the text encoded once by the publisher.
        """
        from_all = event["group"] == live.ALL
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
