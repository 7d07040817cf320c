"""Celery tasks of the ingestion module; thin wrappers around its services.

One task per file (`file_run`), so a bad or slow file never holds up the others.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import transaction

from ingestion import services
from ingestion.models import IngestedFile, RemoteSource

logger = logging.getLogger(__name__)


def _queue_file(file_id: int) -> None:
    # After the ledger row commits, or the worker could look for it before it exists.
    transaction.on_commit(lambda: file_run.delay(file_id), using=services.DB)


@shared_task(name="ingestion.tasks.ftp_scan_all")
def ftp_scan_all(force: bool = False) -> dict[str, Any]:
    """Queue a scan of each enabled source that is due (with `force`, at a worker's start, of
    every enabled source scanned before and the settings' source), and take again uploads and
    local files that a dead worker left half-way. A source or file it cannot handle is skipped,
    recorded on its row and reported in the result; the rest are not held up by it."""
    report: dict[str, Any] = {"scanned": [], "skipped": [], "requeued": [], "given_up": []}
    try:
        services.default_source_sync()
    except Exception as exc:  # the other sources are still scanned
        logger.exception("the FTP_SA4CPS_* source could not be brought up to date")
        report["skipped"].append({"source": services.DEFAULT_SOURCE, "error": f"{type(exc).__name__}: {exc}"})
    schedule = services.sources_schedule(at_start=force)
    report["skipped"] += schedule.skipped
    for source in schedule.due:
        source_scan.delay(source.pk)
        report["scanned"].append(source.name)
    report["given_up"] = services.files_give_up()
    for file_id in services.files_abandoned():
        file_run.delay(file_id)
        report["requeued"].append(file_id)
    return report


@shared_task(name="ingestion.tasks.source_scan")
def source_scan(source_id: int) -> dict[str, Any] | None:
    """Scan one source; queue one `file_run` per new file. Exits quietly if the source is gone,
    or (recorded on it) if its row cannot be read."""
    try:
        source = RemoteSource.objects.filter(pk=source_id).first()
    except Exception as exc:
        services.source_unreadable(source_id=source_id, error=exc)
        return None
    if source is None:
        return None
    result = services.source_scan(source=source, on_file=_queue_file)
    logger.info("scan of %s: %s", source.name, result.as_dict())
    return result.as_dict()


@shared_task(name="ingestion.tasks.files_retention")
def files_retention() -> dict[str, Any]:
    """Delete the kept content of files past their retention (daily); see the service."""
    return services.files_retention()


@shared_task(name="ingestion.tasks.file_run", acks_late=True)
def file_run(file_id: int) -> str | None:
    """Download (if queued) and process one file; idempotent, claims the file first. A row that
    cannot be read is marked failed (its status is returned)."""
    row = services.file_run(file_id=file_id)
    if row is not None:
        return row.status
    return IngestedFile.objects.filter(pk=file_id).values_list("status", flat=True).first()
