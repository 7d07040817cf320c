"""The ingestion module's periodic jobs meet rows they cannot handle (written straight to the
database, past every check of the API and the admin): each such row is skipped and reported,
on itself and in the job's result, and every other row is handled as usual."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from ingestion import services, tasks
from ingestion.models import MAX_SETTLE_S, IngestedFile, RemoteSource
from ingestion.tests.helpers import meter_file, source_for
from ingestion.tests.servers import FtpServer

pytestmark = pytest.mark.django_db(databases="__all__")


def write_raw(model: Any, pk: int, column: str, value: Any) -> None:
    """Store `value` in a row's column with plain SQL, as a bad migration or a hand-edit would."""
    table = model._meta.db_table
    with connections["ingestion"].cursor() as cursor:
        cursor.execute(f'UPDATE "{table}" SET "{column}" = %s WHERE id = %s', [value, pk])


def unreadable_instant() -> str:
    """A value a timestamp column holds that no Python datetime can be made of."""
    # PostgreSQL: a valid timestamp Python has no datetime for. SQLite: text shaped like a date
    # but naming none (the column takes any text; Django's reader raises on this shape).
    return "infinity" if connections["ingestion"].vendor == "postgresql" else "2024-13-45 25:61:61"


@pytest.fixture
def scans_queued(monkeypatch: Any) -> list[int]:
    ids: list[int] = []
    monkeypatch.setattr(tasks.source_scan, "delay", ids.append)
    return ids


@pytest.fixture
def files_queued(monkeypatch: Any) -> list[int]:
    ids: list[int] = []
    monkeypatch.setattr(tasks.file_run, "delay", ids.append)
    return ids


def test_the_scan_job_skips_and_reports_sources_it_cannot_schedule(
    settings: Any, scans_queued: list[int], files_queued: list[int]
) -> None:
    settings.FTP_CHECK_INTERVAL = 3600
    now = datetime.now(UTC)
    due = RemoteSource.objects.create(name="due", host="h.example", last_scan_at=now - timedelta(hours=2))
    unreadable = RemoteSource.objects.create(name="unreadable", host="h.example", last_scan_at=now)
    write_raw(RemoteSource, unreadable.pk, "last_scan_at", unreadable_instant())
    # The year 9999 plus an interval is past Python's last date.
    far = RemoteSource.objects.create(name="far", host="h.example", interval_s=7200)
    write_raw(RemoteSource, far.pk, "last_scan_at", datetime(9999, 12, 31, 23, 0, tzinfo=UTC))
    huge = RemoteSource.objects.create(name="huge", host="h.example", last_scan_at=now - timedelta(days=40))
    write_raw(RemoteSource, huge.pk, "interval_s", 2**31 - 1)
    also_due = RemoteSource.objects.create(
        name="later", host="h.example", last_scan_at=now - timedelta(hours=3)
    )

    report = tasks.ftp_scan_all()

    assert sorted(report["scanned"]) == ["due", "far", "huge", "later"]
    assert sorted(scans_queued) == sorted([due.pk, far.pk, huge.pk, also_due.pk])
    assert [s["source"] for s in report["skipped"]] == [unreadable.pk]
    (row,) = RemoteSource.objects.filter(pk=unreadable.pk).values("last_error", "last_error_kind")
    assert row["last_error_kind"] == "invalid" and "could not be read" in row["last_error"]


def test_a_huge_interval_stored_in_the_database_is_read_as_the_longest_allowed(settings: Any) -> None:
    now = datetime.now(UTC)
    source = RemoteSource.objects.create(name="s", host="h.example", last_scan_at=now - timedelta(days=30))
    write_raw(RemoteSource, source.pk, "interval_s", 2**31 - 1)
    assert services.sources_due(now=now) == []
    assert [s.name for s in services.sources_due(now=now + timedelta(days=2))] == ["s"]


def test_the_settle_pause_is_bounded_whatever_is_stored(tmp_path: Path) -> None:
    server = FtpServer(tmp_path / "ftp")
    (server.home / "a.slg_v2").write_bytes(meter_file("PT6001", count=4))
    server.start()
    try:
        source = source_for(server, name="slow")
        pauses: list[float] = []
        for stored in (1e12, float("inf"), -5.0):  # (SQLite stores NaN as NULL)
            write_raw(RemoteSource, source.pk, "settle_s", stored)
            result = services.source_scan(source=RemoteSource.objects.get(pk=source.pk), sleep=pauses.append)
            assert result.ok, result.error
    finally:
        server.stop()
    assert pauses == [MAX_SETTLE_S, MAX_SETTLE_S]  # -5: no pause


