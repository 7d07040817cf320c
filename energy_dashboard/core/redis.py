"""The process's Redis client, for whatever keeps short-lived shared state in Redis (heartbeats,
the analytics cache, login throttles). The Channels layer and Celery keep their own clients."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """One client (and connection pool) per process, with short timeouts so a dead Redis fails fast."""
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
    )
