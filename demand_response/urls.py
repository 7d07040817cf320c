"""API routes of the demand_response module, under /api/v1/demand-response/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from demand_response import views
from energy_dashboard.core.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("devices", views.FlexibleDeviceViewSet, basename="dr-device")
router.register("invitations", views.InvitationViewSet, basename="dr-invitation")
router.register("events", views.DREventViewSet, basename="dr-event")

urlpatterns: list[URLPattern | URLResolver] = [
    path("policy", views.PolicyView.as_view(), name="dr-policy"),
    path("flexibility", views.FlexibilityView.as_view(), name="dr-flexibility"),
    *router.urls,
]
