"""The public face of the ingestion module: scan sources, take files in, import them.

A file's way: a scan lists a source twice (`settle_s` apart) and queues each new file whose
size and modification time did not change (a ledger row, status `queued`); one task per file
downloads it under `INGESTION_FILES_DIR` (retried, never partial) and processes it: a file
whose content hash was already imported is a `duplicate`; otherwise its readings go to the
readings store in one transaction, `imported` or, when the file breaks a rule of the format,
`rejected` with every error and its line (nothing stored, the file kept for an operator).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from energy_dashboard.core import events
from energy_dashboard.core.batch import gc_paused
from ingestion import remote, slg
from ingestion.models import MAX_INTERVAL_S, MAX_SETTLE_S, MIN_INTERVAL_S, IngestedFile, RemoteSource
from ingestion.validators import allowed_networks, secret_path_allowed
from sensors import services as sensors

logger = logging.getLogger(__name__)

DB = "ingestion"
DEFAULT_SOURCE = "sa4cps"
# Records per readings_import call. Each call has a fixed cost in round trips and a savepoint,
# so big chunks are faster (bench/ingest_files.py: 5,000 gave 0.30 of raw COPY, 100,000 gave
# 0.47), and memory stays bounded (about 230 MB peak for any file size: at most three chunks).
CHUNK = 100_000
# An error in our words is one or two sentences; this bounds what a source or file keeps of it.
LAST_ERROR_MAX_CHARS = 1_000
# A file whose processing was abandoned this many times (its worker died each time: out of
# memory, killed) is marked failed instead of being taken again forever.
MAX_ATTEMPTS = 5
# A last scan this far in the future is a clock that was put back or a bad value: the source
# is due rather than held back until then.
CLOCK_SKEW = timedelta(hours=1)


def _claim_timeout() -> timedelta:
    # A scan or a file claimed longer ago than this was abandoned (its worker died): take it
    # again. Longer than Celery's hard time limit, so a live task is never taken from.
    return timedelta(seconds=settings.INGESTION_CLAIM_TIMEOUT)


Status = IngestedFile.Status
DONE = (Status.IMPORTED, Status.DUPLICATE)


class IngestionError(Exception):
    """A request the ingestion module cannot carry out (shown to the operator as is)."""


# --- sources -------------------------------------------------------------------------------


def default_source_sync() -> RemoteSource | None:
    """Create or update the source that the FTP_SA4CPS_* settings describe (None when unset).

    Its connection fields are read from the settings each time it connects, so the secrets
    stay in the environment; the row holds its scan state and ledger.
    """
    if not settings.FTP_SA4CPS_HOST:
        return None
    source, _ = RemoteSource.objects.update_or_create(
        name=DEFAULT_SOURCE,
        defaults={
            "protocol": settings.FTP_SA4CPS_PROTOCOL,
            "host": settings.FTP_SA4CPS_HOST,
            "port": settings.FTP_SA4CPS_PORT,
            "username": settings.FTP_SA4CPS_USERNAME,
            "remote_path": settings.FTP_SA4CPS_REMOTE_PATH,
            "ca_file": settings.FTP_SA4CPS_CA_FILE,
            "from_settings": True,
        },
    )
    return source


def _confined(path: str, kind: remote.ErrorKind, what: str) -> str:
    """`path` resolved, if a source may read it (ingestion.validators.secret_path_allowed). The
    refusal is the same whether or not a file is there, so it tells nothing about the disk."""
    if not secret_path_allowed(path):
        where = settings.INGESTION_SECRETS_DIR
        raise remote.RemoteError(kind, f"{what} files must be under INGESTION_SECRETS_DIR ({where})")
    return str(Path(path).resolve())


def _read_secret(value: str, path: str) -> str:
    if path:
        resolved = _confined(path, "auth", "secret")
        try:
            return Path(resolved).read_text().strip()
        except OSError as exc:
            raise remote.RemoteError("auth", f"cannot read the secret file {path}: {exc.strerror}") from exc
    return value


def source_endpoint(source: RemoteSource) -> remote.Endpoint:
    """The connection parameters of a source, secrets resolved, the files it reads confined to
    INGESTION_SECRETS_DIR (the settings' source is the deployment's own: its CA file may be
    anywhere), and the networks it may reach besides public ones."""
    if source.from_settings:
        password, key = settings.FTP_SA4CPS_PASSWORD, settings.FTP_SA4CPS_PRIVATE_KEY
        host_key = source.host_key or settings.FTP_SA4CPS_HOST_KEY
        ca_file = source.ca_file
    else:
        password = _read_secret(source.password, source.password_file)
        key = _read_secret(source.private_key, source.private_key_file)
        host_key = source.host_key
        ca_file = _confined(source.ca_file, "tls", "CA") if source.ca_file else ""
    port = source.port or (22 if source.protocol == RemoteSource.Protocol.SFTP else 21)
    return remote.Endpoint(
        # The model's field is text; Endpoint refuses anything but its Literal protocols.
        protocol=source.protocol,  # type: ignore[arg-type]
        host=source.host,
        port=port,
        username=source.username,
        password=password,
        private_key=key or None,
        remote_path=source.remote_path,
        patterns=tuple(source.patterns.split()) or remote.DEFAULT_PATTERNS,
        host_key=host_key or None,
        ca_file=ca_file or None,
        tls_verify=source.tls_verify,
        allowed_networks=allowed_networks(),
    )


def source_accept_host_key(*, source: RemoteSource, fingerprint: str) -> RemoteSource:
    """Pin the SFTP host key the server offered, if `fingerprint` is the one it offered."""
    if not source.offered_host_key:
        raise IngestionError("this source has no offered host key to accept; scan it first")
    if fingerprint.strip() != source.offered_fingerprint:
        raise IngestionError(
            f"fingerprint {fingerprint.strip()!r} is not the offered one ({source.offered_fingerprint})"
        )
    source.host_key = source.offered_host_key
    source.offered_host_key = source.offered_fingerprint = ""
    source.save(update_fields=["host_key", "offered_host_key", "offered_fingerprint", "updated_at"])
    return source


@dataclass
class Schedule:
    """Which sources a periodic job takes, and those it skipped because a row could not be read."""

    due: list[RemoteSource] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def _interval(source: RemoteSource) -> timedelta:
    # Within the bounds the API and the admin hold a source to, whatever a row holds.
    seconds = source.interval_s or settings.FTP_CHECK_INTERVAL
    return timedelta(seconds=min(max(seconds, MIN_INTERVAL_S), MAX_INTERVAL_S))


def _is_due(source: RemoteSource, now: datetime) -> bool:
    since = source.last_scan_at
    if since is None:
        if source.from_settings and not settings.FTP_SKIP_INITIAL_SCAN:
            return True
        since = source.created_at
    # `since <= now - interval`, not `since + interval <= now`: a stored instant near the end
    # of the calendar (year 9999) cannot overflow this way.
    return since <= now - _interval(source) or since > now + CLOCK_SKEW


def source_unreadable(*, source_id: int, error: BaseException) -> dict[str, Any]:
    """Record on a source row that a job could not read it (by an update, which reads nothing),
    and say so in the log; the job's report entry."""
    message = f"this source could not be read, so no job can use it ({type(error).__name__}: {error})"
    message = remote.server_text(message, LAST_ERROR_MAX_CHARS)
    RemoteSource.objects.filter(pk=source_id).update(
        last_scan_ok=False,
        last_error=message,
        last_error_reply="",
        last_error_kind="invalid",
        last_error_at=timezone.now(),
    )
    logger.error("source %s skipped: %s", source_id, message)
    return {"source": source_id, "error": message}


