"""Liveness of the background processes, as short-lived keys in Redis.

Each Celery worker and the beat process write a key every HEARTBEAT_INTERVAL seconds with a
TTL of HEARTBEAT_MAX_AGE; /health reads them with one SCAN, so it never waits on a broadcast
to workers that may be gone.
"""

from __future__ import annotations

import json
import time
from typing import TypedDict

from django.conf import settings

from energy_dashboard.core.redis import redis_client

WORKER_PREFIX = "ed:heartbeat:worker:"
BEAT_KEY = "ed:heartbeat:beat"


class Heartbeat(TypedDict):
    """What a process says about itself in its heartbeat."""

    name: str
    pid: int
    at: float


def beat(key: str, name: str, pid: int) -> None:
    """Record that a process is alive now."""
    payload: Heartbeat = {"name": name, "pid": pid, "at": time.time()}
    redis_client().set(key, json.dumps(payload), ex=settings.HEARTBEAT_MAX_AGE_S)


def worker_beat(hostname: str, pid: int) -> None:
    """Record that the Celery worker `hostname` is alive."""
    beat(WORKER_PREFIX + hostname, hostname, pid)


def beat_beat(pid: int) -> None:
    """Record that the beat scheduler is alive and ticking."""
    beat(BEAT_KEY, "beat", pid)


def live_workers() -> list[Heartbeat]:
    """Heartbeats of the workers alive now."""
    client = redis_client()
    keys = list(client.scan_iter(match=WORKER_PREFIX + "*", count=100))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]


def beat_last_tick() -> Heartbeat | None:
    """The beat scheduler's last heartbeat, or None when it is not running."""
    value = redis_client().get(BEAT_KEY)
    return json.loads(value) if value else None
