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
    ``{"type": "ping"}``. Each answer and each pushed message has a ``type``.
    """

    groups_joined: set[str]
    recent_ids: deque[str]
    batches: OrderedDict[str, set[tuple[str, str, str]]]

    async def on_authenticated(self) -> None:
        self.groups_joined = set()
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
                wanted = live.groups_for(content)
            except ValueError as exc:
                await self.send_json({"type": "error", "message": str(exc)})
                return
            for group in wanted:
                if kind == "subscribe" and group not in self.groups_joined:
                    await self.channel_layer.group_add(group, self.channel_name)
                    self.groups_joined.add(group)
                elif kind == "unsubscribe" and group in self.groups_joined:
                    await self.channel_layer.group_discard(group, self.channel_name)
                    self.groups_joined.discard(group)
            await self.send_json({"type": f"{kind}d", "subscriptions": sorted(self.groups_joined)})
        else:
            await self.send_json({"type": "error", "message": f"unknown type {kind!r}"})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def live_message(self, event: dict[str, Any]) -> None:
        """A message pushed to one of this client's groups (see sensors.live.publish)."""
        # Sent to each group it concerns: a client in the all-group and a room's group would
        # otherwise see it twice. Reading batches are split per group, so drop the readings
        # of this batch already delivered; other messages are whole, so drop repeated ids.
        payload = event["payload"]
        if payload.get("type") == "reading":
            seen = self.batches.pop(event["id"], set())
            self.batches[event["id"]] = seen
            while len(self.batches) > 32:
                self.batches.popitem(last=False)
            fresh = []
            for reading in payload["readings"]:
                key = (reading["sensor_id"], reading["metric"], reading["timestamp"])
                if key not in seen:
                    seen.add(key)
                    fresh.append(reading)
            if not fresh:
                return
            payload = {"type": "reading", "readings": fresh}
        elif event["id"] in self.recent_ids:
            return
        else:
            self.recent_ids.append(event["id"])
        await self.send_json(payload)
