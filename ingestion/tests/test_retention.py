"""The kept files' retention job: the content of imported and duplicate files goes after
INGESTION_FILES_RETENTION_DAYS, that of rejected and failed ones after the longer
INGESTION_REJECTED_FILES_RETENTION_DAYS; the ledger rows stay and say the content is gone.
One file that cannot be deleted does not stop the others."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from ingestion import services, tasks
from ingestion.models import IngestedFile
from ingestion.tests.helpers import meter_file

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture(autouse=True)
def files_dir(settings: Any, tmp_path: Path) -> Path:
    settings.INGESTION_FILES_DIR = tmp_path / "kept"
    settings.INGESTION_FILES_RETENTION_DAYS = 90
    settings.INGESTION_REJECTED_FILES_RETENTION_DAYS = 365
    return tmp_path / "kept"


def kept(name: str, content: bytes, *, status: str | None = None, days_ago: float = 0) -> IngestedFile:
    """A file taken in and processed (or left at `status`), its outcome `days_ago` old."""
    row = services.file_take(name=name, stream=io.BytesIO(content))
    if status is None:
        row = services.file_process(file_id=row.pk)
    else:
        IngestedFile.objects.filter(pk=row.pk).update(status=status)
    IngestedFile.objects.filter(pk=row.pk).update(finished_at=datetime.now(UTC) - timedelta(days=days_ago))
    return IngestedFile.objects.get(pk=row.pk)


def content_of(row: IngestedFile) -> Path:
    return Path(row.stored_path)


def test_old_imported_and_duplicate_files_lose_their_content_and_the_ledger_says_so(
    operator_api: APIClient,
) -> None:
    old = kept("old.slg_v2", meter_file("PT9101", count=4), days_ago=91)
    resent = kept("old-again.slg_v2", meter_file("PT9101", count=4), days_ago=91)
    young = kept("young.slg_v2", meter_file("PT9102", count=4), days_ago=89)
    assert (old.status, resent.status, young.status) == ("imported", "duplicate", "imported")
    paths = {row.pk: content_of(row) for row in (old, resent, young)}

    report = tasks.files_retention()

    assert sorted(report["deleted"]) == sorted([old.pk, resent.pk]) and report["failed"] == []
    assert not paths[old.pk].exists() and not paths[resent.pk].exists() and paths[young.pk].exists()
    for pk in (old.pk, resent.pk):
        row = IngestedFile.objects.get(pk=pk)
        assert row.stored_path == "" and row.content_deleted_at is not None
        assert row.status in ("imported", "duplicate") and row.sha256  # the history stays
    detail = operator_api.get(f"/api/v1/ingestion/files/{old.pk}").json()
    assert detail["content_kept"] is False and detail["content_deleted_at"]
    gone = operator_api.get(f"/api/v1/ingestion/files/{old.pk}/content")
    assert gone.status_code == 400 and "retention" in gone.json()["message"]
    # Its hash is still known: the same content sent again is a duplicate, not imported twice.
    again = kept("sent-once-more.slg_v2", meter_file("PT9101", count=4))
    assert again.status == "duplicate" and again.duplicate_of_id == old.pk
    assert tasks.files_retention()["deleted"] == []  # nothing left to do: idempotent


def test_rejected_and_failed_files_are_kept_longer_and_work_in_progress_never_goes() -> None:
    rejected = kept("bad.slg_v2", b"garbage", days_ago=200)
    old_rejected = kept("older-bad.slg_v2", b"more garbage", days_ago=366)
    failed = kept("failed.slg_v2", meter_file("PT9103", count=4), status="failed", days_ago=366)
    waiting = kept("waiting.slg_v2", meter_file("PT9104", count=4), status="downloaded", days_ago=1000)
    busy = kept("busy.slg_v2", meter_file("PT9105", count=4), status="processing", days_ago=1000)
    assert rejected.status == old_rejected.status == "rejected"

    report = tasks.files_retention()

    assert sorted(report["deleted"]) == sorted([old_rejected.pk, failed.pk])
    for row in (rejected, waiting, busy):
        assert content_of(row).exists() and IngestedFile.objects.get(pk=row.pk).stored_path


def test_a_retention_of_zero_keeps_files_for_ever(settings: Any) -> None:
    settings.INGESTION_FILES_RETENTION_DAYS = 0
    settings.INGESTION_REJECTED_FILES_RETENTION_DAYS = 0
    done = kept("done.slg_v2", meter_file("PT9106", count=4), days_ago=10_000)
    bad = kept("bad.slg_v2", b"garbage", days_ago=10_000)
    assert tasks.files_retention()["deleted"] == []
    assert content_of(done).exists() and content_of(bad).exists()


def test_one_file_that_cannot_be_deleted_does_not_stop_the_others(tmp_path: Path, files_dir: Path) -> None:
    first = kept("first.slg_v2", meter_file("PT9107", count=4), days_ago=100)
    # A stored path that is a directory: unlink() refuses it, whoever runs the job.
    folder = kept("folder.slg_v2", meter_file("PT9108", count=4), days_ago=100)
    content_of(folder).unlink()
    content_of(folder).mkdir()
    # A stored path outside INGESTION_FILES_DIR (a hand-edit): never deleted by the job.
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not the job's to delete")
    stray = kept("stray.slg_v2", meter_file("PT9109", count=4), days_ago=100)
    IngestedFile.objects.filter(pk=stray.pk).update(stored_path=str(outside))
    # Already gone from the disk: the row is brought in line.
    missing = kept("missing.slg_v2", meter_file("PT9110", count=4), days_ago=100)
    content_of(missing).unlink()
    last = kept("last.slg_v2", meter_file("PT9111", count=4), days_ago=100)

    report = tasks.files_retention()

    assert sorted(report["deleted"]) == sorted([first.pk, missing.pk, last.pk])
    assert sorted(f["file"] for f in report["failed"]) == sorted([folder.pk, stray.pk])
    assert not content_of(first).exists() and not content_of(last).exists()
    assert outside.exists() and content_of(folder).is_dir()
    # What could not be deleted still says where its content is.
    assert IngestedFile.objects.get(pk=folder.pk).stored_path == str(content_of(folder))
    assert IngestedFile.objects.get(pk=stray.pk).stored_path == str(outside)


def test_the_retention_job_is_on_the_schedule(settings: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    from energy_dashboard.schedule import sync_schedule

    sync_schedule()
    job = PeriodicTask.objects.select_related("crontab").get(name="ingestion: kept files retention")
    assert job.task == "ingestion.tasks.files_retention" and job.enabled
    assert (job.crontab.hour, job.crontab.minute, str(job.crontab.timezone)) == (
        "3",
        "45",
        settings.TIME_ZONE,
    )
