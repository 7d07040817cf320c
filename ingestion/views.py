"""Ingestion API: sources, the file ledger, uploads and a status summary. Writes go through
ingestion.services; views parse input and shape output."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.db import transaction
from django.db.models import ProtectedError, QuerySet
from django.http import FileResponse, HttpRequest
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from energy_dashboard.core.permissions import IsOperator, ReadAny, ReadOrOperate
from energy_dashboard.core.schema import ErrorSerializer
from ingestion import services, tasks
from ingestion.filters import IngestedFileFilter
from ingestion.models import IngestedFile, RemoteSource
from ingestion.serializers import (
    AcceptHostKey,
    IngestedFileDetailSerializer,
    IngestedFileSerializer,
    RemoteSourceSerializer,
    Upload,
)


def _truthy(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def _run_or_queue(row: IngestedFile) -> tuple[IngestedFile, int]:
    """Process a small file in the request (the answer carries the outcome); queue a big one."""
    if (row.size or 0) <= settings.INGESTION_INLINE_BYTES:
        return services.file_process(file_id=row.pk), status.HTTP_201_CREATED
    transaction.on_commit(lambda: tasks.file_run.delay(row.pk), using=services.DB)
    return row, status.HTTP_202_ACCEPTED


class RemoteSourceViewSet(viewsets.ModelViewSet[RemoteSource]):
    """Remote sources of meter files, by name. Viewers read; operators manage, scan, pin keys."""

    queryset = RemoteSource.objects.all()
    serializer_class = RemoteSourceSerializer
    permission_classes = [ReadOrOperate]
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def perform_destroy(self, instance: RemoteSource) -> None:
        try:
            instance.delete()
        except ProtectedError:
            raise ValidationError(
                {"message": f"source {instance.name} has files in the ledger; disable it instead"}
            ) from None

    @extend_schema(request=None, responses={202: dict, 200: dict, 502: dict})
    @action(detail=True, methods=["post"], permission_classes=[IsOperator])
    def scan(self, request: Request, name: str | None = None) -> Response:
        """Scan now. Queued for a worker (202), or with `?wait=true` run here, files included."""
        source = self.get_object()
        if not _truthy(request, "wait"):
            transaction.on_commit(lambda: tasks.source_scan.delay(source.pk), using=services.DB)
            return Response({"source": source.name, "queued": True}, status=status.HTTP_202_ACCEPTED)
        processed: list[int] = []
        result = services.source_scan(source=source, on_file=processed.append)
        files = [services.file_run(file_id=pk) for pk in processed]
        body = result.as_dict() | {
            "files": IngestedFileSerializer(
                [f for f in files if f is not None], many=True, context=self.get_serializer_context()
            ).data
        }
        return Response(body, status=status.HTTP_200_OK if result.ok or result.skipped else 502)

    @extend_schema(request=AcceptHostKey, responses=RemoteSourceSerializer)
    @action(detail=True, methods=["post"], url_path="accept-host-key", permission_classes=[IsOperator])
    def accept_host_key(self, request: Request, name: str | None = None) -> Response:
        """Pin the SFTP host key the server offered at the last scan (send its fingerprint)."""
        body = AcceptHostKey(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            source = services.source_accept_host_key(
                source=self.get_object(), fingerprint=body.validated_data["fingerprint"]
            )
        except services.IngestionError as exc:
            raise ValidationError({"message": str(exc)}) from None
        return Response(RemoteSourceSerializer(source, context=self.get_serializer_context()).data)


class IngestedFileViewSet(viewsets.ReadOnlyModelViewSet[IngestedFile]):
    """The ledger of meter files; detail includes the errors with their line numbers."""

    queryset = IngestedFile.objects.select_related("source")
    permission_classes = [ReadOrOperate]
    filterset_class = IngestedFileFilter

    def get_queryset(self) -> QuerySet[IngestedFile]:
        queryset = super().get_queryset()
        # Lists leave out the (possibly long) error lists.
        return queryset.defer("errors") if self.action == "list" else queryset

    def get_serializer_class(self) -> type[BaseSerializer[IngestedFile]]:
        return IngestedFileSerializer if self.action == "list" else IngestedFileDetailSerializer

    @extend_schema(
        request=None, responses={200: IngestedFileDetailSerializer, 202: IngestedFileDetailSerializer}
    )
    @action(detail=True, methods=["post"], permission_classes=[IsOperator])
    def reprocess(self, request: Request, pk: str | None = None) -> Response:
        """Process a kept file again (after a fix); never duplicates what is stored. A file up to
        INGESTION_INLINE_BYTES is processed here (200 with the outcome); a bigger one is queued
        for a worker (202)."""
        row = self.get_object()
        try:
            if (row.size or 0) > settings.INGESTION_INLINE_BYTES:
                services.file_reprocess_prepare(file=row)
                transaction.on_commit(lambda: tasks.file_run.delay(row.pk), using=services.DB)
                row.refresh_from_db()
                return Response(
                    IngestedFileDetailSerializer(row, context=self.get_serializer_context()).data,
                    status=status.HTTP_202_ACCEPTED,
                )
            row = services.file_reprocess(file=row)
        except services.IngestionError as exc:
            raise ValidationError({"message": str(exc)}) from None
        return Response(
            IngestedFileDetailSerializer(row, context=self.get_serializer_context()).data,
            status=status.HTTP_200_OK,
        )

    @extend_schema(responses={(200, "text/plain"): bytes})
    @action(detail=True, methods=["get"])
    def content(self, request: Request, pk: str | None = None) -> FileResponse:
        """The file as it was received (kept for rejected files, and for all until deleted)."""
        row = self.get_object()
        try:
            path = services.file_content(file=row)
        except services.IngestionError as exc:
            raise ValidationError({"message": str(exc)}) from None
        # FileResponse quotes the name (it came from a server or an upload) in the header.
        return FileResponse(path.open("rb"), filename=row.name, content_type="text/plain; charset=iso-8859-1")


# What a multipart body holds besides the file (boundaries, part headers, a small field or
# two): a body longer than INGESTION_UPLOAD_MAX_BYTES plus this is refused before it is read.
UPLOAD_FRAMING_BYTES = 64 * 1024


class UploadTooLarge(APIException):
    """413: the upload is bigger than INGESTION_UPLOAD_MAX_BYTES."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the file is larger than INGESTION_UPLOAD_MAX_BYTES ({limit} bytes); nothing was kept"
        )


