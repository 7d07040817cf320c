"""Periodic jobs of the demand-response module; thin wrappers around its services.

Both are idempotent (every transition is a compare-and-swap), so an overlapping or repeated
run does nothing twice. A row a job cannot handle (out of bounds, written around the
validation) is skipped, named in a warning and counted in its result as "errors"; the job goes
on with the other rows (docs/demand-response.md, "Rows the jobs cannot handle").
"""

from __future__ import annotations

import logging

from celery import shared_task

from demand_response import services

logger = logging.getLogger(__name__)


@shared_task(name="demand_response.tasks.scheduler_tick")
def scheduler_tick() -> dict[str, int]:
    """Start, dispatch and complete DR events whose time has come."""
    done = services.events_tick()
    if any(done.values()):
        logger.info("DR scheduler: %s", done)
    return done


@shared_task(name="demand_response.tasks.auto_response_tick")
def auto_response_tick() -> dict[str, int]:
    """Answer pending invitations by the policy; expire those past their deadline."""
    done = services.auto_response_run()
    if any(done.values()):
        logger.info("DR auto-response: %s", done)
    return done