def sources_schedule(*, now: datetime | None = None, at_start: bool = False) -> Schedule:
    """The sources a scan job takes now: those due (`sources_due`), or at a worker's start
    those `sources_to_scan_at_start` names. A row that cannot be read is skipped, recorded on
    itself and reported; the others are not held up by it."""
    now = now or timezone.now()
    candidates = RemoteSource.objects.filter(enabled=True)
    if at_start:
        candidates = candidates.filter(Q(last_scan_at__isnull=False) | Q(from_settings=True))
    schedule = Schedule()
    # One row at a time: a value no Python object can be made of fails its own row only.
    for source_id in candidates.order_by("name").values_list("pk", flat=True):
        try:
            source = RemoteSource.objects.get(pk=source_id)
            if at_start or _is_due(source, now):
                schedule.due.append(source)
        except Exception as exc:
            schedule.skipped.append(source_unreadable(source_id=source_id, error=exc))
    return schedule


def sources_due(*, now: datetime | None = None) -> list[RemoteSource]:
    """Enabled sources whose scan interval has passed since their last scan.

    A source made in the API or the admin is first scanned one interval after it was created,
    or when an operator asks (scan now): creating a source does not make the server connect
    anywhere on its own at once. The settings' source is scanned at once (unless
    FTP_SKIP_INITIAL_SCAN): the deployment named it.
    """
    return sources_schedule(now=now).due


def sources_to_scan_at_start() -> list[RemoteSource]:
    """What a worker scans when it starts (unless FTP_SKIP_INITIAL_SCAN): every enabled source
    scanned before, due or not (files may have arrived while the service was down), and the
    settings' source; a source never scanned waits for its interval or an operator."""
    return sources_schedule(at_start=True).due


@dataclass
class ScanResult:
    """What one scan of a source found."""

    source: str
    ok: bool = True
    listed: int = 0
    queued: list[int] = field(default_factory=list)
    growing: list[str] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    given_up: list[int] = field(default_factory=list)
    unusable: list[dict[str, str]] = field(default_factory=list)  # listed files the ledger cannot hold
    error: str = ""
    skipped: str = ""  # why the scan did not run (another scan holds the source)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "source": self.source,
            "ok": self.ok,
            "listed": self.listed,
            "queued": self.queued,
            "growing": self.growing,
            "requeued": self.requeued,
            "given_up": self.given_up,
            "unusable": self.unusable,
            "error": self.error,
            "skipped": self.skipped,
        }


def _claim_scan(source: RemoteSource) -> datetime | None:
    """The claim's time when this scan took the source (compare-and-swap), else None."""
    now = timezone.now()
    stale = now - _claim_timeout()
    taken = (
        RemoteSource.objects.filter(pk=source.pk)
        .filter(Q(scan_claimed_at__isnull=True) | Q(scan_claimed_at__lt=stale))
        .update(scan_claimed_at=now)
    )
    return now if taken == 1 else None


