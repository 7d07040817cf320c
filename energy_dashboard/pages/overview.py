"""The overview page at `/`, composed from the modules' public services (as the API overview is)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from demand_response import services as dr_services
from energy_dashboard.core.web import page_view, render_page
from ingestion import services as ingestion_services
from sensors import services as sensors_services


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
