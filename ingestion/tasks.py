"""Celery tasks of the ingestion module; thin wrappers around its services.

One task per file (`file_run`), so a bad or slow file never holds up the others.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import transaction

from ingestion import services
from ingestion.models import RemoteSource

logger = logging.getLogger(__name__)


def _queue_file(file_id: int) -> None:
    # After the ledger row commits, or the worker could look for it before it exists.
    transaction.on_commit(lambda: file_run.delay(file_id), using=services.DB)


@shared_task(name="ingestion.tasks.ftp_scan_all")
def ftp_scan_all(force: bool = False) -> list[str]:
    """Queue a scan of each enabled source that is due (with `force`, at a worker's start, of
    every enabled source scanned before and the settings' source), and take again uploads and
    local files that a dead worker left half-way."""
    services.default_source_sync()
    due = services.sources_to_scan_at_start() if force else services.sources_due()
    for source in due:
        source_scan.delay(source.pk)
    for file_id in services.files_abandoned():
        file_run.delay(file_id)
    return [s.name for s in due]


@shared_task(name="ingestion.tasks.source_scan")
def source_scan(source_id: int) -> dict[str, Any] | None:
    """Scan one source; queue one `file_run` per new file. Exits quietly if the source is gone."""
    source = RemoteSource.objects.filter(pk=source_id).first()
    if source is None:
        return None
    result = services.source_scan(source=source, on_file=_queue_file)
    logger.info("scan of %s: %s", source.name, result.as_dict())
    return result.as_dict()


@shared_task(name="ingestion.tasks.file_run", acks_late=True)
def file_run(file_id: int) -> str | None:
    """Download (if queued) and process one file; idempotent, claims the file first."""
    row = services.file_run(file_id=file_id)
    return row.status if row is not None else None
