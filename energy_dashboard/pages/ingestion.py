"""The ingestion page: the remote sources with their last scan ("scan now"; an unknown SFTP host
key's fingerprint to accept), the enabled MQTT brokers' state (read-only), the file ledger
(status, counts, errors with their line numbers, re-process), and an upload form.

Every command goes through `ingestion.services`, as the API's do: an upload or a re-process
of a file up to INGESTION_INLINE_BYTES runs in the request, so the page shows its outcome (a
message, and the file's ledger page with each error and its line); a bigger file, and a scan,
are queued for a worker (they may take longer than a request may last), and their outcome
reaches the page by the live feed. Plain forms (multipart for the
upload, CSRF on each) so that the page works without JavaScript; the script adds drag and drop
and live updates. Viewers see no control, and a POST of theirs is refused (403) and changes
nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST, require_safe

from energy_dashboard.core import roles
from energy_dashboard.core.web import page_view, render_page
from ingestion import services as ingestion_services

# Ledger rows per page (the API pages through them the same way).
FILES_PER_PAGE = 25
# The errors a file's page lists (a rejected file keeps up to INGESTION_MAX_ERRORS of them).
ERRORS_SHOWN = 500
# A multipart body's framing besides the file (boundary, part headers, the CSRF field).
UPLOAD_FRAMING_BYTES = 64 * 1024
STATUS_BADGE = {
    "imported": "good",
    "duplicate": "neutral",
    "queued": "neutral",
    "downloaded": "neutral",
    "processing": "fair",
    "rejected": "poor",
    "failed": "poor",
}


def upload_limit() -> int:
    """The largest file the page takes: INGESTION_UPLOAD_MAX_BYTES, as the API's upload."""
    return int(settings.INGESTION_UPLOAD_MAX_BYTES)


def _inline(row: Any) -> bool:
    """A file up to INGESTION_INLINE_BYTES is imported in the request (the answer shows its
    outcome); a bigger one is queued for a worker, and its page follows it live."""
    return bool((row.size or 0) <= settings.INGESTION_INLINE_BYTES)


def _refused(request: HttpRequest) -> HttpResponse:
    return render_page(
        request,
        "pages/error.html",
        title="Not allowed",
        section="ingestion",
        context={
            "heading": "Not allowed",
            "detail": "Only operators scan sources, accept host keys, re-process or upload files. "
            "Your account is a viewer's; nothing was changed.",
        },
        status=403,
    )


def _file_row(row: Any) -> dict[str, Any]:
    return {"id": row.pk, "status": row.status, "badge": STATUS_BADGE.get(row.status, "neutral")}


@require_safe
@page_view
def ingestion(request: HttpRequest) -> HttpResponse:
    """Sources, the upload form (operators), the ledger (paginated, optionally by status)."""
    status = request.GET.get("status", "")
    if status not in STATUS_BADGE:
        status = ""
    paginator = Paginator(ingestion_services.files_list(status=status or None), FILES_PER_PAGE)
    files = paginator.get_page(request.GET.get("page"))
    summary = ingestion_services.status_summary()
    mqtt = ingestion_services.mqtt_health()
    return render_page(
        request,
        "pages/ingestion.html",
        title="Ingestion",
        section="ingestion",
        script="ingestion",
        live=True,
        page={"uploadLimit": upload_limit()},
        context={
            "sources": ingestion_services.sources_list(),
            # Enabled MQTT brokers and what the ingester last said of each (docs/ingestion.md).
            "mqtt": mqtt,
            "brokers": sorted(mqtt["brokers"].items()),
            "files": files,
            "counts": summary["files"],
            "status": status,
            "statuses": list(STATUS_BADGE),
            "badges": STATUS_BADGE,
            "upload_limit": upload_limit(),
        },
    )


@require_safe
@page_view
def file_detail(request: HttpRequest, file_id: int) -> HttpResponse:
    """One ledger row: its counts, its message, every error with its line number."""
    row = ingestion_services.file_get(file_id=file_id)
    if row is None:
        raise Http404(f"No file {file_id} in the ledger.")
    errors = list(row.errors or [])
    return render_page(
        request,
        "pages/ingestion_file.html",
        title=f"File {row.name}",
        section="ingestion",
        script="ingestion",
        live=True,
        page={"file": _file_row(row)},
        context={
            "file": row,
            "badge": STATUS_BADGE.get(row.status, "neutral"),
            "errors": errors[:ERRORS_SHOWN],
            "errors_hidden": max(0, row.error_count - min(len(errors), ERRORS_SHOWN)),
        },
    )


def _to_file(row: Any) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("page-ingestion-file", args=[row.pk]))


def _outcome(request: HttpRequest, row: Any) -> None:
    """The message for a processed file: its status and its sentence."""
    level = messages.ERROR if row.status in ("rejected", "failed") else messages.SUCCESS
    detail = ""
    if row.error_count:
        detail = f" {row.error_count} error{'s' if row.error_count != 1 else ''}, listed below."
    messages.add_message(request, level, f"{row.name}: {row.status}. {row.message}{detail}")


