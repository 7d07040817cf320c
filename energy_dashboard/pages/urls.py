"""The pages' routes (the overview itself answers at `/`, see `energy_dashboard.views`)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from energy_dashboard.pages import auth, rooms
from energy_dashboard.pages import demand_response as dr_pages
from energy_dashboard.pages import ingestion as ingestion_pages

urlpatterns = [
    path("accounts/login/", auth.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("rooms/<slug:name>/", rooms.room, name="page-room"),
    path("sensors/", rooms.sensors, name="page-sensors"),
    # Demand response: the page, an operator's answers (POST), each event's report.
    path("demand-response/", dr_pages.demand_response, name="page-demand-response"),
    path(
        "demand-response/invitations/<int:invitation_id>/accept",
        dr_pages.invitation_accept,
        name="page-dr-accept",
    ),
    path(
        "demand-response/invitations/<int:invitation_id>/decline",
        dr_pages.invitation_decline,
        name="page-dr-decline",
    ),
    path("demand-response/events/<int:event_id>/", dr_pages.event_report, name="page-dr-event"),
    # Ingestion: the page, and an operator's commands (POST).
    path("ingestion/", ingestion_pages.ingestion, name="page-ingestion"),
    path("ingestion/upload", ingestion_pages.upload, name="page-ingestion-upload"),
    path("ingestion/files/<int:file_id>/", ingestion_pages.file_detail, name="page-ingestion-file"),
    path(
        "ingestion/files/<int:file_id>/reprocess",
        ingestion_pages.file_reprocess,
        name="page-ingestion-reprocess",
    ),
    path("ingestion/sources/<slug:name>/scan", ingestion_pages.source_scan, name="page-ingestion-scan"),
    path(
        "ingestion/sources/<slug:name>/accept-host-key",
        ingestion_pages.source_accept_host_key,
        name="page-ingestion-accept-key",
    ),
]
