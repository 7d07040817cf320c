"""Periodic jobs of the sensors module: thin wrappers around its services."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from sensors import services

logger = logging.getLogger(__name__)


@shared_task(name="sensors.tasks.room_metrics_compute")
def room_metrics_compute() -> dict[str, int]:
    """Bring rollups and room metrics up to date with the readings that arrived."""
    done = services.aggregates_compute()
    logger.info("room metrics: %s", done)
    return done


@shared_task(name="sensors.tasks.readings_cleanup")
def readings_cleanup() -> dict[str, int]:
    """Delete raw readings (and quarter-hour rollups) past their retention."""
    done = services.readings_cleanup()
    logger.info("readings cleanup: %s", done)
    return done


@shared_task(name="sensors.tasks.readings_ingest", acks_late=True)
def readings_ingest(readings: list[dict[str, Any]], source: str = "task") -> dict[str, Any]:
    """Ingest a batch in a worker (for producers that queue readings instead of POSTing them).

    Idempotent: a redelivered batch finds its points stored and adds nothing.
    """
    return dict(services.readings_ingest(readings=readings, source=source))


@shared_task(name="sensors.tasks.sensors_mark_stale")
def sensors_mark_stale() -> dict[str, Any]:
    """Mark sensors that stopped reporting as stale."""
    return services.sensors_mark_stale()
