"""Analytics answers cached in Redis, keyed by the version of the data they were computed from.

Every local day has a version (a Redis counter) that the aggregation job and the backfill
increase, after they commit, for each day whose rollups or room metrics they rewrote; a
registry version goes up when sensors or rooms are changed or deleted. An answer is stored
under its request and the versions of the days it covers, so a new version makes the old
entry unreachable: no entry is ever invalidated by deleting it, and none is served after its
data changed. A dashboard's views of past days stay cached while today's are recomputed
each minute as readings arrive; `ANALYTICS_CACHE_TTL` bounds how long an entry is kept.

The cache is an optimisation only: with Redis unreachable, answers are computed each time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import date

from django.conf import settings
from redis.exceptions import RedisError

from energy_dashboard.core.redis import redis_client

logger = logging.getLogger(__name__)

PREFIX = "ed:analytics:"
REGISTRY = PREFIX + "v:registry"
# Day versions outlive any entry that names them (entries live ANALYTICS_CACHE_TTL seconds).
VERSION_TTL_S = 400 * 86_400


def _day_key(day: date) -> str:
    return f"{PREFIX}v:{day.isoformat()}"


def days_changed(days: Iterable[date]) -> None:
    """The rollups or room metrics of these local days were rewritten (call after commit)."""
    keys = sorted({_day_key(day) for day in days})
    if keys:
        _bump(keys)


def registry_changed() -> None:
    """Sensors or rooms changed: every cached answer is out of date."""
    _bump([REGISTRY])


def _bump(keys: list[str]) -> None:
    try:
        pipe = redis_client().pipeline(transaction=False)
        for key in keys:
            pipe.incr(key)
            pipe.expire(key, VERSION_TTL_S)
        pipe.execute()
    except (OSError, RedisError) as exc:
        # Without the new version an entry could outlive its data: drop everything instead.
        logger.warning("analytics cache: could not record a change (%s); flushing it", exc)
        clear()


def clear() -> None:
    """Drop every entry and version (after restoring a database backup, and between tests,
    whose databases roll back while Redis keeps what they cached)."""
    try:
        client = redis_client()
        for key in client.scan_iter(match=PREFIX + "*", count=1000):
            client.delete(key)
    except (OSError, RedisError) as exc:
        logger.error("analytics cache: flush failed too (%s)", exc)


def cached(kind: str, request: str, days: Iterable[date], compute: Callable[[], bytes]) -> bytes:
    """The answer to `request` (a canonical string of its parameters) over local `days`:
    from the cache when it holds one computed from the current versions, else computed and
    stored."""
    ttl = settings.ANALYTICS_CACHE_TTL_S
    if ttl <= 0:
        return compute()
    version_keys = [REGISTRY, *sorted({_day_key(day) for day in days})]
    try:
        client = redis_client()
        versions = client.mget(version_keys)
        digest = hashlib.sha256(
            # The client does not decode responses: a value is bytes (redis-py's types say bytes | str).
            "\n".join(
                [kind, request, *(v.decode() if isinstance(v, bytes) and v else "0" for v in versions)]
            ).encode()
        ).hexdigest()
        key = f"{PREFIX}{kind}:{digest}"
        found = client.get(key)
    except (OSError, RedisError) as exc:
        logger.debug("analytics cache unavailable: %s", exc)
        return compute()
    if isinstance(found, bytes):
        return found
    answer = compute()
    try:
        client.set(key, answer, ex=ttl)
    except (OSError, RedisError) as exc:
        logger.debug("analytics cache: could not store an answer: %s", exc)
    return answer
