"""The state of the platform's dependencies and processes, for /health and the overview."""

from __future__ import annotations

import time
from typing import Any, TypedDict

from django.conf import settings
from django.db import connections

from energy_dashboard.core import heartbeats
from energy_dashboard.core.redis import redis_client


class Check(TypedDict, total=False):
    """One dependency's state."""

    ok: bool
    latency_ms: float
    error: str
    detail: Any


def _timed(fn: Any) -> Check:
    start = time.perf_counter()
    try:
        detail = fn()
    except Exception as exc:  # any failure is the answer, not a crash of /health
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    check: Check = {"ok": True, "latency_ms": round((time.perf_counter() - start) * 1000, 2)}
    if detail is not None:
        check["detail"] = detail
    return check


def database_checks() -> dict[str, Check]:
    """`SELECT 1` on each alias."""

    def ping(alias: str) -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    return {alias: _timed(lambda alias=alias: ping(alias)) for alias in settings.DATABASES}


def redis_check() -> Check:
    """PING on the Redis that carries the broker, the channel layer and the cache."""
    return _timed(lambda: redis_client().ping() and None)


def process_checks() -> dict[str, Any]:
    """Celery workers and beat, from their heartbeats; empty when Redis is unreachable."""
    now = time.time()
    try:
        workers = heartbeats.live_workers()
        beat = heartbeats.beat_last_tick()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
        return {"workers": {"ok": False, "error": error}, "beat": {"ok": False, "error": error}}
    return {
        "workers": {
            "ok": bool(workers),
            "count": len(workers),
            "names": sorted(w["name"] for w in workers),
            **({} if workers else {"error": "no Celery worker has reported in"}),
        },
        "beat": {
            "ok": beat is not None,
            "last_tick_age_s": round(now - beat["at"], 1) if beat else None,
            **({} if beat else {"error": "beat has not reported in"}),
        },
    }


def mqtt_check() -> dict[str, Any]:
    """The MQTT ingester, per enabled broker (connected, last message, counts). A broker that
    is down is shown here and leaves the platform healthy (it is someone else's server); an
    ingester that does not report while a broker is enabled is a process down, and is not."""
    from ingestion import services as ingestion_services

    try:
        return ingestion_services.mqtt_health()
    except Exception as exc:
        return {"ok": False, "running": None, "error": f"{type(exc).__name__}: {exc}"[:300]}


def health() -> tuple[bool, dict[str, Any]]:
    """Every check; healthy only when all pass."""
    databases = database_checks()
    redis_state = redis_check()
    processes: dict[str, dict[str, Any]] = (
        process_checks()
        if redis_state["ok"]
        else {
            "workers": {"ok": False, "error": "Redis is down"},
            "beat": {"ok": False, "error": "Redis is down"},
        }
    )
    mqtt = mqtt_check() if redis_state["ok"] else {"ok": False, "running": None, "error": "Redis is down"}
    healthy = (
        all(c["ok"] for c in databases.values())
        and redis_state["ok"]
        and processes["workers"]["ok"]
        and processes["beat"]["ok"]
        and mqtt.get("running") is not False
    )
    return healthy, {
        "status": "ok" if healthy else "unhealthy",
        "databases": databases,
        "redis": redis_state,
        **processes,
        "mqtt": mqtt,
    }
