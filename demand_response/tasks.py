"""Periodic jobs of the demand-response module; thin wrappers around its services."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="demand_response.tasks.scheduler_tick")
def scheduler_tick() -> None:
    """Start, dispatch and complete DR events (issue #5 fills this in)."""
    logger.info("DR scheduler: no events model yet")


@shared_task(name="demand_response.tasks.auto_response_tick")
def auto_response_tick() -> None:
    """Answer pending invitations by the policy (issue #5 fills this in)."""
    logger.info("DR auto-response: no invitations model yet")
