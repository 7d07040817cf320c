"""The live feed's groups: their names and Redis channels, what a client may follow, the message
format, and the one helper every push goes through (ADR 0004, 0007)."""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
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


class SubscriptionError(ValueError):
    """A subscribe/unsubscribe message that cannot be taken; `field` names the part at fault."""

    code = "invalid_subscription"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TooManySubscriptions(SubscriptionError):
    """More rooms and sensors than one connection may follow (LIVE_MAX_SUBSCRIPTIONS)."""

    code = "too_many_subscriptions"

    def __init__(self, *, limit: int, wanted: int) -> None:
        super().__init__(
            f"a connection may follow at most {limit} rooms and sensors in all; this would make {wanted}"
        )
        self.limit = limit


def subscription(message: dict[str, Any], *, limit: int) -> Subscription:
    """Parse a subscribe/unsubscribe message naming at most `limit` rooms and sensors in all;
    SubscriptionError when it names nothing valid, TooManySubscriptions past `limit` (counted
    before any name is looked at)."""
    lists: dict[str, list[Any]] = {}
    for field in ("rooms", "sensors"):
        values = message.get(field, [])
        if not isinstance(values, list):
            raise SubscriptionError(f"'{field}' must be a list of names", field=field)
        lists[field] = values
    named = len(lists["rooms"]) + len(lists["sensors"])
    if named > limit:
        raise TooManySubscriptions(limit=limit, wanted=named)
    keys: dict[str, frozenset[str]] = {}
    for field, values in lists.items():
        if not all(isinstance(k, str) and _KEY.match(k) for k in values):
            raise SubscriptionError(
                f"'{field}' must be a list of names (letters, digits, - _ .; at most 64)", field=field
            )
        keys[field] = frozenset(values)
    follow_all = message.get("all") is True
    if not follow_all and not keys["rooms"] and not keys["sensors"]:
        raise SubscriptionError("name what to follow: 'all': true, 'rooms': [...] or 'sensors': [...]")
    return Subscription(follow_all, keys["rooms"], keys["sensors"])


# Redis pub/sub channels of the live groups; the hub (energy_dashboard.live.hub) of each daphne
# process subscribes to those its clients follow. Pub/sub ignores Redis' database number, so the
# names carry it: deployments (or test runs) sharing a Redis server, each on its own database,
# would otherwise hear each other's live feed and count each other's listeners.
CHANNEL_PREFIX = "ed:live:"


@functools.lru_cache(maxsize=4)
def _channel_prefix(redis_url: str) -> str:
    from redis.connection import parse_url

    return f"{CHANNEL_PREFIX}{parse_url(redis_url).get('db') or 0}:"


def channel(group: str) -> str:
    """The Redis channel a group's messages are published on: ``ed:live:<db>:<group>``."""
    return _channel_prefix(settings.REDIS_URL) + group


def _envelope(group: str, message_id: str, payload: dict[str, Any]) -> bytes:
    """One published message: a JSON header line (what the hubs and consumers route by), then
    the payload's JSON text. The payload is encoded here, once, not in each of the hundreds
    of consumers that forward it: they send the text as it is unless they must filter."""
    header = {
        "id": message_id,
        "group": group,
        "kind": payload.get("type"),
        "room": payload.get("room"),
        "sensor_id": payload.get("sensor_id"),
    }
    # Compact JSON has no raw newline (json escapes them inside strings): the first one ends
    # the header.
    return (
        json.dumps(header, separators=(",", ":")).encode()
        + b"\n"
        + json.dumps(payload, separators=(",", ":")).encode()
    )


def decode(data: bytes) -> dict[str, Any]:
    """A published message as the consumers take it: the header's fields and `text`."""
    head, _, text = data.partition(b"\n")
    event: dict[str, Any] = json.loads(head)
    event["text"] = text.decode()
    return event


_redis: Any = None


def _client() -> Any:
    """One synchronous Redis client per process (redis-py's pool is thread-safe)."""
    global _redis  # noqa: PLW0603 (a per-process connection pool)
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
        )
    return _redis


def _send(messages: list[tuple[str, Callable[[], bytes]]], what: str) -> None:
    """Publish each (group, envelope builder) to the groups someone follows.

    A group is a Redis channel: one PUBSUB NUMSUB tells which groups have a listener in any
    daphne process, and only their envelopes are built and published, in one pipeline, from
    this synchronous process (a web worker or a Celery worker). With nobody watching, a batch
    costs one round trip and no JSON encoding.
    """
    if not messages:
        return
    try:
        channels = [channel(group) for group, _ in messages]
        client = _client()
        listening = dict(client.pubsub_numsub(*channels))
        wanted = [
            (c, build) for c, (_, build) in zip(channels, messages, strict=True) if listening.get(c.encode())
        ]
        if wanted:
            pipe = client.pipeline(transaction=False)
            for name, build in wanted:
                pipe.publish(name, build())
            pipe.execute()
    except (OSError, RedisError) as exc:
        # The live feed is best-effort; the data is committed and the dashboard catches up
        # on its next load. Say so once per failure, without a traceback per message.
        logger.warning("live feed unavailable, %s not pushed: %s", what, exc)


def publish_readings(readings: Sequence[dict[str, Any]]) -> None:
    """Push a batch of stored readings: the whole batch to the all-group, each room's share to
    its group.

    A reading reaches a client once: through its room's group when the client follows that
    room, otherwise through the all-group (followers of everything, and sensor followers,
    whose consumer keeps only their sensors). One group send per sensor would cost a Redis
    round trip per sensor in the batch, and an import touches thousands.

    `readings` may say which rooms it holds (a `rooms` attribute, as the ingest's batches do):
    then nothing is read from it unless some group has a listener.
    """
    batch_id = uuid.uuid4().hex
    rooms = getattr(readings, "rooms", None)
    if rooms is None:
        rooms = {reading["room"] for reading in readings if reading.get("room")}
    shares: dict[str, list[dict[str, Any]]] = {}

    def share(group: str) -> list[dict[str, Any]]:
        if not shares:  # the batch split by room once, when the first envelope is built
            shares[ALL] = list(readings)
            for reading in shares[ALL]:
                if reading.get("room"):
                    shares.setdefault(room_group(reading["room"]), []).append(reading)
        return shares.get(group, [])

    def envelope(group: str) -> bytes:
        return _envelope(group, batch_id, {"type": "reading", "readings": share(group)})

    groups = [ALL, *(room_group(room) for room in sorted(rooms))]
    _send([(group, functools.partial(envelope, group)) for group in groups], "reading")


def publish(payload: dict[str, Any], *, rooms: Iterable[str] = ()) -> None:
    """Push `payload` (a dict with a "type") to everyone following it: the all-group and the
    group of each room it concerns (the consumer keeps one copy)."""
    message_id = uuid.uuid4().hex
    groups = [ALL, *(room_group(r) for r in set(rooms))]
    _send(
        [(group, functools.partial(_envelope, group, message_id, payload)) for group in groups],
        str(payload.get("type")),
    )
