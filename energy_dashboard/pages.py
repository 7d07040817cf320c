"""The overview page at `/`, composed from the modules' public services (as the API overview is),
and sign-in / sign-out."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse

from demand_response import services as dr_services
from energy_dashboard.core.web import page_view, render_page, theme_of
from ingestion import services as ingestion_services
from sensors import services as sensors_services


def wants_html(request: HttpRequest) -> bool:
    """True when the client prefers an HTML page to JSON (a browser, not an API client)."""
    accepted = request.accepted_types
    for media in accepted:
        if media.match("application/json"):
            return False
        if media.match("text/html") and media.main_type != "*":
            return True
    return False


@page_view
def overview(request: HttpRequest) -> HttpResponse:
    """The building at a glance: power now and over the last hour, energy against the past,
    rooms, demand response and the meter files."""
    summary = sensors_services.analytics_summary()
    rooms = sensors_services.room_names()
    cards = [
        {
            "name": name,
            "power_w": summary["current_power_by_room_w"].get(name),
            **summary["comfort"]["rooms"].get(name, {}),
        }
        for name in rooms
    ]
    return render_page(
        request,
        "pages/overview.html",
        title="Overview",
        section="overview",
        script="overview",
        live=True,
        kiosk_allowed=True,
        page={"summary": summary},
        context={
            "summary": summary,
            "rooms": cards,
            "dr": dr_services.overview(),
            "ingestion": ingestion_services.status_summary(),
        },
    )


class SignInView(auth_views.LoginView):
    """Django's sign-in, in the product's layout."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update({"title": "Sign in", "theme": theme_of(self.request), "page": {}})
        return context
