"""The overview page at `/`, composed from the modules' public services (as the API overview is).

Everything in it is what the services answer, in the building's time zone: power now and over
the last hour (live), energy against the past, the meter breakdown (a nested meter counted
once), a card per room (live), demand response and the meter files. The page's script keeps
the live parts current from the one WebSocket of the page (assets/js/pages/overview.js).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from demand_response import services as dr_services
from energy_dashboard.core.web import page_view, render_page
from ingestion import services as ingestion_services
from sensors import services as sensors_services

# Pending invitations listed (the soonest deadlines first); the DR page lists them all.
INVITATIONS_SHOWN = 5
# Rooms in the breakdown's per-room list (the largest shares); the others are summed.
ROOMS_SHOWN = 10
# Stale or faulty sensors named on a room's card; the others are counted.
STALE_SHOWN = 3
COMFORT_LABELS = {"co2": "CO₂", "temperature": "Temperature", "humidity": "Humidity"}


def _url(name: str, *args: Any) -> str | None:
    """A page's URL, or None while that page is not installed."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def power_text(watts: float | None) -> str:
    """Power as the page's script writes it (lib/format.js `power`): "850 W", "12.4 kW"."""
    if watts is None:
        return "\u2013 W"
    size = abs(watts)
    if size >= 1e6:
        return f"{watts / 1e6:,.2f} MW"
    if size >= 1e3:
        return f"{watts / 1e3:,.1f} kW"
    return f"{watts:,.0f} W"


def _band(metric: str, value: float | None, bands: dict[str, list[float]]) -> dict[str, str]:
    """A comfort figure's state in words and a symbol as well as a colour class: "ok", "low" or
    "high" against the summary's comfort band, "none" without a value."""
    if value is None or metric not in bands:
        return {"state": "none", "text": "no data", "symbol": "\u2013"}
    low, high = bands[metric]
    if value < low:
        return {"state": "low", "text": f"low (below {low:g})", "symbol": "▼"}
    if value > high:
        return {"state": "high", "text": f"high (above {high:g})", "symbol": "▲"}
    return {"state": "ok", "text": "in band", "symbol": "✓"}


def _room_cards(
    summary: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, list[list[str]]]]:
    """Each room's card (power, comfort figures with their band, stale sensors) and each
    room's stale or faulty sensors (the script keeps them current)."""
    bands = summary["comfort"]["bands"]
    stale: dict[str, list[dict[str, str]]] = defaultdict(list)
    for sensor in sensors_services.sensors_list():
        if sensor["status"] in ("stale", "fault"):
            stale[sensor["room__name"] or ""].append(
                {"sensor_id": sensor["sensor_id"], "status": sensor["status"]}
            )
    cards = []
    for name in sensors_services.room_names():
        comfort = summary["comfort"]["rooms"].get(name, {})
        figures = {
            "co2": comfort.get("co2_ppm"),
            "temperature": comfort.get("temperature_c"),
            "humidity": comfort.get("humidity_pct"),
        }
        cards.append(
            {
                "name": name,
                "url": _url("page-room", name),
                "power": power_text(summary["current_power_by_room_w"].get(name)),
                "comfort": [
                    {
                        "metric": metric,
                        "label": COMFORT_LABELS[metric],
                        "value": value,
                        **_band(metric, value, bands),
                    }
                    for metric, value in figures.items()
                ],
                "as_of": comfort.get("as_of"),
                "stale": stale.get(name, [])[:STALE_SHOWN],
                "stale_more": max(0, len(stale.get(name, [])) - STALE_SHOWN),
                "stale_count": len(stale.get(name, [])),
            }
        )
    return cards, {room: [[s["sensor_id"], s["status"]] for s in rows] for room, rows in stale.items()}


