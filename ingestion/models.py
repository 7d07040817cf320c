"""The ingestion module's tables: remote sources of meter files and the ledger of every file."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from ingestion.validators import (
    validate_host,
    validate_host_key,
    validate_patterns,
    validate_printable,
    validate_secret_path,
    validate_text_block,
    validate_time_zone,
)

DEFAULT_PATTERNS = "*.slg_v2 *.sgl_v2"
# A source's own scan interval: beat looks for due sources every minute, and a feed scanned
# less than monthly is not one.
MIN_INTERVAL_S, MAX_INTERVAL_S = 60, 31 * 86400
# Seconds between a scan's two listings; a worker waits this long holding the connection.
MAX_SETTLE_S = 300.0
# A PEM private key (a 16,384-bit RSA key is 12.7 kB) and a host key pin list.
MAX_KEY_CHARS = 16_384
MAX_HOST_KEY_CHARS = 8_192
# What a server said, as kept (ingestion.remote.REPLY_MAX_CHARS).
REPLY_MAX_LENGTH = 200


class RemoteSource(models.Model):
    """A server that meter files are fetched from (FTP, explicit FTPS or SFTP)."""

    class Protocol(models.TextChoices):
        FTP = "ftp", "FTP"
        FTPS = "ftps", "FTPS (explicit TLS)"
        SFTP = "sftp", "SFTP"

    name = models.SlugField(max_length=64, unique=True)
    protocol = models.CharField(max_length=8, choices=Protocol.choices, default=Protocol.FTP)
    host = models.CharField(
        max_length=255,
        validators=[validate_host],
        help_text="a host name or IP address; loopback and private addresses only when "
        "INGESTION_ALLOWED_NETWORKS lists them, link-local and metadata addresses never",
    )
    port = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(65535)],
        help_text="1-65535, or 0: the protocol's usual port (21 or 22)",
    )
    username = models.CharField(max_length=128, blank=True, validators=[validate_printable])
    # Secrets: either stored here (write-only in the API) or read from a file at connect time,
    # so that a deployment can keep them in its secret store.
    password = models.CharField(max_length=256, blank=True, validators=[validate_printable])
    password_file = models.CharField(max_length=512, blank=True, validators=[validate_secret_path])
    private_key = models.TextField(
        blank=True,
        max_length=MAX_KEY_CHARS,
        validators=[validate_text_block],
        help_text="SFTP client key, PEM text",
    )
    private_key_file = models.CharField(max_length=512, blank=True, validators=[validate_secret_path])
    host_key = models.TextField(
        blank=True,
        max_length=MAX_HOST_KEY_CHARS,
        validators=[validate_host_key],
        help_text="SFTP: the pinned server key ('ssh-ed25519 AAAA...' or 'SHA256:...'), one a line",
    )
    ca_file = models.CharField(
        max_length=512,
        blank=True,
        validators=[validate_secret_path],
        help_text="FTPS: CA bundle or server certificate, under INGESTION_SECRETS_DIR",
    )
    tls_verify = models.BooleanField(default=True)
    remote_path = models.CharField(max_length=512, default="/", validators=[validate_printable])
    patterns = models.CharField(
        max_length=255,
        default=DEFAULT_PATTERNS,
        validators=[validate_patterns],
        help_text="shell patterns, space-separated",
    )
    enabled = models.BooleanField(default=True)
    interval_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(MIN_INTERVAL_S), MaxValueValidator(MAX_INTERVAL_S)],
        help_text="seconds between scans (60 to 31 days); empty: FTP_CHECK_INTERVAL",
    )
    settle_s = models.FloatField(
        default=2.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(MAX_SETTLE_S)],
        help_text="seconds (0-300) between the two listings that show a file has stopped growing",
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="the files' clock; empty: the default",
    )
    import_valid_records = models.BooleanField(
        default=False,
        help_text="import the valid records of a file with bad detail lines (the rest quarantined) "
        "instead of rejecting it whole",
    )
    from_settings = models.BooleanField(
        default=False, editable=False, help_text="connection fields come from FTP_SA4CPS_* settings"
    )
    # Scan state. `scan_claimed_at` is a compare-and-swap claim: one scan of a source at a time.
    scan_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_scan_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_scan_ok = models.BooleanField(null=True, editable=False)
    last_scan_files = models.PositiveIntegerField(default=0, editable=False)
    last_error = models.TextField(blank=True, editable=False, help_text="what went wrong, in our words")
    last_error_reply = models.CharField(
        max_length=REPLY_MAX_LENGTH,
        blank=True,
        editable=False,
        help_text="what the server said with the last error (shown to operators only)",
    )
    last_error_kind = models.CharField(max_length=16, blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    # An SFTP key the server offered that is not pinned, for an operator to accept.
    offered_host_key = models.TextField(blank=True, editable=False)
    offered_fingerprint = models.CharField(max_length=128, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # What a source records about its scans (and when it was made): shown, never edited, in
    # the admin and the API alike.
    STATE_FIELDS = (
        "from_settings",
        "last_scan_at",
        "last_scan_ok",
        "last_scan_files",
        "last_error",
        "last_error_reply",
        "last_error_kind",
        "last_error_at",
        "offered_fingerprint",
        "created_at",
        "updated_at",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IngestedFile(models.Model):
    """One meter file taken in (from a source, an upload or a local path), and what came of it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued for download"
        DOWNLOADED = "downloaded", "downloaded"
        PROCESSING = "processing", "processing"
        IMPORTED = "imported", "imported"
        DUPLICATE = "duplicate", "duplicate"
        REJECTED = "rejected", "rejected"
        FAILED = "failed", "failed"

    class Origin(models.TextChoices):
        REMOTE = "remote", "remote source"
        UPLOAD = "upload", "HTTP upload"
        LOCAL = "local", "local file"

    source = models.ForeignKey(
        RemoteSource, null=True, blank=True, on_delete=models.PROTECT, related_name="files"
    )
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.REMOTE)
    name = models.CharField(max_length=255)
    remote_path = models.CharField(max_length=1024, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    remote_mtime = models.DateTimeField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    stored_path = models.CharField(max_length=1024, blank=True, help_text="the content, kept under var/")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    records = models.PositiveIntegerField(default=0, help_text="detail records in the file")
    inserted = models.PositiveIntegerField(default=0)
    already_present = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    quarantined = models.PositiveIntegerField(default=0, help_text="bad records left out (partial import)")
    errors = models.JSONField(default=list, blank=True, help_text="[{line, field, message}]")
    error_count = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, help_text="what happened, in one sentence")
    server_reply = models.CharField(
        max_length=REPLY_MAX_LENGTH,
        blank=True,
        help_text="what the server said when a download failed (shown to operators only)",
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="when processing last started")
    discovered_at = models.DateTimeField(auto_now_add=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    content_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="when the retention job deleted the kept content (the row stays)"
    )
    download_ms = models.PositiveIntegerField(null=True, blank=True)
    process_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-discovered_at", "-id"]
        indexes = [models.Index(fields=["source", "remote_path"], name="ingfile_source_path")]
        constraints = [
            # One ledger row per version of a remote file: two scans cannot queue it twice.
            models.UniqueConstraint(
                fields=["source", "remote_path", "size", "remote_mtime"],
                condition=models.Q(origin="remote"),
                name="ingfile_one_per_remote_version",
            ),
            # One imported file per content: of two workers importing identical files at the
            # same moment, the second to record its outcome becomes a duplicate of the first.
            models.UniqueConstraint(
                fields=["sha256"],
                condition=models.Q(status="imported") & ~models.Q(sha256=""),
                name="ingfile_one_imported_per_content",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


# MQTT brokers and mappings (issue 15) live in their sub-package; imported here so that Django
# finds them in the ingestion app.
from ingestion.mqtt.models import Broker, Mapping  # noqa: E402

__all__ = ["Broker", "IngestedFile", "Mapping", "RemoteSource"]