class _CappedUpload(TemporaryFileUploadHandler):
    """Streams an upload to a temporary file (never into memory) and drops it past `limit`."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.too_large = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large = True
            return None  # the rest of the file is read and dropped; nothing is kept
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size: int) -> Any:
        if self.too_large:
            self.file.close()  # a temporary file: closing deletes it
            return None
        return super().file_complete(file_size)


def _too_large(request: HttpRequest) -> HttpResponse:
    messages.error(
        request,
        f"The file is larger than the upload limit ({upload_limit():,} bytes, "
        "INGESTION_UPLOAD_MAX_BYTES); nothing was kept.",
    )
    return HttpResponseRedirect(reverse("page-ingestion") + "#upload")


# CSRF is checked by `_upload` (csrf_protect) after the handler is set: the middleware's check
# would read the body first, with Django's handlers, which keep up to 2.5 MB in memory.
@csrf_exempt
@require_POST
@page_view
def upload(request: HttpRequest) -> HttpResponse:
    """An operator's meter file (multipart field `file`), processed here; its ledger page shows
    the outcome, errors with their line numbers included."""
    if not roles.can_operate(request.user):
        return _refused(request)
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > upload_limit() + UPLOAD_FRAMING_BYTES:
        return _too_large(request)  # refused before the body is read
    handler = _CappedUpload(request, upload_limit())
    request.upload_handlers = [handler]
    return _upload(request, handler)


@csrf_protect
def _upload(request: HttpRequest, handler: _CappedUpload) -> HttpResponse:
    upload = request.FILES.get("file")  # reading FILES is what runs the handler
    if handler.too_large:
        return _too_large(request)
    if upload is None:
        messages.error(request, "Choose a meter file to upload.")
        return HttpResponseRedirect(reverse("page-ingestion") + "#upload")
    try:
        row = ingestion_services.file_take(name=upload.name or "", stream=upload)
    except ingestion_services.IngestionError as exc:
        messages.error(request, f"The upload was not taken: {exc}.")
        return HttpResponseRedirect(reverse("page-ingestion") + "#upload")
    if not _inline(row):
        ingestion_services.file_run_later(file=row)
        messages.info(request, f"{row.name}: kept and queued for a worker; this page shows its outcome.")
        return _to_file(row)
    _outcome(request, ingestion_services.file_process(file_id=row.pk))
    return _to_file(row)


@require_POST
@page_view
def file_reprocess(request: HttpRequest, file_id: int) -> HttpResponse:
    """Process a kept file again (after a fix), here; its page shows the outcome."""
    if not roles.can_operate(request.user):
        return _refused(request)
    row = ingestion_services.file_get(file_id=file_id)
    if row is None:
        raise Http404(f"No file {file_id} in the ledger.")
    try:
        if _inline(row):
            _outcome(request, ingestion_services.file_reprocess(file=row))
        else:
            ingestion_services.file_reprocess_prepare(file=row)
            ingestion_services.file_run_later(file=row)
            messages.info(request, f"{row.name}: queued for a worker; this page shows its outcome.")
    except ingestion_services.IngestionError as exc:
        messages.error(request, f"{row.name} was not processed again: {exc}.")
    return _to_file(row)


def _source_or_404(name: str) -> Any:
    source = ingestion_services.source_get(name=name)
    if source is None:
        raise Http404(f"No source {name}.")
    return source


@require_POST
@page_view
def source_scan(request: HttpRequest, name: str) -> HttpResponse:
    """Queue a scan of a source now (a worker runs it, as the API's scan does by default: a
    scan may take longer than a request may last); its files reach the ledger live."""
    if not roles.can_operate(request.user):
        return _refused(request)
    source = _source_or_404(name)
    if not source.enabled:
        messages.error(request, f"{source.name} is disabled; enable it before scanning it.")
    else:
        ingestion_services.source_scan_later(source=source)
        messages.success(
            request,
            f"{source.name}: scan queued. New files appear in the ledger below as they are imported; "
            "the source's last scan shows once it is done.",
        )
        # `scanned` tells the page's script to watch for the scan's outcome.
        return HttpResponseRedirect(
            reverse("page-ingestion") + f"?{urlencode({'scanned': source.name})}#source-{source.name}"
        )
    return HttpResponseRedirect(reverse("page-ingestion") + f"#source-{source.name}")


@require_POST
@page_view
def source_accept_host_key(request: HttpRequest, name: str) -> HttpResponse:
    """Pin the SFTP host key the server offered, if the form's fingerprint is that one."""
    if not roles.can_operate(request.user):
        return _refused(request)
    source = _source_or_404(name)
    try:
        fingerprint = request.POST.get("fingerprint", "")
        ingestion_services.source_accept_host_key(source=source, fingerprint=fingerprint)
    except ingestion_services.IngestionError as exc:
        messages.error(request, f"{source.name}: the host key was not accepted: {exc}.")
    else:
        messages.success(request, f"{source.name}: host key pinned; the next scan uses it.")
    return HttpResponseRedirect(reverse("page-ingestion") + f"#source-{source.name}")