class CappedUploadHandler(TemporaryFileUploadHandler):
    """Streams an upload to a temporary file (never into memory) and stops as soon as the
    files' bytes pass `limit`: the temporary file is deleted and the rest is not read."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],
        content_length: int,
        boundary: bytes | str,  # bytes from Django's parser; str in django-stubs
        encoding: str | None = None,
    ) -> None:
        if content_length > self.limit + UPLOAD_FRAMING_BYTES:
            raise UploadTooLarge(self.limit)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.file.close()  # a temporary file: closing deletes it
            raise UploadTooLarge(self.limit)
        return super().receive_data_chunk(raw_data, start)


class UploadView(APIView):
    """POST a meter file (multipart field `file`): the same pipeline as files from a server.
    At most INGESTION_UPLOAD_MAX_BYTES, counted as it streams to disk (413 past it)."""

    permission_classes = [IsOperator]
    parser_classes = [MultiPartParser, FormParser]

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        # Before anything reads the body (the session's CSRF check reads POST): Django's own
        # handlers would keep up to 2.5 MB in memory and write any size to disk.
        request.upload_handlers = [CappedUploadHandler(request, settings.INGESTION_UPLOAD_MAX_BYTES)]
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": Upload},
        responses={
            201: IngestedFileDetailSerializer,
            202: IngestedFileDetailSerializer,
            413: ErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        body = Upload(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        try:
            row = services.file_take(name=upload.name, stream=upload)
        except services.IngestionError as exc:
            raise ValidationError({"message": str(exc)}) from None
        row, code = _run_or_queue(row)
        return Response(IngestedFileDetailSerializer(row, context={"request": request}).data, status=code)


class StatusView(APIView):
    """Last scan per source, file counts by status, and the latest error."""

    permission_classes = [ReadAny]

    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        return Response(services.status_summary())
