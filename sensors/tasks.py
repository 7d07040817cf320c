"""Periodic jobs of the sensors module; thin wrappers that will call its services."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="sensors.tasks.room_metrics_compute")
def room_metrics_compute() -> None:
    """Roll readings up into room metrics (issue #3 fills this in)."""
    logger.info("room metrics: nothing to compute yet (rollups arrive with the readings store)")


@shared_task(name="sensors.tasks.readings_cleanup")
def readings_cleanup() -> None:
    """Delete raw readings past their retention (issue #3 fills this in)."""
    logger.info("readings cleanup: no readings store yet")