def source_scan(*, source: RemoteSource, on_file: Any = None, sleep: Any = time.sleep) -> ScanResult:
    """List a source, queue each new file that stopped growing; one scan per source at a time.

    `on_file(file_id)` is called (after commit) for each queued file: the task queues one
    download task per file; `ftp_scan --now` processes them in place.
    """
    result = ScanResult(source=source.name)
    claim = _claim_scan(source)
    if claim is None:
        result.ok, result.skipped = False, "another scan of this source is running"
        return result
    try:
        endpoint = source_endpoint(source)

        pause = _settle_pause(source.settle_s)

        def two_listings() -> tuple[dict[str, remote.RemoteFile], list[remote.RemoteFile]]:
            with remote.connect(endpoint) as client:
                first = {f.path: f for f in client.list_files()}
                if first and pause > 0:
                    sleep(pause)
                return first, client.list_files()

        first, second = remote.with_retries(two_listings, endpoint=endpoint, sleep=sleep)
        _take_listing(source, first, second, result)
        if result.unusable:
            logger.warning(
                "scan of %s: %d listed file(s) left out: %s",
                source.name,
                len(result.unusable),
                result.unusable,
            )
        result.given_up = _give_up_exhausted(source)
        result.requeued = _requeue_abandoned(source)
    except remote.RemoteError as exc:
        result.ok, result.error = False, str(exc)
        _scan_failed(source, exc)
    except Exception as exc:  # a scan must always release its claim and say what went wrong
        logger.exception("scan of %s failed", source.name)
        # The exception's text may quote the server: kept as the reply, for operators.
        failure = remote.RemoteError("protocol", f"unexpected error ({type(exc).__name__})", reply=str(exc))
        result.ok, result.error = False, str(failure)
        _scan_failed(source, failure)
    else:
        RemoteSource.objects.filter(pk=source.pk).update(
            last_scan_at=timezone.now(),
            last_scan_ok=True,
            last_scan_files=len(result.queued),
            last_error="",
            last_error_reply="",
            last_error_kind="",
            offered_host_key="",
            offered_fingerprint="",
        )
    finally:
        # Only our own claim: a scan that outlived INGESTION_CLAIM_TIMEOUT may have been
        # taken over, and must not release the newer scan's claim.
        RemoteSource.objects.filter(pk=source.pk, scan_claimed_at=claim).update(scan_claimed_at=None)
    if on_file is not None:
        for file_id in [*result.queued, *result.requeued]:
            on_file(file_id)
    return result


def _take_listing(
    source: RemoteSource,
    first: dict[str, remote.RemoteFile],
    second: list[remote.RemoteFile],
    result: ScanResult,
) -> None:
    """Queue each file of the second listing that the first showed alike (it stopped growing)."""
    result.listed = len(second)
    for found in second:
        why = _unusable(found)
        if why is not None:
            result.unusable.append({"path": remote.server_text(found.path), "reason": why})
            continue
        before = first.get(found.path)
        if before is None or (before.size, before.mtime) != (found.size, found.mtime):
            result.growing.append(found.path)  # appeared or changed while listing: next scan
            continue
        try:
            file_id = _queue_remote_file(source, found)
        except DatabaseError as exc:  # one file the ledger refuses does not stop the others
            logger.warning("scan of %s: %s not taken: %s", source.name, found.path, exc)
            result.unusable.append({"path": remote.server_text(found.path), "reason": str(exc)[:200]})
            continue
        if file_id is not None:
            result.queued.append(file_id)


def _settle_pause(stored: float) -> float:
    # The API and the admin hold settle_s to 0-300 s; a row written otherwise must not hold a
    # worker (and a server connection) for days, nor make sleep() raise.
    if math.isnan(stored):
        return MAX_SETTLE_S
    return min(max(stored, 0.0), MAX_SETTLE_S)


# What the ledger holds of a listed file (IngestedFile.name and remote_path).
_MAX_NAME, _MAX_PATH = 255, 1024


def _unusable(found: remote.RemoteFile) -> str | None:
    """Why a listed file cannot have a ledger row (None: it can). The server chose the name."""
    if len(found.name) > _MAX_NAME or len(found.path) > _MAX_PATH:
        return f"name longer than {_MAX_NAME} or path longer than {_MAX_PATH} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in found.path):
        return "control characters in the name"
    return None


def _scan_failed(source: RemoteSource, exc: remote.RemoteError) -> None:
    now = timezone.now()
    changes: dict[str, Any] = {
        "last_scan_at": now,
        "last_scan_ok": False,
        "last_scan_files": 0,
        # Our words for everyone; what the server said apart, for operators (RemoteError.reply).
        "last_error": remote.server_text(exc.message, LAST_ERROR_MAX_CHARS),
        "last_error_reply": exc.reply,
        "last_error_kind": exc.kind,
        "last_error_at": now,
    }
    if exc.kind == "host_key" and getattr(exc, "offered_key", None):
        changes["offered_host_key"] = exc.offered_key
        changes["offered_fingerprint"] = exc.offered_fingerprint
    RemoteSource.objects.filter(pk=source.pk).update(**changes)
    logger.warning("scan of %s failed (%s): %s", source.name, exc.kind, exc)


