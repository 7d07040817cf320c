"""API routes of the ingestion module, under /api/v1/ingestion/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