def test_a_file_row_that_cannot_be_read_is_marked_failed_and_not_taken_again(
    settings: Any, files_queued: list[int], scans_queued: list[int]
) -> None:
    good = services.file_take(name="good.slg_v2", stream=io.BytesIO(meter_file("PT6002", count=4)))
    bad = services.file_take(name="bad.slg_v2", stream=io.BytesIO(meter_file("PT6003", count=4)))
    old = datetime.now(UTC) - timedelta(seconds=settings.INGESTION_CLAIM_TIMEOUT + 60)
    IngestedFile.objects.filter(pk__in=[good.pk, bad.pk]).update(downloaded_at=old)
    write_raw(IngestedFile, bad.pk, "remote_mtime", unreadable_instant())

    tasks.ftp_scan_all()
    assert sorted(files_queued) == sorted([good.pk, bad.pk])
    assert tasks.file_run(bad.pk) == "failed"
    assert tasks.file_run(good.pk) == "imported"
    (row,) = IngestedFile.objects.filter(pk=bad.pk).values("status", "message")
    assert row["status"] == "failed" and "could not be read" in row["message"]
    files_queued.clear()
    tasks.ftp_scan_all()
    assert files_queued == []


def test_a_file_whose_worker_dies_every_time_is_given_up_after_a_few_attempts(
    settings: Any, files_queued: list[int], scans_queued: list[int]
) -> None:
    old = datetime.now(UTC) - timedelta(seconds=settings.INGESTION_CLAIM_TIMEOUT + 60)
    doomed = services.file_take(name="oom.slg_v2", stream=io.BytesIO(meter_file("PT6004", count=4)))
    IngestedFile.objects.filter(pk=doomed.pk).update(
        status="processing", claimed_at=old, attempts=services.MAX_ATTEMPTS
    )
    retried = services.file_take(name="retry.slg_v2", stream=io.BytesIO(meter_file("PT6005", count=4)))
    IngestedFile.objects.filter(pk=retried.pk).update(status="processing", claimed_at=old, attempts=1)

    report = tasks.ftp_scan_all()
    assert files_queued == [retried.pk] and report["given_up"] == [doomed.pk]
    gone = IngestedFile.objects.get(pk=doomed.pk)
    assert gone.status == "failed" and f"{services.MAX_ATTEMPTS} attempts" in gone.message
    # Still there for an operator: re-processing it is one click.
    assert gone.stored_path and Path(gone.stored_path).exists()


def test_a_listing_with_names_the_ledger_cannot_hold_skips_them_and_takes_the_rest(
    monkeypatch: Any, tmp_path: Path
) -> None:
    # A server lists what it likes; a file system cannot hold a NUL or a 300-character name,
    # so the listing of a real server is stood in for by the client's own result.
    from ingestion import remote

    server = FtpServer(tmp_path / "ftp")
    (server.home / "a.slg_v2").write_bytes(meter_file("PT6006", count=4))
    server.start()
    try:
        source = source_for(server, name="odd")
        real_list = remote.FtpClient.list_files

        def odd_listing(self: Any) -> list[remote.RemoteFile]:
            odd = [
                remote.RemoteFile("/nul\x00.slg_v2", "nul\x00.slg_v2", 10, None),
                remote.RemoteFile("/" + "n" * 300 + ".slg_v2", "n" * 300 + ".slg_v2", 10, None),
            ]
            return [*odd, *real_list(self)]

        monkeypatch.setattr(remote.FtpClient, "list_files", odd_listing)
        queued: list[int] = []
        result = services.source_scan(source=source, on_file=queued.append, sleep=lambda s: None)
    finally:
        server.stop()
    assert result.ok and len(result.queued) == 1 and len(result.unusable) == 2
    assert IngestedFile.objects.get().name == "a.slg_v2"


def test_a_source_row_that_cannot_be_read_does_not_fail_its_scan_task() -> None:
    source = RemoteSource.objects.create(name="s", host="h.example")
    write_raw(RemoteSource, source.pk, "created_at", unreadable_instant())
    assert tasks.source_scan(source.pk) is None
    (row,) = RemoteSource.objects.filter(pk=source.pk).values("last_error_kind")
    assert row["last_error_kind"] == "invalid"