def _queue_remote_file(source: RemoteSource, found: remote.RemoteFile) -> int | None:
    """A ledger row for a new version of a remote file; None when that version is known."""
    known = IngestedFile.objects.filter(
        source=source, remote_path=found.path, size=found.size, remote_mtime=found.mtime
    ).first()
    if known is not None:
        # A download that failed before any content arrived is tried again on later scans.
        if known.status == Status.FAILED and not known.stored_path:
            IngestedFile.objects.filter(pk=known.pk, status=Status.FAILED).update(status=Status.QUEUED)
            return known.pk
        return None
    try:
        with transaction.atomic(using=DB):
            row = IngestedFile.objects.create(
                source=source,
                origin=IngestedFile.Origin.REMOTE,
                name=found.name,
                remote_path=found.path,
                size=found.size,
                remote_mtime=found.mtime,
            )
    except IntegrityError:  # queued by a concurrent scan a moment ago
        return None
    return row.pk


def _own_files(source: RemoteSource | None) -> Q:
    return Q(source=source) if source is not None else Q(source__isnull=True)


def _give_up_exhausted(source: RemoteSource | None) -> list[int]:
    """Files of a source (or uploads and local files) abandoned mid-processing MAX_ATTEMPTS
    times: marked failed (the content stays, for an operator to re-process) instead of taken
    again forever. Their ids."""
    stale = timezone.now() - _claim_timeout()
    exhausted = IngestedFile.objects.filter(
        _own_files(source), status=Status.PROCESSING, claimed_at__lt=stale, attempts__gte=MAX_ATTEMPTS
    )
    given_up = list(exhausted.values_list("pk", flat=True))
    if given_up:
        IngestedFile.objects.filter(pk__in=given_up, status=Status.PROCESSING).update(
            status=Status.FAILED,
            claimed_at=None,
            finished_at=timezone.now(),
            message=f"given up after {MAX_ATTEMPTS} attempts: its worker stopped each time (out of "
            "memory? killed?); the content is kept, re-process it after a fix",
        )
        logger.error("files given up after %d attempts: %s", MAX_ATTEMPTS, given_up)
    return given_up


def files_give_up() -> list[int]:
    """Uploads and local files abandoned MAX_ATTEMPTS times, now marked failed (see
    `_give_up_exhausted`); sources' files are handled by their scans."""
    return _give_up_exhausted(None)


def _requeue_abandoned(source: RemoteSource | None) -> list[int]:
    """Files of a source (or, for None, uploads and local files) left half-way: claimed by a
    worker that died, or queued or downloaded long ago with their task never run (the broker
    lost it, or the scan died before queueing it). Their ids, for one `file_run` each."""
    stale = timezone.now() - _claim_timeout()
    abandoned = IngestedFile.objects.filter(
        Q(status__in=[Status.PROCESSING, Status.QUEUED], claimed_at__lt=stale)
        | Q(status=Status.QUEUED, claimed_at__isnull=True, discovered_at__lt=stale)
        | Q(status=Status.DOWNLOADED, claimed_at__isnull=True, downloaded_at__lt=stale)
    )
    return list(abandoned.filter(_own_files(source)).values_list("pk", flat=True))


def files_abandoned() -> list[int]:
    """Uploads and local files left half-way (see `_requeue_abandoned`); sources' files are
    taken again by their scans."""
    return _requeue_abandoned(None)


# --- files ---------------------------------------------------------------------------------


def _files_dir() -> Path:
    path = Path(settings.INGESTION_FILES_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _store_path(row: IngestedFile) -> Path:
    # Kept under its ledger id and original name, by month, for an operator to find and read.
    month = (row.discovered_at or timezone.now()).strftime("%Y-%m")
    name = _SAFE.sub("_", row.name)[:120] or "file"
    folder = _files_dir() / month
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{row.pk:08d}-{name}"


def file_run(*, file_id: int, sleep: Any = time.sleep) -> IngestedFile | None:
    """Take a file as far as it can go: download it if queued, then process it.

    What one task per file runs; safe to call twice at once or after a worker died (claims).
    """
    row = _load_file(file_id)
    if row is None:
        return None
    if row.status == Status.QUEUED:
        row = _download(row, sleep=sleep)
        if row is None or row.status != Status.DOWNLOADED:
            return row
    return file_process(file_id=file_id)


def file_unreadable(*, file_id: int, error: BaseException) -> None:
    """Mark a ledger row that cannot be read failed (by an update, which reads nothing), so that
    no job takes it again; log it. Its content, if any, stays where it is."""
    message = f"this ledger row could not be read ({type(error).__name__}: {error}); fix or delete it"
    IngestedFile.objects.filter(pk=file_id).update(
        status=Status.FAILED,
        claimed_at=None,
        finished_at=timezone.now(),
        message=remote.server_text(message, LAST_ERROR_MAX_CHARS),
    )
    logger.error("file %s skipped: %s", file_id, message)


def _load_file(file_id: int) -> IngestedFile | None:
    """The row with its source; None when it is gone, or could not be read (then marked)."""
    try:
        return IngestedFile.objects.select_related("source").filter(pk=file_id).first()
    except Exception as exc:  # a value no Python object can be made of
        file_unreadable(file_id=file_id, error=exc)
        return None


def _download(row: IngestedFile, *, sleep: Any) -> IngestedFile | None:
    """Download a queued remote file (retried; never partial); None if another worker has it."""
    now = timezone.now()
    free = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - _claim_timeout())
    if not IngestedFile.objects.filter(Q(pk=row.pk, status=Status.QUEUED) & free).update(claimed_at=now):
        return None
    loaded = _load_file(row.pk)
    if loaded is None:
        return None
    row = loaded
    assert row.source is not None
    target = _store_path(row)
    wanted = remote.RemoteFile(
        path=row.remote_path, name=row.name, size=row.size or 0, mtime=row.remote_mtime
    )
    started = time.monotonic()
    try:
        got = remote.download_with_retries(source_endpoint(row.source), wanted, target, sleep=sleep)
    except remote.RemoteError as exc:
        row.server_reply = exc.reply
        message = remote.server_text(f"download failed ({exc.kind}): {exc.message}", LAST_ERROR_MAX_CHARS)
        return _finish(row, Status.FAILED, message=message)
    row.stored_path = str(target)
    row.sha256 = got.sha256
    row.size = got.size
    row.download_ms = int((time.monotonic() - started) * 1000)
    row.downloaded_at = timezone.now()
    row.status = Status.DOWNLOADED
    row.claimed_at = None
    row.save(
        update_fields=[
            "stored_path",
            "sha256",
            "size",
            "download_ms",
            "downloaded_at",
            "status",
            "claimed_at",
        ]
    )
    return row