def _dr(now: datetime) -> dict[str, Any]:
    """The active event, else the next one; the last completed one with its delivery; pending
    invitations whose deadline has not passed, soonest first."""
    events = dr_services.events_list(limit=200)
    active = next((e for e in events if e.status == "active"), None)
    upcoming = sorted((e for e in events if e.status == "scheduled" and e.end > now), key=lambda e: e.start)
    shown = active or (upcoming[0] if upcoming else None)
    completed = next((e for e in events if e.status == "completed"), None)
    pending = sorted(
        (i for i in dr_services.invitations_list(status="pending", limit=200) if i.response_deadline > now),
        key=lambda i: i.response_deadline,
    )

    def event(e: Any) -> dict[str, Any]:
        performance = e.performance or {}
        return {
            "id": e.pk,
            "name": e.name or e.programme or f"Event {e.pk}",
            "status": e.status,
            "start": e.start,
            "end": e.end,
            "target_kw": e.target_kw,
            "dispatched_kw": e.dispatched_kw,
            "measured_kw": e.measured_kw,
            "measured_at": e.measured_at,
            "share": performance.get("share_of_commitment"),
            "delivered_kwh": performance.get("energy_delivered_kwh"),
            "reason": None if performance.get("ok", True) else performance.get("reason"),
            "url": _url("page-dr-event", e.pk),
        }

    return {
        "event": event(shown) if shown else None,
        "completed": event(completed) if completed else None,
        "invitations": [
            {
                "id": i.pk,
                "programme": i.programme,
                "reduction_kw": i.reduction_kw,
                "start": i.start,
                "end": i.end,
                "deadline": i.response_deadline,
            }
            for i in pending[:INVITATIONS_SHOWN]
        ],
        "invitations_more": max(0, len(pending) - INVITATIONS_SHOWN),
        "url": _url("page-demand-response"),
    }


def _compared(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each comparison with its change said in words and a symbol: "12% more", "3% less"."""
    out = []
    for c in comparisons:
        pct, change = c["change_pct"], c["change_kwh"]
        if pct is None or change is None:
            said = {"direction": "none", "symbol": "", "words": ""}
        elif abs(pct) < 0.5:
            said = {"direction": "same", "symbol": "=", "words": "about the same as"}
        elif pct >= 1000:  # "79007% more" reads as noise: the previous span barely had data
            said = {"direction": "up", "symbol": "▲", "words": f"{pct / 100 + 1:.0f} times as much as"}
        elif change > 0:
            said = {"direction": "up", "symbol": "▲", "words": f"{abs(pct):.0f}% more than"}
        else:
            said = {"direction": "down", "symbol": "▼", "words": f"{abs(pct):.0f}% less than"}
        # The local clock time both spans are cut at ("HH:MM" of the ISO local time).
        # "yesterday", "last week", but "December 2025" (a month's name keeps its capital).
        phrase = c["previous_label"] if c["period"] == "month" else c["previous_label"].lower()
        out.append({**c, **said, "previous_phrase": phrase, "cut_at": c["current"]["end"][11:16]})
    return out


@page_view
def overview(request: HttpRequest) -> HttpResponse:
    """The building at a glance: power now and over the last hour, energy against the past,
    the meter breakdown, rooms, demand response and the meter files."""
    now = timezone.now()
    # The summary every dashboard polls, from its cache (at most ANALYTICS_SUMMARY_MAX_AGE_S
    # old: its "as of" says when): most of a page's first render otherwise.
    summary = orjson.loads(sensors_services.analytics_summary_json())
    comparison = orjson.loads(sensors_services.energy_comparison_json())
    breakdown = sensors_services.energy_breakdown("today", now)
    live = sensors_services.overview_live(now)
    cards, stale = _room_cards(summary)
    ingestion = ingestion_services.status_summary()
    return render_page(
        request,
        "pages/overview.html",
        title="Overview",
        section="overview",
        script="overview",
        live=True,
        kiosk_allowed=True,
        page={
            "asOf": summary["as_of"],
            "bands": summary["comfort"]["bands"],
            "recent": live["recent"],
            "latest": live["latest"],
            "stepS": live["step_s"],
            "parents": sensors_services.meter_parents(),
            "stale": stale,
            "staleShown": STALE_SHOWN,
        },
        context={
            "summary": summary,
            "power_now": power_text(summary["current_power_w"]),
            "comparisons": _compared(comparison["comparisons"]),
            "breakdown": breakdown,
            "breakdown_max": max([r["energy_kwh"] for r in breakdown["by_room"]] + [0.0]) or 1.0,
            "rooms_shown": breakdown["by_room"][:ROOMS_SHOWN],
            "rooms_more": {
                "rooms": len(breakdown["by_room"][ROOMS_SHOWN:]),
                "energy_kwh": sum(r["energy_kwh"] for r in breakdown["by_room"][ROOMS_SHOWN:]),
            },
            "rooms": cards,
            "dr": _dr(now),
            "ingestion": ingestion,
            "ingestion_url": _url("page-ingestion"),
            "last_file_url": _url("page-ingestion-file", ingestion["last_imported"]["id"])
            if ingestion.get("last_imported")
            else None,
            "error_file_url": _url("page-ingestion-file", ingestion["last_error"]["id"])
            if ingestion.get("last_error")
            else None,
            "sensors_url": _url("page-sensors"),
        },
    )
