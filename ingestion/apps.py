"""The Ingestion module."""

from django.apps import AppConfig


class IngestionConfig(AppConfig):
    """The ingestion module; its tables live on the `ingestion` database alias."""

    name = "ingestion"
    verbose_name = "Ingestion"
