"""The Ingestion module."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class IngestionConfig(AppConfig):
    """The ingestion module; its tables live on the `ingestion` database alias."""

    name = "ingestion"
    verbose_name = "Ingestion"

    def ready(self) -> None:
        from celery.signals import worker_ready
        from django.core.exceptions import ImproperlyConfigured

        from ingestion.validators import allowed_networks

        try:
            allowed_networks()
        except ValueError as exc:
            raise ImproperlyConfigured(f"INGESTION_ALLOWED_NETWORKS: {exc}") from None

        worker_ready.connect(_initial_scan, dispatch_uid="ingestion.initial_scan", weak=False)


def _initial_scan(sender: Any = None, **kwargs: Any) -> None:
    """The seed's first scan when the service starts, unless FTP_SKIP_INITIAL_SCAN."""
    from django.conf import settings

    from ingestion.tasks import ftp_scan_all

    if not settings.FTP_SKIP_INITIAL_SCAN:
        ftp_scan_all.delay(force=True)
