"""API routes of the ingestion module, under /api/v1/ingestion/."""

from __future__ import annotations

from django.urls import include, path

from energy_dashboard.core.api import OptionalSlashRouter
from ingestion import views

router = OptionalSlashRouter()
router.register("sources", views.RemoteSourceViewSet, basename="ingestion-source")
router.register("files", views.IngestedFileViewSet, basename="ingestion-file")

urlpatterns = [
    path("upload", views.UploadView.as_view(), name="ingestion-upload"),
    path("status", views.StatusView.as_view(), name="ingestion-status"),
    path("mqtt/", include("ingestion.mqtt.urls")),
    *router.urls,
]
