"""The room page (`/rooms/<name>/`: a room's history, its carpet plot and its sensors) and the
sensors page (`/sensors/`: the registry with status, latest value and the API's filters).

The room page's range picker is a GET form: the server turns the range into local calendar
bounds (a daylight-saving day is 23 or 25 hours) and hands them to the page's script, which
draws them from GET /api/v1/rooms/{name}/series. Without JavaScript the form, the sensors and
the API's CSV still work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from energy_dashboard.core.clock import building_tz, iso_z
from energy_dashboard.core.limits import EARLIEST, LATEST
from energy_dashboard.core.web import page_view, render_page
from sensors import services as sensors_services

RANGES = (
    ("today", "Today"),
    ("day", "Day"),
    ("week", "Week"),
    ("month", "Month"),
    ("year", "Year"),
    ("custom", "Custom"),
)
RESOLUTIONS = (
    ("auto", "Fit the range"),
    ("raw", "Raw readings"),
    ("5m", "5 minutes"),
    ("15m", "15 minutes"),
    ("1h", "1 hour"),
    ("1d", "1 day"),
)
# A custom range spans at most this many days (the series API's limits then decide the
# resolution; a longer view is a year).
CUSTOM_MAX_DAYS = 400
METRICS = (
    ("power", "Power", "W"),
    ("energy", "Energy", "kWh"),
    ("co2", "CO₂", "ppm"),
    ("temperature", "Temperature", "°C"),
    ("humidity", "Humidity", "%"),
)
SENSORS_PER_PAGE = 50


@dataclass
class Span:
    """A range of local calendar days [first, after) as the picker chose it."""

    kind: str
    anchor: date
    first: date
    after: date
    errors: list[str]


# The days a range may name: inside the product's horizon with a year to spare, so that a
# year's or a month's bounds (and the carpet's month) are instants every query can take.
FIRST_DAY = date(EARLIEST.year + 1, 1, 1)
LAST_DAY = date(LATEST.year - 2, 12, 31)


def _date(text: str | None) -> date | None:
    """A YYYY-MM-DD day inside FIRST_DAY..LAST_DAY, else None."""
    try:
        day = date.fromisoformat(text) if text else None
    except ValueError:
        return None
    return day if day is None or FIRST_DAY <= day <= LAST_DAY else None


def _month_start(day: date, months: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def span_of(params: Any, today: date) -> Span:
    """The local days a range picker's GET parameters name (today's when they name none)."""
    errors: list[str] = []
    kind = params.get("range") or "today"
    if kind not in dict(RANGES):
        errors.append(f"Unknown range {kind[:32]!r}: showing today.")
        kind = "today"
    anchor = _date(params.get("date")) or today
    if params.get("date") and _date(params.get("date")) is None:
        errors.append(
            f"The date is not a day (YYYY-MM-DD) from {FIRST_DAY} to {LAST_DAY}: showing today's range."
        )
    if kind == "today":
        anchor = today
        return Span(kind, anchor, today, today + timedelta(days=1), errors)
    if kind == "day":
        return Span(kind, anchor, anchor, anchor + timedelta(days=1), errors)
    if kind == "week":
        monday = anchor - timedelta(days=anchor.weekday())
        return Span(kind, anchor, monday, monday + timedelta(days=7), errors)
    if kind == "month":
        return Span(kind, anchor, _month_start(anchor), _month_start(anchor, 1), errors)
    if kind == "year":
        return Span(kind, anchor, date(anchor.year, 1, 1), date(anchor.year + 1, 1, 1), errors)
    for name in ("from", "to"):
        if params.get(name) and _date(params.get(name)) is None:
            errors.append(f"{name.title()} is not a day (YYYY-MM-DD) from {FIRST_DAY} to {LAST_DAY}.")
    first = _date(params.get("from")) or anchor
    last = _date(params.get("to")) or first
    if last < first:
        errors.append("The range ends before it starts: the days were swapped.")
        first, last = last, first
    if (last - first).days + 1 > CUSTOM_MAX_DAYS:
        errors.append(f"A custom range is at most {CUSTOM_MAX_DAYS} days: it was shortened.")
        last = first + timedelta(days=CUSTOM_MAX_DAYS - 1)
    return Span(kind, first, first, last + timedelta(days=1), errors)


def _shift(span: Span, step: int) -> date:
    """The anchor of the range before (-1) or after (+1) this one."""
    if span.kind in ("today", "day"):
        return span.anchor + timedelta(days=step)
    if span.kind == "week":
        return span.anchor + timedelta(days=7 * step)
    if span.kind == "month":
        return _month_start(span.anchor, step)
    if span.kind == "year":
        return date(span.anchor.year + step, 1, 1)
    return span.first + timedelta(days=(span.after - span.first).days * step)


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=building_tz()).astimezone(UTC)


def _label(span: Span) -> str:
    if span.kind == "today":
        return f"Today, {span.first:%-d %b %Y}"
    if span.kind == "day":
        return f"{span.first:%a %-d %b %Y}"
    if span.kind == "month":
        return f"{span.first:%B %Y}"
    if span.kind == "year":
        return f"{span.first:%Y}"
    last = span.after - timedelta(days=1)
    prefix = "Week of " if span.kind == "week" else ""
    return f"{prefix}{span.first:%-d %b %Y} to {last:%-d %b %Y}"


def _link(request: HttpRequest, **changes: str) -> str:
    params = {key: request.GET.get(key, "") for key in ("range", "date", "from", "to", "resolution")}
    params.update(changes)
    return "?" + urlencode({k: v for k, v in params.items() if v})


@page_view
def room(request: HttpRequest, name: str) -> HttpResponse:
    """A room's history per metric for a range, its energy carpet for a month, its sensors."""
    detail = sensors_services.room_detail(name)
    if detail is None:
        return render_page(
            request,
            "pages/error.html",
            title="No such room",
            section="overview",
            context={"heading": "No such room", "detail": f"No room is named “{name}”."},
            status=404,
        )
    now = timezone.now()
    today = now.astimezone(building_tz()).date()
    span = span_of(request.GET, today)
    resolution = request.GET.get("resolution") or "auto"
    if resolution not in dict(RESOLUTIONS):
        span.errors.append(f"Unknown resolution {resolution[:16]!r}: the range chooses one.")
        resolution = "auto"
    start, end = _local_midnight(span.first), _local_midnight(span.after)
    # The carpet's month: the one of the date chosen (a week may start in the month before);
    # a custom range's last day's.
    carpet_first = _month_start(span.after - timedelta(days=1) if span.kind == "custom" else span.anchor)
    carpet_start, carpet_end = _local_midnight(carpet_first), _local_midnight(_month_start(carpet_first, 1))
    series_url = reverse("room-series", args=[name])
    csv_query = urlencode(
        {"start": iso_z(start), "end": iso_z(end), "resolution": resolution, "format": "csv"}
    )
    return render_page(
        request,
        "pages/room.html",
        title=detail["display_name"],
        section="overview",
        script="room",
        live=True,
        kiosk_allowed=True,
        page={
            "room": name,
            "seriesUrl": series_url,
            "start": iso_z(start),
            "end": iso_z(end),
            "resolution": resolution,
            "live": start <= now < end,
            "metrics": [{"name": m, "label": label, "unit": unit} for m, label, unit in METRICS],
            "carpet": {
                "start": iso_z(carpet_start),
                "end": iso_z(carpet_end),
                "label": f"{carpet_first:%B %Y}",
            },
        },
        context={
            "room": detail,
            "span": span,
            "span_label": _label(span),
            "ranges": RANGES,
            "resolutions": RESOLUTIONS,
            "resolution": resolution,
            "metrics": METRICS,
            "carpet_label": f"{carpet_first:%B %Y}",
            "csv_url": f"{series_url}?{csv_query}",
            "previous_url": _link(
                request, range="day" if span.kind == "today" else span.kind, date=_shift(span, -1).isoformat()
            ),
            "next_url": _link(
                request, range="day" if span.kind == "today" else span.kind, date=_shift(span, 1).isoformat()
            ),
            "custom_from": request.GET.get("from") or span.first.isoformat(),
            "custom_to": request.GET.get("to") or (span.after - timedelta(days=1)).isoformat(),
        },
    )


