"""API routes of the sensors module, mounted under /api/v1/."""

from django.urls import path

from energy_dashboard.core.api import OptionalSlashRouter
from sensors import views

router = OptionalSlashRouter()
router.register("sensors", views.SensorViewSet, basename="sensor")
router.register("rooms", views.RoomViewSet, basename="room")

urlpatterns = [
    path("readings", views.ReadingsView.as_view(), name="readings"),
    path("analytics/summary", views.AnalyticsSummaryView.as_view(), name="analytics-summary"),
    path("analytics/comparison", views.AnalyticsComparisonView.as_view(), name="analytics-comparison"),
    path("analytics/breakdown", views.AnalyticsBreakdownView.as_view(), name="analytics-breakdown"),
    path("analytics/energy", views.AnalyticsEnergyView.as_view(), name="analytics-energy"),
    path("data/query", views.DataQueryView.as_view(), name="data-query"),
    path("rooms/<slug:name>/series", views.RoomSeriesView.as_view(), name="room-series"),
    *router.urls,
]
