"""Publishing to the live WebSocket: group names and the one helper every push goes through."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

ALL = "live.all"
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def room_group(name: str) -> str:
    """The group of one room's subscribers."""
    return f"live.room.{name}"


def sensor_group(sensor_id: str) -> str:
    """The group of one sensor's subscribers."""
    return f"live.sensor.{sensor_id}"


def groups_for(message: dict[str, Any]) -> list[str]:
    """The groups a subscribe/unsubscribe message names; ValueError when it names none."""
    groups: list[str] = []
    if message.get("all") is True:
        groups.append(ALL)
    for field, to_group in (("rooms", room_group), ("sensors", sensor_group)):
        keys = message.get(field, [])
        if not isinstance(keys, list) or not all(isinstance(k, str) and _KEY.match(k) for k in keys):
            raise ValueError(f"'{field}' must be a list of names (letters, digits, - _ .)")
        groups.extend(to_group(k) for k in keys)
    if not groups:
        raise ValueError("name what to follow: 'all': true, 'rooms': [...] or 'sensors': [...]")
    return groups


def _send(messages: list[tuple[str, dict[str, Any]]], what: str) -> None:
    layer = get_channel_layer()
    if layer is None or not messages:
        return

    async def send_all() -> None:
        for group, message in messages:
            await layer.group_send(group, message)

    try:
        async_to_sync(send_all)()
    except (OSError, RedisError) as exc:
        # The live feed is best-effort; the data is committed and the dashboard catches up
        # on its next load. Say so once per failure, without a traceback per message.
        logger.warning("live feed unavailable, %s not pushed: %s", what, exc)


def publish_readings(readings: list[dict[str, Any]]) -> None:
    """Push a batch of stored readings: the whole batch to the all-group, each room's and each
    sensor's share to its group. Messages of one batch share an id, so a client that follows
    several matching groups gets each reading once (the consumer drops repeats)."""
    batch_id = uuid.uuid4().hex
    by_group: dict[str, list[dict[str, Any]]] = {ALL: readings}
    for reading in readings:
        by_group.setdefault(sensor_group(reading["sensor_id"]), []).append(reading)
        if reading.get("room"):
            by_group.setdefault(room_group(reading["room"]), []).append(reading)
    _send(
        [
            (
                group,
                {"type": "live.message", "id": batch_id, "payload": {"type": "reading", "readings": part}},
            )
            for group, part in by_group.items()
        ],
        "reading",
    )


def publish(payload: dict[str, Any], *, rooms: Iterable[str] = (), sensors: Iterable[str] = ()) -> None:
    """Push `payload` (a dict with a "type") to everyone following it.

    The message goes to the all-group and to the group of each room and sensor it concerns;
    a client in several of them gets it once (the consumer drops repeated ids).
    """
    message = {"type": "live.message", "id": uuid.uuid4().hex, "payload": payload}
    groups = [ALL, *(room_group(r) for r in set(rooms)), *(sensor_group(s) for s in set(sensors))]
    _send([(group, message) for group in groups], str(payload.get("type")))