STATUSES = (("fault", "Fault"), ("stale", "Stale"), ("active", "Active"), ("inactive", "Inactive"))
KINDS = (
    ("energy_meter", "Energy meter"),
    ("power", "Power"),
    ("co2", "CO₂"),
    ("temperature", "Temperature"),
    ("humidity", "Humidity"),
    ("occupancy", "Occupancy"),
)


@page_view
def sensors(request: HttpRequest) -> HttpResponse:
    """Every sensor with kind, room, status, latest value and last seen; faulty and stale first;
    the API's filters (kind, room, status, search) as a GET form; SENSORS_PER_PAGE a page."""
    try:
        number = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        number = 1
    filters = request.GET.copy()
    filters.pop("page", None)
    for key in [k for k, v in filters.lists() if not any(v)]:
        filters.pop(key)  # an empty select or search box filters nothing
    table = sensors_services.sensors_table(
        filters=filters, offset=(number - 1) * SENSORS_PER_PAGE, limit=SENSORS_PER_PAGE
    )
    pages = max(1, -(-table["count"] // SENSORS_PER_PAGE))
    if number > pages:
        number = pages
        table = sensors_services.sensors_table(
            filters=filters, offset=(number - 1) * SENSORS_PER_PAGE, limit=SENSORS_PER_PAGE
        )

    def page_url(n: int) -> str:
        query = filters.copy()
        query["page"] = str(n)
        return "?" + query.urlencode()

    first = (number - 1) * SENSORS_PER_PAGE + 1 if table["count"] else 0
    return render_page(
        request,
        "pages/sensors.html",
        title="Sensors",
        section="sensors",
        script="sensors",
        context={
            "rows": table["rows"],
            "count": table["count"],
            "errors": table["errors"],
            "rooms": sensors_services.room_names(),
            "kinds": KINDS,
            "statuses": STATUSES,
            "chosen": {
                "kind": request.GET.getlist("kind"),
                "status": request.GET.getlist("status"),
                "room": request.GET.get("room", ""),
                "search": request.GET.get("search", ""),
            },
            "page_number": number,
            "pages": pages,
            "shown_from": first,
            "shown_to": first + len(table["rows"]) - 1 if table["rows"] else 0,
            "previous_url": page_url(number - 1) if number > 1 else None,
            "next_url": page_url(number + 1) if number < pages else None,
        },
    )
