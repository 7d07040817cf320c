"""Publishing to the live WebSocket: group names and the one helper every push goes through."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Subscription:
    """What a subscribe/unsubscribe message names."""

    follow_all: bool
    rooms: frozenset[str]
    sensors: frozenset[str]


def subscription(message: dict[str, Any]) -> Subscription:
    """Parse a subscribe/unsubscribe message; ValueError when it names nothing valid."""
    keys: dict[str, frozenset[str]] = {}
    for field in ("rooms", "sensors"):
        values = message.get(field, [])
        if not isinstance(values, list) or not all(isinstance(k, str) and _KEY.match(k) for k in values):
            raise ValueError(f"'{field}' must be a list of names (letters, digits, - _ .)")
        keys[field] = frozenset(values)
    follow_all = message.get("all") is True
    if not follow_all and not keys["rooms"] and not keys["sensors"]:
        raise ValueError("name what to follow: 'all': true, 'rooms': [...] or 'sensors': [...]")
    return Subscription(follow_all, keys["rooms"], keys["sensors"])


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
    """Push a batch of stored readings: the whole batch to the all-group, each room's share to
    its group. Messages of one batch share an id, so a client that follows several matching
    groups gets each reading once (the consumer drops repeats).

    Sensor followers listen on the all-group and keep their sensors' readings (the consumer
    filters): one group send per sensor would cost a Redis round trip per sensor in the batch,
    and an import touches thousands.
    """
    batch_id = uuid.uuid4().hex
    by_group: dict[str, list[dict[str, Any]]] = {ALL: readings}
    for reading in readings:
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


def publish(payload: dict[str, Any], *, rooms: Iterable[str] = ()) -> None:
    """Push `payload` (a dict with a "type") to everyone following it.

    The message goes to the all-group and to the group of each room it concerns;
    a client in several of them gets it once (the consumer drops repeated ids).
    """
    message = {"type": "live.message", "id": uuid.uuid4().hex, "payload": payload}
    # Sensor followers are in the all-group; the consumer filters by the payload's sensor_id.
    groups = [ALL, *(room_group(r) for r in set(rooms))]
    _send([(group, message) for group in groups], str(payload.get("type")))
