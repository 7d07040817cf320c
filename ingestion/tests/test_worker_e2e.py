"""End to end with real Celery workers: a worker killed in the middle of a file leaves nothing of
it stored, and the next scan (here, the one a new worker runs when it starts) takes it again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from energy_dashboard.celery import app
from energy_dashboard.testing import WORKER_ARGS, subprocess_env
from ingestion import services, slg
from ingestion.models import IngestedFile, RemoteSource
from ingestion.tests.helpers import stored_count
from ingestion.tests.servers import FtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases="__all__")]

METERS, QUARTERS = 40, 4000  # 160,000 readings: seconds of work, time to kill the worker mid-file


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stored(cpes: list[str]) -> int:
    return stored_count(*cpes)


def test_a_worker_killed_mid_file_leaves_nothing_and_the_file_is_taken_again(
    start_process: Any, tmp_path: Path, settings: Any
) -> None:
    tz = ZoneInfo("Europe/Lisbon")
    first = datetime(2026, 1, 5, tzinfo=UTC)
    cpes = [f"PT9{n:04d}" for n in range(METERS)]
    records = (
        (cpe, first + timedelta(minutes=15 * q), 100 + q % 50, False) for cpe in cpes for q in range(QUARTERS)
    )
    server = FtpServer(tmp_path / "ftp")
    with (server.home / "big.slg_v2").open("wb") as out:
        out.writelines(slg.write_slg(records, tz=tz, file_date=first.date()))
    server.start()
    try:
        source = RemoteSource.objects.create(
            name="e2e",
            host="127.0.0.1",
            port=server.port,
            username=server.user,
            password=server.password,
            settle_s=0,
        )
        queued: list[int] = []
        assert services.source_scan(source=source, on_file=queued.append).ok
        (file_id,) = queued

        claim_timeout = 3
        settings.INGESTION_CLAIM_TIMEOUT = claim_timeout
        env = subprocess_env(INGESTION_CLAIM_TIMEOUT=str(claim_timeout), FTP_SKIP_INITIAL_SCAN="true")
        doomed = start_process("worker-a", *WORKER_ARGS, env=env)
        doomed.wait_for(lambda out: "ready." in out, timeout=60, what="worker A starting")
        app.send_task("ingestion.tasks.file_run", args=[file_id])

        wait_until(
            lambda: IngestedFile.objects.filter(pk=file_id, status="processing").exists(),
            timeout=60,
            what="worker A to start processing",
        )
        time.sleep(0.5)  # well inside the file: some thousands of readings written, not committed
        assert IngestedFile.objects.get(pk=file_id).status == "processing"
        os.killpg(doomed.popen.pid, signal.SIGKILL)
        doomed.popen.wait(10)

        row = IngestedFile.objects.get(pk=file_id)
        assert row.status == "processing" and row.inserted == 0
        assert stored(cpes) == 0, "a killed worker left part of the file in the store"

        # A new worker starts; its first scan finds the abandoned claim and takes the file again.
        time.sleep(claim_timeout + 0.5)
        heir = start_process(
            "worker-b", *WORKER_ARGS, env=subprocess_env(INGESTION_CLAIM_TIMEOUT=str(claim_timeout))
        )
        heir.wait_for(lambda out: "ready." in out, timeout=60, what="worker B starting")
        done = wait_until(
            lambda: IngestedFile.objects.filter(pk=file_id, status="imported").first(),
            timeout=120,
            what="worker B to import the file",
        )
    finally:
        server.stop()
    assert done.inserted == METERS * QUARTERS and done.attempts == 2
    assert stored(cpes) == METERS * QUARTERS


def test_two_workers_importing_identical_files_at_once_leave_one_imported_and_one_duplicate(
    start_process: Any, tmp_path: Path
) -> None:
    # The same content taken in twice (an upload and a resend), each file handed to its own
    # worker at the same moment: both find no imported original when they start, and both
    # import. The ledger must still end with one `imported` and one `duplicate` of it.
    tz = ZoneInfo("Europe/Lisbon")
    first = datetime(2026, 2, 2, tzinfo=UTC)
    cpes = [f"PT8{n:04d}" for n in range(METERS)]
    records = (
        (cpe, first + timedelta(minutes=15 * q), 100 + q % 50, False) for cpe in cpes for q in range(QUARTERS)
    )
    path = tmp_path / "twice.slg_v2"
    with path.open("wb") as out:
        out.writelines(slg.write_slg(records, tz=tz, file_date=first.date()))
    ids = []
    for name in ("twice.slg_v2", "twice-resent.slg_v2"):
        with path.open("rb") as stream:
            ids.append(services.file_take(name=name, stream=stream).pk)

    # Each worker consumes its own queue, so each takes exactly one of the two files. SQLite
    # lets one writer in at a time: the second waits for the first's transaction.
    env = subprocess_env(FTP_SKIP_INITIAL_SCAN="true", SQLITE_BUSY_TIMEOUT="170")
    workers = [start_process(f"racer-{q}", *WORKER_ARGS, "-Q", f"race-{q}", env=env) for q in "ab"]
    for worker in workers:
        worker.wait_for(lambda out: "ready." in out, timeout=60, what="a racing worker starting")
    for file_id, queue in zip(ids, ("race-a", "race-b"), strict=True):
        app.send_task("ingestion.tasks.file_run", args=[file_id], queue=queue)

    overlapped = False
    deadline = time.monotonic() + 170
    while time.monotonic() < deadline:
        statuses = dict(IngestedFile.objects.filter(pk__in=ids).values_list("pk", "status"))
        overlapped |= all(s == "processing" for s in statuses.values())
        if all(s not in ("downloaded", "processing") for s in statuses.values()):
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"the two files did not finish: {statuses}")
    assert overlapped, "the two workers did not process the files at the same time"

    outcome = [(row.pk, row.status, row.message) for row in IngestedFile.objects.filter(pk__in=ids)]
    assert sorted(status for _, status, _ in outcome) == ["duplicate", "imported"], outcome
    rows = {row.status: row for row in IngestedFile.objects.filter(pk__in=ids)}
    assert rows["duplicate"].duplicate_of_id == rows["imported"].pk
    assert "at the same moment" in rows["duplicate"].message
    assert stored(cpes) == METERS * QUARTERS
