"""The live feed at /api/v1/ws: readings, room metrics, sensor status, DR and ingestion news."""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from typing import Any

from energy_dashboard.ws import AuthenticatedJsonConsumer
from sensors import live

logger = logging.getLogger(__name__)


class LiveConsumer(AuthenticatedJsonConsumer):
    """Clients subscribe to everything, to rooms or to sensors, and receive typed JSON messages.

    Client messages: ``{"type": "subscribe"|"unsubscribe", "all": true}``,
    ``{"type": "subscribe", "rooms": [...]}``, ``{"type": "subscribe", "sensors": [...]}``,
    ``{"type": "ping"}``. Each answer and each pushed message has a ``type``. Followers of
    everything also get `dr_event` and `ingestion` messages.
    """

    follow_all: bool
    rooms: set[str]
    sensors: set[str]
    joined: set[str]
    recent_ids: deque[str]
    batches: OrderedDict[str, set[tuple[str, str, str]]]

    async def on_authenticated(self) -> None:
        self.follow_all, self.rooms, self.sensors, self.joined = False, set(), set(), set()
        self.recent_ids = deque(maxlen=64)
        self.batches = OrderedDict()
        await self.send_json({"type": "welcome", "user": self.scope["user"].get_username()})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_json({"type": "error", "message": "expected an object with a 'type'"})
            return
        kind = content["type"]
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind in ("subscribe", "unsubscribe"):
            try:
                wanted = live.subscription(content)
            except ValueError as exc:
                await self.send_json({"type": "error", "message": str(exc)})
                return
            adding = kind == "subscribe"
            if wanted.follow_all:
                self.follow_all = adding
            self.rooms = self.rooms | wanted.rooms if adding else self.rooms - wanted.rooms
            self.sensors = self.sensors | wanted.sensors if adding else self.sensors - wanted.sensors
            await self._sync_groups()
            await self.send_json({"type": f"{kind}d", "subscriptions": self._describe()})
        else:
            await self.send_json({"type": "error", "message": f"unknown type {kind!r}"})

    def _describe(self) -> dict[str, Any]:
        return {"all": self.follow_all, "rooms": sorted(self.rooms), "sensors": sorted(self.sensors)}

    async def _sync_groups(self) -> None:
        # Sensor followers listen on the all-group and filter (see live.publish_readings).
        target = {live.room_group(r) for r in self.rooms}
        if self.follow_all or self.sensors:
            target.add(live.ALL)
        for group in target - self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        for group in self.joined - target:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = target

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    def _wanted(self, room: str | None, sensor_id: str | None) -> bool:
        return (
            self.follow_all
            or (room is not None and room in self.rooms)
            or (sensor_id is not None and sensor_id in self.sensors)
        )

    async def live_message(self, event: dict[str, Any]) -> None:
        """A message pushed to one of this client's groups (see sensors.live)."""
        # A message reaches every group it concerns: a client in the all-group and a room's
        # group would otherwise see it twice. Reading batches are split per group, so drop the
        # readings of this batch already delivered; other messages are whole: drop repeated ids.
        payload = event["payload"]
        if payload.get("type") == "reading":
            seen = self.batches.pop(event["id"], set())
            self.batches[event["id"]] = seen
            while len(self.batches) > 32:
                self.batches.popitem(last=False)
            fresh = []
            for reading in payload["readings"]:
                key = (reading["sensor_id"], reading["metric"], reading["timestamp"])
                if key not in seen and self._wanted(reading.get("room"), reading["sensor_id"]):
                    seen.add(key)
                    fresh.append(reading)
            if fresh:
                await self.send_json({"type": "reading", "readings": fresh})
            return
        if event["id"] in self.recent_ids or not self._wanted(payload.get("room"), payload.get("sensor_id")):
            return
        self.recent_ids.append(event["id"])
        await self.send_json(payload)
