"""What keeps files from being stuck or lost: abandoned work taken again, the scheduling of scans,
the first scan at start, secret files confined to their folder, and the commands."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from ingestion import apps, services, tasks
from ingestion.models import IngestedFile, RemoteSource
from ingestion.tests.helpers import meter_file, source_for
from ingestion.tests.servers import FtpServer, SshServer

pytestmark = pytest.mark.django_db(databases="__all__")


def day_file(cpe: str, count: int = 4) -> bytes:
    return meter_file(cpe, count=count)


@pytest.fixture
def queued_ids(monkeypatch: Any) -> list[int]:
    """The ids handed to the broker (the queue itself is Celery's, tested by the e2e tests)."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.file_run, "delay", ids.append)
    return ids


@pytest.fixture
def scans_queued(monkeypatch: Any) -> list[int]:
    ids: list[int] = []
    monkeypatch.setattr(tasks.source_scan, "delay", ids.append)
    return ids


def long_ago(settings: Any) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=settings.INGESTION_CLAIM_TIMEOUT + 5)


def test_an_upload_whose_task_was_lost_is_taken_again(
    settings: Any, queued_ids: list[int], scans_queued: list[int]
) -> None:
    row = services.file_take(name="lost.slg_v2", stream=io.BytesIO(day_file("PT5001")))
    fresh = services.file_take(name="fresh.slg_v2", stream=io.BytesIO(day_file("PT5002")))
    IngestedFile.objects.filter(pk=row.pk).update(downloaded_at=long_ago(settings))
    tasks.ftp_scan_all()
    assert queued_ids == [row.pk]  # the fresh one may still have its task on the way
    done = services.file_run(file_id=row.pk)
    assert done is not None and done.status == "imported"
    assert IngestedFile.objects.get(pk=fresh.pk).status == "downloaded"


def test_an_upload_left_processing_by_a_dead_worker_can_be_reprocessed(settings: Any) -> None:
    row = services.file_take(name="dead.slg_v2", stream=io.BytesIO(day_file("PT5003")))
    IngestedFile.objects.filter(pk=row.pk).update(status="processing", claimed_at=datetime.now(UTC))
    with pytest.raises(services.IngestionError, match="wait for it to finish"):
        services.file_reprocess(file=IngestedFile.objects.get(pk=row.pk))
    IngestedFile.objects.filter(pk=row.pk).update(claimed_at=long_ago(settings))
    assert services.file_reprocess(file=IngestedFile.objects.get(pk=row.pk)).status == "imported"


def test_a_queued_remote_file_whose_task_was_lost_is_queued_by_the_next_scan(
    tmp_path: Path, settings: Any
) -> None:
    server = FtpServer(tmp_path / "ftp")
    (server.home / "a.slg_v2").write_bytes(day_file("PT5004"))
    server.start()
    try:
        source = source_for(server, name="s")
        first: list[int] = []
        services.source_scan(source=source, on_file=first.append)  # ... and its task never ran
        IngestedFile.objects.filter(pk__in=first).update(discovered_at=long_ago(settings))
        again: list[int] = []
        result = services.source_scan(source=source, on_file=again.append)
    finally:
        server.stop()
    assert result.queued == [] and result.requeued == first and again == first


def test_a_finished_run_does_not_overwrite_a_takeover() -> None:
    row = services.file_take(name="x.slg_v2", stream=io.BytesIO(day_file("PT5005")))
    row = IngestedFile.objects.get(pk=row.pk)
    row.claimed_at = datetime.now(UTC) - timedelta(hours=1)  # our claim, long since taken over
    IngestedFile.objects.filter(pk=row.pk).update(status="imported", claimed_at=None, message="the newer run")
    services._finish(row, "failed", message="the old run")
    assert IngestedFile.objects.get(pk=row.pk).message == "the newer run"


def test_sources_are_due_by_their_own_interval(settings: Any) -> None:
    settings.FTP_CHECK_INTERVAL = 3600
    now = datetime.now(UTC)
    recent = RemoteSource.objects.create(name="recent", host="h", last_scan_at=now - timedelta(minutes=10))
    hourly_due = RemoteSource.objects.create(name="old", host="h", last_scan_at=now - timedelta(hours=2))
    fast = RemoteSource.objects.create(
        name="fast", host="h", interval_s=300, last_scan_at=now - timedelta(minutes=6)
    )
    RemoteSource.objects.create(name="off", host="h", enabled=False)
    assert {s.name for s in services.sources_due(now=now)} == {hourly_due.name, fast.name}
    assert recent.name not in {s.name for s in services.sources_due(now=now)}