def _store_stream(row: IngestedFile, stream: IO[bytes]) -> None:
    digest = hashlib.sha256()
    target = _store_path(row)
    partial = target.with_name(target.name + ".part")
    size = 0
    with partial.open("wb") as out:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    partial.replace(target)
    row.stored_path, row.sha256, row.size = str(target), digest.hexdigest(), size
    row.downloaded_at = timezone.now()
    row.status = Status.DOWNLOADED
    row.save(update_fields=["stored_path", "sha256", "size", "downloaded_at", "status"])


def file_take(*, name: str, stream: IO[bytes], origin: str = IngestedFile.Origin.UPLOAD) -> IngestedFile:
    """Keep a file given by HTTP upload or a local path, with its ledger row (`downloaded`)."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise IngestionError(f"bad file name {name!r}")
    row = IngestedFile.objects.create(origin=origin, name=name, status=Status.DOWNLOADED)
    try:
        _store_stream(row, stream)
    except OSError as exc:
        _finish(row, Status.FAILED, message=f"could not keep the file: {exc}")
        raise IngestionError(f"could not keep the file: {exc}") from exc
    return row


def file_import_path(*, path: Path) -> IngestedFile:
    """Take a local file (backfills, `manage.py ingest_file`) through the same pipeline."""
    with path.open("rb") as stream:
        row = file_take(name=path.name, stream=stream, origin=IngestedFile.Origin.LOCAL)
    return file_process(file_id=row.pk)


def file_reprocess_prepare(*, file: IngestedFile) -> None:
    """Make a kept file ready to be processed again (a worker then runs `file_run`)."""
    stale = timezone.now() - _claim_timeout()
    expired = file.claimed_at is not None and file.claimed_at < stale
    if file.status in (Status.QUEUED, Status.PROCESSING) and not expired:
        raise IngestionError(f"file {file.pk} is {file.status}; wait for it to finish")
    if not file.stored_path or not Path(file.stored_path).exists():
        raise IngestionError(f"{_no_content(file)} to process again")
    # Compare-and-swap on the content: the retention job may have deleted it a moment ago.
    if not IngestedFile.objects.filter(pk=file.pk, stored_path=file.stored_path).update(
        status=Status.DOWNLOADED, claimed_at=None
    ):
        raise IngestionError(_no_content(IngestedFile.objects.get(pk=file.pk)))


def file_reprocess(*, file: IngestedFile) -> IngestedFile:
    """Process a kept file again (after a fix): rejected, failed or imported ones; a remote file
    whose download failed is downloaded again."""
    if not file.stored_path and file.origin == IngestedFile.Origin.REMOTE and file.status == Status.FAILED:
        IngestedFile.objects.filter(pk=file.pk).update(status=Status.QUEUED, claimed_at=None)
        return file_run(file_id=file.pk) or file
    file_reprocess_prepare(file=file)
    return file_process(file_id=file.pk)


class _Rejected(Exception):
    """Rolls the file's transaction back."""


@dataclass
class _Tally:
    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    problems: list[slg.Problem] = field(default_factory=list)
    problem_count: int = 0

    def problem(self, item: slg.Problem, limit: int) -> None:
        self.problem_count += 1
        if len(self.problems) < limit:
            self.problems.append(item)


def _file_zone(row: IngestedFile) -> ZoneInfo:
    name = (row.source.time_zone if row.source else "") or settings.INGESTION_TIME_ZONE or settings.TIME_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise IngestionError(f"unknown time zone {name!r}") from exc


