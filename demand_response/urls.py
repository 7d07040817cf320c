"""API routes of the demand_response module, under /api/v1/demand-response/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
