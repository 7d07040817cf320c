"""Periodic jobs of the ingestion module; thin wrappers around its services."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="ingestion.tasks.ftp_scan_all")
def ftp_scan_all() -> None:
    """Scan every enabled remote source for new meter files (issue #4 fills this in)."""
    logger.info("FTP scan: no remote sources model yet")