def _chunks(records: Iterable[slg.Record], size: int) -> Iterator[list[slg.Record]]:
    chunk: list[slg.Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ingest_records(records: list[slg.Record], meters: dict[str, str], tally: _Tally, limit: int) -> None:
    new = {r.cpe for r in records} - meters.keys()
    if new:
        meters.update(sensors.meters_for_external_ids(external_ids=sorted(new)))
    # The store labels interval energy with the interval's start (00:00-00:15 is 00:00), so
    # a quarter hour falls in its own day and hour; centi-kWh become kWh.
    outcome = sensors.readings_import(
        rows=[(meters[r.cpe], "energy", r.start, r.centi_kwh / 100, r.estimated) for r in records],
        source="ingestion",
    )
    tally.inserted += outcome["accepted"]
    tally.duplicates += outcome["duplicates"]
    tally.conflicts += outcome["conflicts"]
    for rejection in outcome["rejected"]:
        record = records[rejection["index"]]
        tally.problem(slg.Problem(line=record.line, field="reading", message=rejection["reason"]), limit)


_DONE = object()


def _parsed_chunks(reader: slg.SlgReader, size: int) -> Generator[list[slg.Record], None, None]:
    """The reader's records in chunks, parsed in a thread while this one waits on the database.

    The database's half of each chunk (COPY, indexes, commit) releases the GIL; parsing the
    next chunk meanwhile is most of what a file costs in Python. At most one chunk waits, so
    memory stays bounded whatever the file's size.
    """
    chunks: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        # Never blocks for good: the consumer may have stopped (an error while storing).
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def parse() -> None:
        try:
            for chunk in _chunks(reader, size):
                if not offer(chunk):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    parser = threading.Thread(target=parse, name="slg-parser", daemon=True)
    parser.start()
    try:
        while (item := chunks.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        parser.join()


MAX_ERRORS_KEPT = 1_000


def _imported_original(row: IngestedFile) -> IngestedFile | None:
    """The file imported with the same content as `row` (at most one: a constraint says so)."""
    if not row.sha256:
        return None
    return IngestedFile.objects.filter(sha256=row.sha256, status=Status.IMPORTED).exclude(pk=row.pk).first()


def file_process(*, file_id: int) -> IngestedFile:
    """Import a downloaded file's readings, all or nothing; a known content hash is a duplicate."""
    now = timezone.now()
    abandoned = Q(status=Status.PROCESSING, claimed_at__lt=now - _claim_timeout())
    claimed = IngestedFile.objects.filter(Q(pk=file_id) & (Q(status=Status.DOWNLOADED) | abandoned)).update(
        status=Status.PROCESSING, claimed_at=now, attempts=F("attempts") + 1
    )
    loaded = _load_file(file_id)
    if loaded is None:
        raise IngestionError(f"file {file_id} could not be read; it is marked failed")
    row = loaded
    if not claimed:
        return row  # another worker has it, or it is done
    started = time.monotonic()
    original = _imported_original(row)
    if original is not None:
        row.duplicate_of = original
        return _finish(
            row,
            Status.DUPLICATE,
            message=f"same content as file {original.pk} ({original.name}), imported before; nothing added",
            started=started,
        )
    try:
        tz = _file_zone(row)
        partial_ok = bool(row.source and row.source.import_valid_records)
        tally = _Tally()
        with Path(row.stored_path).open("rb") as stream:
            reader = slg.SlgReader(stream, tz=tz, max_problems=MAX_ERRORS_KEPT)
            try:
                parsed = contextlib.closing(_parsed_chunks(reader, CHUNK))
                # The collector paused for the whole file, not only while a chunk is stored:
                # the parser thread's records (millions of tuples, no cycles) set off a
                # collection every 700 allocations otherwise, a fifth of a file's CPU time
                # (bench/ingest_files.py).
                with gc_paused(), sensors.readings_transaction(), parsed as chunks:
                    meters: dict[str, str] = {}
                    for chunk in chunks:
                        _ingest_records(chunk, meters, tally, MAX_ERRORS_KEPT)
                    tally.records = reader.records
                    for problem in reader.problems:
                        tally.problem(problem, MAX_ERRORS_KEPT)
                    tally.problem_count += reader.problem_count - len(reader.problems)
                    if not reader.complete or (tally.problem_count and not partial_ok):
                        raise _Rejected
            except _Rejected:
                tally.records = reader.records
                return _reject(row, tally, complete=reader.complete, started=started)
    except (OSError, IngestionError) as exc:
        return _finish(row, Status.FAILED, message=f"could not process the file: {exc}", started=started)
    except Exception as exc:  # recorded on the file rather than left `processing` until the claim expires
        logger.exception("processing file %s failed", row.pk)
        return _finish(
            row, Status.FAILED, message=f"unexpected error while processing: {exc!r}", started=started
        )
    row.records = tally.records
    row.inserted, row.already_present, row.conflicts = tally.inserted, tally.duplicates, tally.conflicts
    row.quarantined = tally.problem_count
    row.errors = [p.as_dict() for p in tally.problems]
    row.error_count = tally.problem_count
    summary = f"{tally.inserted} readings added, {tally.duplicates} already present"
    if tally.conflicts:
        summary += f", {tally.conflicts} conflicting with stored values (stored kept)"
    if tally.problem_count:
        summary += f"; {tally.problem_count} bad records left out (see errors)"
    return _finish(row, Status.IMPORTED, message=summary, started=started)


def _reject(row: IngestedFile, tally: _Tally, *, complete: bool, started: float) -> IngestedFile:
    row.records = tally.records
    row.inserted = row.already_present = row.conflicts = row.quarantined = 0
    row.errors = [p.as_dict() for p in tally.problems]
    row.error_count = tally.problem_count
    why = "incomplete or corrupt (header/trailer)" if not complete else f"{tally.problem_count} bad records"
    first = tally.problems[0] if tally.problems else None
    message = f"rejected whole, nothing stored: {why}"
    if first is not None:
        message += f"; first: line {first.line}: {first.message}"
    return _finish(row, Status.REJECTED, message=message, started=started)


def _finish(row: IngestedFile, status: str, *, message: str, started: float | None = None) -> IngestedFile:
    claim = row.claimed_at
    row.status = status
    row.message = message
    row.finished_at = timezone.now()
    row.claimed_at = None
    if started is not None:
        row.process_ms = int((time.monotonic() - started) * 1000)
    fields = [f.attname for f in IngestedFile._meta.concrete_fields if not f.primary_key]
    # Only while the claim is ours: a run that outlived INGESTION_CLAIM_TIMEOUT and was taken
    # over must not overwrite the newer run's outcome (its readings changed nothing: inserts
    # never double).
    owned = IngestedFile.objects.filter(pk=row.pk, claimed_at=claim)
    try:
        with transaction.atomic(using=DB):
            recorded = owned.update(**{name: getattr(row, name) for name in fields})
    except IntegrityError:
        # ingfile_one_imported_per_content: another worker imported the same content while
        # this one did (both found no imported original when they started). Its readings are
        # stored once all the same (inserts never double); this file is a duplicate of it.
        original = _imported_original(row)
        if status != Status.IMPORTED or original is None:
            raise
        status = row.status = Status.DUPLICATE
        row.duplicate_of = original
        row.message = message = (
            f"same content as file {original.pk} ({original.name}), imported at the same moment by "
            f"another worker; the readings are stored once (this run: {message})"
        )
        recorded = owned.update(**{name: getattr(row, name) for name in fields})
    if not recorded:
        logger.warning(
            "file %s: the claim was taken over; this run's outcome (%s) is not recorded", row.pk, status
        )
        row.refresh_from_db()
        return row
    events.send_on_commit(
        events.data_ingestion,
        sender=IngestedFile,
        using=DB,
        file_id=row.pk,
        source=row.source.name if row.source_id and row.source else None,
        name=row.name,
        status=status,
        counts={
            "records": row.records,
            "inserted": row.inserted,
            "duplicates": row.already_present,
            "conflicts": row.conflicts,
        },
    )
    log = logger.warning if status in (Status.REJECTED, Status.FAILED) else logger.info
    log("file %s (%s): %s: %s", row.pk, row.name, status, message)
    return row


def _no_content(file: IngestedFile) -> str:
    if file.content_deleted_at is not None:
        deleted = f"{file.content_deleted_at:%Y-%m-%d}"
        return f"file {file.pk} has no kept content: the retention job deleted it on {deleted}"
    return f"file {file.pk} has no kept content"


def file_content(*, file: IngestedFile) -> Path:
    """The kept content of a file, for an operator to read."""
    if not file.stored_path or not Path(file.stored_path).exists():
        raise IngestionError(_no_content(file))
    return Path(file.stored_path)


def _retention_cutoffs(now: datetime) -> list[tuple[tuple[str, ...], datetime]]:
    groups: list[tuple[tuple[str, ...], datetime]] = []
    for statuses, days in (
        (DONE, settings.INGESTION_FILES_RETENTION_DAYS),
        ((Status.REJECTED, Status.FAILED), settings.INGESTION_REJECTED_FILES_RETENTION_DAYS),
    ):
        if days > 0:  # 0: kept for ever
            groups.append((tuple(statuses), now - timedelta(days=days)))
    return groups


def files_retention(*, now: datetime | None = None) -> dict[str, Any]:
    """Delete the kept content of files whose outcome is older than their retention:
    INGESTION_FILES_RETENTION_DAYS for imported and duplicate files,
    INGESTION_REJECTED_FILES_RETENTION_DAYS for rejected and failed ones (kept longer, for an
    operator; re-processing one starts its clock again). Files on their way (queued,
    downloaded, processing) are never touched. The ledger row stays, hash included (the same
    content sent again is still a duplicate), with `content_deleted_at` set.

    One file at a time: one that cannot be deleted (or whose path lies outside
    INGESTION_FILES_DIR) is reported and keeps its row as it was; the others go on. Idempotent.
    """
    now = now or timezone.now()
    report: dict[str, Any] = {"deleted": [], "failed": []}
    root = Path(settings.INGESTION_FILES_DIR).resolve()
    for statuses, cutoff in _retention_cutoffs(now):
        old = (
            IngestedFile.objects.exclude(stored_path="")
            .filter(status__in=statuses)
            .alias(outcome_at=Coalesce("finished_at", "downloaded_at", "discovered_at"))
            .filter(outcome_at__lt=cutoff)
        )
        # Only the columns the job needs: a row with an unreadable value elsewhere is still
        # handled.
        for file_id, stored in old.order_by("pk").values_list("pk", "stored_path"):
            try:
                problem = _delete_content(file_id, stored, statuses, root, now)
            except Exception as exc:  # reported; the next file is not held up
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                report["deleted"].append(file_id)
            else:
                report["failed"].append({"file": file_id, "error": problem})
                logger.error("retention: the content of file %s was not deleted: %s", file_id, problem)
    if report["deleted"]:
        logger.info("retention: the content of %d file(s) deleted", len(report["deleted"]))
    return report


def _delete_content(
    file_id: int, stored: str, statuses: tuple[str, ...], root: Path, now: datetime
) -> str | None:
    """Delete one file's kept content; None when done, else why not (the row then unchanged)."""
    path = Path(stored)
    try:
        inside = path.is_absolute() and path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        return f"{stored} is not under INGESTION_FILES_DIR ({root}); not the job's to delete"
    # The row first (compare-and-swap on what was read), so that a re-processing that starts
    # meanwhile is either refused (no content) or makes this update miss.
    taken = IngestedFile.objects.filter(pk=file_id, status__in=statuses, stored_path=stored).update(
        stored_path="", content_deleted_at=now
    )
    if not taken:
        return None  # changed meanwhile (re-processed): nothing to do now
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        IngestedFile.objects.filter(pk=file_id, stored_path="").update(
            stored_path=stored, content_deleted_at=None
        )
        return f"cannot delete {stored}: {exc.strerror or exc}"
    return None


def file_delete_content(*, file: IngestedFile) -> None:
    """Forget a file's kept content (its ledger row stays)."""
    if file.stored_path:
        Path(file.stored_path).unlink(missing_ok=True)
        IngestedFile.objects.filter(pk=file.pk).update(stored_path="")


# --- summaries -----------------------------------------------------------------------------


def status_summary() -> dict[str, Any]:
    """Last scan per source, file counts by status, the latest import and the latest error."""
    counts = dict(
        IngestedFile.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    last_error = (
        IngestedFile.objects.filter(status__in=[Status.REJECTED, Status.FAILED])
        .order_by("-finished_at", "-id")
        .values("id", "name", "status", "message", "finished_at", "error_count")
        .first()
    )
    last_imported = (
        IngestedFile.objects.filter(status=Status.IMPORTED)
        .order_by("-finished_at", "-id")
        .values(
            "id", "name", "finished_at", "records", "inserted", "already_present", "quarantined", "message"
        )
        .first()
    )
    return {
        "sources": [
            {
                "name": s.name,
                "protocol": s.protocol,
                "enabled": s.enabled,
                "last_scan_at": s.last_scan_at,
                "last_scan_ok": s.last_scan_ok,
                "last_scan_files": s.last_scan_files,
                "last_error": s.last_error,
                "last_error_kind": s.last_error_kind,
                "scanning": s.scan_claimed_at is not None,
            }
            for s in RemoteSource.objects.all()
        ],
        "files": {status: counts.get(status, 0) for status in Status.values},
        "last_imported": last_imported,
        "last_error": last_error,
    }


def overview() -> dict[str, Any]:
    """Counts for the platform overview."""
    return {
        "sources": RemoteSource.objects.count(),
        "files": IngestedFile.objects.count(),
        "files_rejected": IngestedFile.objects.filter(status=Status.REJECTED).count(),
    }


# --- reads for the pages ----------------------------------------------------------------------


def sources_list() -> list[RemoteSource]:
    """Every source, by name (with its scan state and any SFTP host key offered for acceptance)."""
    return list(RemoteSource.objects.order_by("name"))


def source_get(*, name: str) -> RemoteSource | None:
    """The source called `name`, or None."""
    return RemoteSource.objects.filter(name=name).first()


def files_list(*, status: str | None = None) -> QuerySet[IngestedFile]:
    """The file ledger, newest first, without the error lists (a page shows their counts; each
    file's errors come with `file_get`); lazily evaluated, for a paginator to slice."""
    rows = IngestedFile.objects.select_related("source").defer("errors").order_by("-discovered_at", "-id")
    return rows.filter(status=status) if status else rows


def file_get(*, file_id: int) -> IngestedFile | None:
    """One ledger row with its errors (each {line, field, message}), or None."""
    return IngestedFile.objects.select_related("source").filter(pk=file_id).first()


def source_scan_later(*, source: RemoteSource) -> None:
    """Queue a scan of `source` for a worker once the transaction commits (the page's "scan
    now": a scan waits `settle_s` and may retry a slow server for longer than a web request
    may last). Each new file is then imported by its own task and announced on
    `data_ingestion`. The task is named, not imported: `ingestion.tasks` imports this module."""
    from celery import current_app

    source_id = source.pk
    transaction.on_commit(
        lambda: current_app.signature("ingestion.tasks.source_scan", args=[source_id]).apply_async(),
        using=DB,
    )


def file_run_later(*, file: IngestedFile) -> None:
    """Queue a kept file (`downloaded`, or `queued` for download) for a worker once the
    transaction commits: a file bigger than INGESTION_INLINE_BYTES takes longer to import than
    a web request may last. The task is named, not imported (see `source_scan_later`)."""
    from celery import current_app

    file_id = file.pk
    transaction.on_commit(
        lambda: current_app.signature("ingestion.tasks.file_run", args=[file_id]).apply_async(), using=DB
    )


def demo_load(*, now: datetime | None = None) -> dict[str, int]:
    """The demo building's meter files (ingestion/demo.py): daily files imported through this
    pipeline, and one rejected with its errors' line numbers. Idempotent."""
    # Here, not at the top: the demo builds on this module's pipeline (file_take, file_process).
    from ingestion import demo

    zone = ZoneInfo(settings.INGESTION_TIME_ZONE or settings.TIME_ZONE)
    return demo.demo_files_load(now=now, tz=zone)


# --- MQTT (ingestion/mqtt, docs/mqtt.md) ---------------------------------------------------


def mqtt_brokers_enabled() -> bool:
    """Whether an enabled MQTT broker exists: `manage.py run` starts the ingester then."""
    from ingestion.mqtt import services as mqtt

    return mqtt.brokers_enabled()


def mqtt_health() -> dict[str, Any]:
    """The MQTT ingester's state per enabled broker, for /health (`ingestion.mqtt.services.health`)."""
    from ingestion.mqtt import services as mqtt

    return mqtt.health()
