"""API routes of MQTT ingestion, under /api/v1/ingestion/mqtt/."""

from __future__ import annotations

from django.urls import path

from energy_dashboard.core.api import OptionalSlashRouter
from ingestion.mqtt import views

router = OptionalSlashRouter()
router.register("brokers", views.BrokerViewSet, basename="mqtt-broker")
router.register("mappings", views.MappingViewSet, basename="mqtt-mapping")

urlpatterns = [
    path("presets", views.PresetsView.as_view(), name="mqtt-presets"),
    *router.urls,
]
