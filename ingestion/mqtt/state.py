"""What the ingester says about each broker, in Redis beside the other heartbeats
(energy_dashboard/core/heartbeats.py), and the arrival times it gave messages.

- ``ed:heartbeat:mqtt:<broker>``: the broker's live state (connected, last error, counts since
  the ingester started), rewritten every second with a TTL of HEARTBEAT_MAX_AGE: a key that is
  gone is an ingester that is not running.
- ``ed:mqtt:stamp:<broker>:<mid>:<digest>``: the arrival time given to a message whose readings
  are stamped with it, written before the readings are stored. A message the broker delivers
  again (its DUP flag set: the ingester died or the connection dropped before the
  acknowledgement reached the broker) takes the same time, so its readings are repeats that the
  readings store skips instead of new points a second later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings

from energy_dashboard.core import heartbeats

STATE_PREFIX = "ed:heartbeat:mqtt:"
STAMP_PREFIX = "ed:mqtt:stamp:"
# How long an arrival time is kept for a redelivery: the broker redelivers at its next
# connection, which a supervisor restarting the ingester makes within seconds.
STAMP_TTL_S = 3600


def write(states: Sequence[dict[str, Any]]) -> None:
    """Record each broker's state (one round trip)."""
    pipe = heartbeats.redis_client().pipeline(transaction=False)
    for state in states:
        pipe.set(STATE_PREFIX + state["broker"], json.dumps(state), ex=settings.HEARTBEAT_MAX_AGE_S)
    pipe.execute()


def read() -> dict[str, dict[str, Any]]:
    """Every broker's last state that is still fresh, by broker name."""
    client = heartbeats.redis_client()
    keys = list(client.scan_iter(match=STATE_PREFIX + "*", count=100))
    values = client.mget(keys) if keys else []
    found = (json.loads(v) for v in values if v)
    return {state["broker"]: state for state in found}


def stamp_key(broker: str, mid: int, topic: str, payload: bytes) -> str:
    """A message's key: the broker, its packet id, and a digest of its topic and payload (a
    packet id is reused once acknowledged; the same id with the same content within the key's
    life is a redelivery)."""
    digest = hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=12).hexdigest()
    return f"{STAMP_PREFIX}{broker}:{mid}:{digest}"


def stamps_get(keys: Sequence[str]) -> list[float | None]:
    """The arrival times recorded under `keys` (None where none is)."""
    if not keys:
        return []
    values = heartbeats.redis_client().mget(list(keys))
    return [float(v) if v is not None else None for v in values]


def stamps_set(pairs: Iterable[tuple[str, float]]) -> None:
    """Record arrival times (one round trip)."""
    pipe = heartbeats.redis_client().pipeline(transaction=False)
    for key, stamp in pairs:
        pipe.set(key, repr(stamp), ex=STAMP_TTL_S)
    pipe.execute()


def stamps_forget(keys: Sequence[str]) -> None:
    """Drop arrival times no longer needed (their message was acknowledged long enough ago)."""
    if keys:
        heartbeats.redis_client().delete(*keys)
