"""Scans against real servers on loopback (pyftpdlib for FTP and FTPS, OpenSSH's sshd for SFTP):
new files imported, duplicates, overlaps, growing and truncated files, bad credentials, unknown
host keys, and a server that goes away in the middle of a download."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from energy_dashboard.testing import AFTER_FIXED_DATES
from ingestion import services
from ingestion.models import IngestedFile, RemoteSource
from ingestion.tests.helpers import DAY, source_for, stored_count
from ingestion.tests.helpers import meter_file as day_file
from ingestion.tests.servers import FtpServer, SshServer

pytestmark = pytest.mark.django_db(databases="__all__")


def no_sleep(seconds: float) -> None:
    """Retries and the settle pause without waiting (the servers are local)."""


def scan(
    source: RemoteSource, sleep: Callable[[float], None] = no_sleep
) -> tuple[services.ScanResult, list[Any]]:
    """One scan, each queued file then downloaded and processed here (what the tasks do)."""
    queued: list[int] = []
    result = services.source_scan(
        source=RemoteSource.objects.get(pk=source.pk), on_file=queued.append, sleep=sleep
    )
    return result, [services.file_run(file_id=pk, sleep=no_sleep) for pk in queued]


@pytest.fixture
def ftp(tmp_path: Path) -> Iterator[FtpServer]:
    server = FtpServer(tmp_path / "ftp")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ftp_source(ftp: FtpServer) -> RemoteSource:
    return source_for(ftp, settle_s=0.2)


def put(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


def test_a_new_file_is_imported_and_a_second_scan_adds_nothing(
    ftp: FtpServer, ftp_source: RemoteSource
) -> None:
    put(ftp.home, "2026-03-10.slg_v2", day_file("PT1001"))
    put(ftp.home, "notes.txt", b"not a meter file")
    result, files = scan(ftp_source)
    assert result.ok and result.listed == 1 and len(result.queued) == 1
    (row,) = files
    assert (row.status, row.records, row.inserted) == ("imported", 96, 96)
    assert row.remote_path == "/2026-03-10.slg_v2" and row.size == len(day_file("PT1001"))
    assert row.remote_mtime is not None and row.download_ms is not None
    assert stored_count("PT1001") == 96

    again, files = scan(ftp_source)
    assert again.ok and again.queued == [] and files == []
    source = RemoteSource.objects.get(pk=ftp_source.pk)
    assert source.last_scan_ok is True and source.last_scan_at is not None and source.scan_claimed_at is None


def test_the_same_content_under_another_name_is_a_duplicate(ftp: FtpServer, ftp_source: RemoteSource) -> None:
    put(ftp.home, "a.slg_v2", day_file("PT1002"))
    scan(ftp_source)
    put(ftp.home, "a-resent.slg_v2", day_file("PT1002"))
    _, (row,) = scan(ftp_source)
    assert row.status == "duplicate" and row.inserted == 0
    assert stored_count("PT1002") == 96


def test_an_overlapping_file_adds_only_new_points(ftp: FtpServer, ftp_source: RemoteSource) -> None:
    put(ftp.home, "a.slg_v2", day_file("PT1003", count=48))
    scan(ftp_source)
    put(ftp.home, "b.slg_v2", day_file("PT1003", count=96))  # the same first 48, then 48 more
    _, (row,) = scan(ftp_source)
    assert (row.status, row.inserted, row.already_present) == ("imported", 48, 48)
    assert stored_count("PT1003") == 96


def test_a_file_growing_during_the_scan_waits_for_the_next(ftp: FtpServer, ftp_source: RemoteSource) -> None:
    content = day_file("PT1004")
    path = put(ftp.home, "growing.slg_v2", content[:2000])

    def still_uploading(seconds: float) -> None:
        # Between the scan's two listings the upload goes on.
        with path.open("ab") as out:
            out.write(content[2000:4000])

    result, files = scan(ftp_source, sleep=still_uploading)
    assert result.ok and result.growing == ["/growing.slg_v2"] and files == []
    assert not IngestedFile.objects.exists()

    path.write_bytes(content)  # the upload finishes
    os.utime(path, (time.time() - 60, time.time() - 60))
    result, (row,) = scan(ftp_source)
    assert result.growing == [] and row.status == "imported" and row.inserted == 96


def test_a_truncated_file_is_rejected_kept_and_the_full_one_imported_later(
    ftp: FtpServer, ftp_source: RemoteSource
) -> None:
    content = day_file("PT1005")
    path = put(ftp.home, "cut.slg_v2", content[: len(content) // 3])
    os.utime(path, (time.time() - 120, time.time() - 120))
    _, (rejected,) = scan(ftp_source)
    assert rejected.status == "rejected" and "incomplete" in rejected.message
    assert stored_count("PT1005") == 0
    assert Path(rejected.stored_path).read_bytes() == content[: len(content) // 3]  # kept as it came

    # The producer sends the whole file again under the same name: a new version, imported.
    path.write_bytes(content)
    _, (row,) = scan(ftp_source)
    assert row.status == "imported" and row.inserted == 96 and row.pk != rejected.pk
    assert IngestedFile.objects.get(pk=rejected.pk).status == "rejected"  # history stays


def test_wrong_credentials_are_a_clear_error_on_the_source(ftp: FtpServer, ftp_source: RemoteSource) -> None:
    put(ftp.home, "a.slg_v2", day_file("PT1006"))
    RemoteSource.objects.filter(pk=ftp_source.pk).update(password="wrong")
    result, files = scan(ftp_source)
    assert not result.ok and files == []
    source = RemoteSource.objects.get(pk=ftp_source.pk)
    assert source.last_scan_ok is False and source.last_error_kind == "auth"
    assert "login" in source.last_error.lower() or "530" in source.last_error
    assert not IngestedFile.objects.exists() and stored_count("PT1006") == 0


@pytest.mark.clock(AFTER_FIXED_DATES)
def test_a_server_that_goes_away_mid_download_is_retried_and_nothing_partial_is_used(
    tmp_path: Path,
) -> None:
    # 40 kB/s: a 200 kB file takes 5 s, time enough to pull the plug in the middle.
    server = FtpServer(tmp_path / "slow", throttle=40_000)
    server.start()
    try:
        content = day_file("PT1007", count=2000, first=DAY)
        put(server.home, "big.slg_v2", content)
        source = source_for(server, name="slow")
        queued: list[int] = []
        services.source_scan(source=source, on_file=queued.append, sleep=no_sleep)
        (file_id,) = queued
        part = Path(services._store_path(IngestedFile.objects.get(pk=file_id))).with_suffix(".slg_v2.part")
        killed = threading.Event()

        def pull_the_plug() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if part.exists() and part.stat().st_size > 20_000:
                    server.kill()
                    killed.set()
                    return
                time.sleep(0.02)

        def restart(seconds: float) -> None:  # the retry's backoff: the server is back
            watcher.join(20)  # the kill has finished
            if server.process is None or server.process.poll() is not None:
                server.throttle = 0
                server.start()

        watcher = threading.Thread(target=pull_the_plug)
        watcher.start()
        row = services.file_run(file_id=file_id, sleep=restart)
        watcher.join()
        assert killed.is_set(), "the download ended before the server could be killed"
        assert row is not None
        assert row.status == "imported" and row.inserted == 2000, row.message
        assert row.sha256 and Path(row.stored_path).read_bytes() == content
        assert not part.exists()
    finally:
        server.stop()


def test_ftps_with_a_pinned_certificate(tmp_path: Path) -> None:
    server = FtpServer(tmp_path / "ftps", tls=True)
    server.start()
    try:
        put(server.home, "a.slg_v2", day_file("PT1008"))
        source = source_for(server, name="secure")
        _, (row,) = scan(source)
        assert row.status == "imported" and row.inserted == 96
        # Without the certificate pinned, the self-signed server is not trusted.
        RemoteSource.objects.filter(pk=source.pk).update(ca_file="")
        result, _ = scan(source)
        assert not result.ok and RemoteSource.objects.get(pk=source.pk).last_error_kind == "tls"
    finally:
        server.stop()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    server = SshServer(tmp_path / "ssh")
    server.start()
    yield server
    server.stop()


def test_sftp_refuses_an_unknown_host_key_until_the_operator_accepts_it(sshd: SshServer) -> None:
    put(sshd.files, "a.slg_v2", day_file("PT1009"))
    source = source_for(sshd, name="sftp")
    result, files = scan(source)
    assert not result.ok and files == []
    source.refresh_from_db()
    assert source.last_error_kind == "host_key" and source.offered_fingerprint == sshd.host_fingerprint
    assert stored_count("PT1009") == 0

    with pytest.raises(services.IngestionError, match="not the offered one"):
        services.source_accept_host_key(source=source, fingerprint="SHA256:somethingelse")
    services.source_accept_host_key(source=source, fingerprint=sshd.host_fingerprint)
    result, (row,) = scan(source)
    assert result.ok and row.status == "imported" and row.inserted == 96


def test_sftp_with_a_wrong_key_pinned_imports_nothing(sshd: SshServer) -> None:
    put(sshd.files, "a.slg_v2", day_file("PT1010"))
    source = source_for(sshd, name="sftp-pinned-wrong", host_key="SHA256:" + "A" * 43)
    result, _ = scan(source)
    assert not result.ok and "not the pinned key" in result.error
    assert RemoteSource.objects.get(pk=source.pk).last_error_kind == "host_key"
    assert not IngestedFile.objects.exists()


def test_two_scans_of_one_source_never_run_at_once(ftp_source: RemoteSource) -> None:
    RemoteSource.objects.filter(pk=ftp_source.pk).update(scan_claimed_at=datetime.now(UTC))
    result, _ = scan(ftp_source)
    assert not result.ok and result.skipped == "another scan of this source is running"
