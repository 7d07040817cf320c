"""URL map: the service description, /health, the API under /api/v1/, the admin."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from energy_dashboard import views
from energy_dashboard.core import exceptions

api_v1: list[URLPattern | URLResolver] = [
    path("", views.ApiRootView.as_view(), name="api-root"),
    path("overview", views.OverviewView.as_view(), name="overview"),
    path("auth/token/", views.TokenView.as_view(), name="auth-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("", include("sensors.urls")),
    path("demand-response/", include("demand_response.urls")),
    path("ingestion/", include("ingestion.urls")),
    # Any other path under the API: its JSON 404 under DEBUG too (`make run`), where Django
    # answers with its HTML debug page instead of handler404. Last: it matches everything.
    re_path(r"^.*$", exceptions.api_not_found, name="api-not-found"),
]

urlpatterns = [
    path("", views.service_root, name="service-root"),
    path("health", views.health, name="health"),
    path("", include("energy_dashboard.pages.urls")),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
]

handler400 = "energy_dashboard.core.exceptions.bad_request"
handler403 = "energy_dashboard.core.exceptions.permission_denied"
handler404 = "energy_dashboard.core.exceptions.not_found"
handler500 = "energy_dashboard.core.exceptions.server_error"