def test_a_new_source_is_not_scanned_until_its_interval_has_passed_or_an_operator_asks(
    settings: Any, scans_queued: list[int]
) -> None:
    # Creating a source (API, admin) must not make the server connect anywhere by itself at
    # once: the first scheduled scan comes one interval after its creation.
    settings.FTP_CHECK_INTERVAL = 3600
    now = datetime.now(UTC)
    new = RemoteSource.objects.create(name="new", host="h")
    assert services.sources_due(now=now) == []
    assert tasks.ftp_scan_all()["scanned"] == [] and scans_queued == []
    assert [s.name for s in services.sources_due(now=now + timedelta(hours=1, seconds=1))] == [new.name]
    # Nor does a worker's start-up scan take it (it catches up sources scanned before).
    assert tasks.ftp_scan_all(force=True)["scanned"] == []
    # The settings' source is the deployment's own: scanned at once, unless told to wait.
    settings.FTP_SA4CPS_HOST = "ftp.sa4cps.example"
    seed = services.default_source_sync()
    assert seed is not None
    assert [s.name for s in services.sources_due(now=now)] == [seed.name]
    settings.FTP_SKIP_INITIAL_SCAN = True
    assert services.sources_due(now=now) == []


def test_the_first_scan_at_start_unless_skipped(
    settings: Any, scans_queued: list[int], monkeypatch: Any
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.ftp_scan_all, "delay", lambda **kw: calls.append(kw))
    settings.FTP_SKIP_INITIAL_SCAN = False
    apps._initial_scan()
    assert calls == [{"force": True}]
    settings.FTP_SKIP_INITIAL_SCAN = True
    apps._initial_scan()
    assert calls == [{"force": True}]
    # force scans every enabled source, due or not.
    RemoteSource.objects.create(name="a", host="h", last_scan_at=datetime.now(UTC))
    RemoteSource.objects.create(name="b", host="h", enabled=False)
    assert tasks.ftp_scan_all(force=True)["scanned"] == ["a"] and len(scans_queued) == 1


def test_a_scan_task_queues_one_file_task_per_new_file(
    tmp_path: Path, queued_ids: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    server = FtpServer(tmp_path / "ftp")
    for n in range(3):
        (server.home / f"{n}.slg_v2").write_bytes(day_file(f"PT510{n}"))
    server.start()
    try:
        source = source_for(server, name="s")
        with django_capture_on_commit_callbacks(execute=True, using="ingestion"):
            result = tasks.source_scan(source.pk)
    finally:
        server.stop()
    assert result is not None and len(result["queued"]) == 3
    assert sorted(queued_ids) == sorted(result["queued"])
    assert tasks.source_scan(999_999) is None  # a source deleted meanwhile: nothing to do


def test_secret_files_only_from_the_secrets_folder(settings: Any, tmp_path: Path, operator_api: Any) -> None:
    settings.INGESTION_SECRETS_DIR = str(tmp_path / "secrets")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ftp").write_text("from-a-secret\n")
    refused = operator_api.post(
        "/api/v1/ingestion/sources/",
        {"name": "x", "host": "attacker.example", "password_file": "/etc/passwd"},
        format="json",
    )
    assert refused.status_code == 400 and "INGESTION_SECRETS_DIR" in str(refused.json())
    source = RemoteSource.objects.create(name="y", host="h", password_file="/etc/passwd")
    with pytest.raises(services.remote.RemoteError, match="INGESTION_SECRETS_DIR"):
        services.source_endpoint(source)
    source.password_file = str(tmp_path / "secrets" / "ftp")
    assert services.source_endpoint(source).password == "from-a-secret"


def test_ftp_scan_now_imports_and_prints_the_outcome(tmp_path: Path, capsys: Any) -> None:
    server = FtpServer(tmp_path / "ftp")
    (server.home / "a.slg_v2").write_bytes(day_file("PT5201"))
    server.start()
    try:
        source_for(server, name="cmd")
        call_command("ftp_scan", "cmd", "--now")
    finally:
        server.stop()
    (line,) = capsys.readouterr().out.splitlines()
    out = json.loads(line)
    assert out["ok"] and [f["status"] for f in out["files"]] == ["imported"]
    with pytest.raises(Exception, match="no source named 'nope'"):
        call_command("ftp_scan", "nope")


def test_sftp_with_a_key_the_server_does_not_know_imports_nothing(tmp_path: Path) -> None:
    server = SshServer(tmp_path / "ssh")
    (server.files / "a.slg_v2").write_bytes(day_file("PT5301"))
    server.start()
    try:
        stranger = SshServer(tmp_path / "other")  # only for a second, unauthorised client key
        source = RemoteSource.objects.create(
            name="sftp",
            protocol="sftp",
            host="127.0.0.1",
            port=server.port,
            username=server.user,
            private_key=stranger.client_private_key,
            host_key=server.host_key_line,
            remote_path=str(server.files),
        )
        result = services.source_scan(source=source, on_file=lambda file_id: None, sleep=lambda s: None)
    finally:
        server.stop()
    assert not result.ok and RemoteSource.objects.get(pk=source.pk).last_error_kind == "auth"
    assert not IngestedFile.objects.exists()
