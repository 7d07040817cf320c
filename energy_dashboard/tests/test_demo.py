"""`run --demo`'s demo building gives every page something real to show, made through the
modules' own services, and a second load changes nothing."""

from __future__ import annotations

import io
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from django.db.models import Max, Min
from django.utils import timezone

from demand_response import services as dr_services
from demand_response.models import DispatchCommand, DREvent, EventDevice, FlexibleDevice, Invitation
from energy_dashboard.core.clock import building_tz
from energy_dashboard.management.commands.run import Command
from ingestion.models import IngestedFile
from sensors import services as sensors_services
from sensors.models import CounterState, Reading, Rollup, Room, RoomMetrics, Sensor
from sensors.services.demo import DEMO_KINDS, DEMO_METER_PARENTS, DEMO_ROOMS, MAIN_METER, history_start

pytestmark = pytest.mark.django_db(databases="__all__")

MODELS: list[Any] = [
    Room,
    Sensor,
    Reading,
    Rollup,
    RoomMetrics,
    CounterState,
    FlexibleDevice,
    Invitation,
    DREvent,
    EventDevice,
    DispatchCommand,
    IngestedFile,
]


def _snapshot() -> dict[str, Any]:
    """Every row count the demo touches, and the span of its readings."""
    counts: dict[str, Any] = {model.__name__: model.objects.count() for model in MODELS}
    counts["readings_span"] = Reading.objects.aggregate(first=Min("timestamp"), last=Max("timestamp"))
    counts["statuses"] = sorted(
        [*Invitation.objects.values_list("pk", "status"), *DREvent.objects.values_list("pk", "status")]
    )
    return counts


def _month_start(local: datetime) -> datetime:
    return datetime.combine(local.date().replace(day=1), time.min, tzinfo=building_tz())


def _year_before(local: datetime) -> datetime:
    """The same local time a year before (28 February for a 29th)."""
    try:
        return local.replace(year=local.year - 1)
    except ValueError:
        return local.replace(year=local.year - 1, day=28)


def test_the_demo_building_has_everything_the_pages_show_and_loads_once() -> None:
    now = timezone.now()
    out = io.StringIO()
    Command(stdout=out)._load_demo(now=now)
    assert "Demo building: 5 rooms" in out.getvalue()

    # Rooms, each with power, energy, CO2, temperature and humidity sensors.
    rooms = {room.name: room for room in Room.objects.all()}
    assert set(rooms) >= {name for name, *_ in DEMO_ROOMS}
    for name, *_ in DEMO_ROOMS:
        kinds = set(Sensor.objects.filter(room=rooms[name]).values_list("kind", flat=True))
        assert kinds >= {kind.value for kind in DEMO_KINDS}

    # A main meter over sub-meters: floor 1's offices behind the floor's sub-meter.
    main = Sensor.objects.get(sensor_id=MAIN_METER.sensor_id)
    assert main.room is None and main.part_of is None
    parents = dict(
        Sensor.objects.filter(part_of__isnull=False).values_list("sensor_id", "part_of__sensor_id")
    )
    assert parents == DEMO_METER_PARENTS
    # The main meter measures more than its sub-meters (its own unmetered load)...
    day_ago = now - timedelta(days=1)
    main_kwh = sum(
        Reading.objects.filter(sensor=main, timestamp__gte=day_ago).values_list("value", flat=True)
    )
    rooms_kwh = sum(
        Reading.objects.filter(
            sensor__kind=Sensor.Kind.ENERGY_METER, sensor__room__isnull=False, timestamp__gte=day_ago
        ).values_list("value", flat=True)
    )
    assert main_kwh > rooms_kwh > 0
    # ... and the building's total counts no sub-meter twice: it is its top-level meters'.
    hours = (
        day_ago.replace(minute=0, second=0, microsecond=0),
        now.replace(minute=0, second=0, microsecond=0),
    )
    building = sensors_services.energy_report(
        rooms=[], sensor_ids=[], start=hours[0], end=hours[1], interval="1h"
    )["series"][0]["total_kwh"]
    top_level = Reading.objects.filter(
        sensor__kind=Sensor.Kind.ENERGY_METER,
        sensor__part_of__isnull=True,
        timestamp__gte=hours[0],
        timestamp__lt=hours[1],
    )
    assert building == pytest.approx(sum(top_level.values_list("value", flat=True)))

    # Flexible devices on the demo's loads, so the auto-response can accept an invitation.
    devices = list(FlexibleDevice.objects.filter(enabled=True))
    assert len(devices) >= 3
    assert {d.sensor_id for d in devices} <= set(Sensor.objects.values_list("sensor_id", flat=True))

    # A completed event, dispatched by the scheduler and measured against its baseline.
    event = DREvent.objects.get(invitation__source="demo", status=DREvent.Status.COMPLETED)
    assert event.end < now
    assert event.dispatched_kw == pytest.approx(event.target_kw)
    assert event.dispatches.filter(status=EventDevice.Status.RESTORED).exists()
    report = event.performance
    assert report is not None and report["ok"], report
    assert report["method"] == event.baseline_method
    assert len(report["days_used"]) == 10  # CAISO 10 of 10: ten weekdays of quarter-hour load
    assert len(report["intervals"]) == 8  # two hours of quarter hours
    assert all(i["baseline_kw"] > i["actual_kw"] for i in report["intervals"])
    # The devices shed what they were told to: the delivery is the dispatch, give or take noise.
    assert event.measured_kw == pytest.approx(event.target_kw, rel=0.25)

    # The next event: accepted, scheduled, its devices committed.
    upcoming = DREvent.objects.get(invitation__source="demo", status=DREvent.Status.SCHEDULED)
    assert upcoming.start > now
    assert upcoming.dispatches.exists()

    # A pending invitation, before its deadline, that the policy's rules would accept.
    pending = Invitation.objects.get(source="demo", status=Invitation.Status.PENDING)
    assert pending.response_deadline > now
    decision = dr_services.policy_evaluate(policy=dr_services.policy_get(), invitation=pending, now=now)
    assert decision.accept, decision.reason

    # Meter files through the pipeline: imported ones, and one rejected whole with its lines.
    files = IngestedFile.objects.filter(name__startswith="DEMO_")
    imported = files.filter(status=IngestedFile.Status.IMPORTED)
    assert imported.count() >= 3
    assert all(f.inserted == 96 for f in imported)
    rejected = files.get(status=IngestedFile.Status.REJECTED)
    assert [(e["line"], e["field"]) for e in rejected.errors] == [(5, "time"), (9, "energy")]
    assert "line 5" in rejected.message

    # 13 months of history, rolled up: hourly back to the start, 5-minute in the last day.
    start = history_start(now)
    assert start <= now - timedelta(days=365 + 28)
    span = Reading.objects.filter(sensor=main).aggregate(first=Min("timestamp"))
    assert span["first"] == start
    assert (
        Rollup.objects.filter(sensor=main, resolution="1h", bucket__lt=start + timedelta(days=1)).count()
        == 24
    )
    last_hour = Reading.objects.filter(sensor=main, timestamp__gte=now - timedelta(hours=1))
    assert last_hour.count() >= 11  # 5-minute steps
    assert RoomMetrics.objects.filter(bucket__lt=start + timedelta(days=1)).exists()

    # This month so far against the same days of the same month last year: both computable.
    local = now.astimezone(building_tz())
    this_month = _month_start(local)
    totals = []
    for since, until in ((this_month, local), (_year_before(this_month), _year_before(local))):
        # At least the month's first reading (at its first instant, on the history's grid).
        end = max(until, since + timedelta(minutes=5))
        series = sensors_services.energy_report(
            rooms=[], sensor_ids=[MAIN_METER.sensor_id], start=since, end=end, interval="1d"
        )["series"]
        totals.append(series[0]["total_kwh"])
    assert all(total > 0 for total in totals), totals

    # A second load adds nothing: every row and the readings' span stay as they were.
    before = _snapshot()
    again = io.StringIO()
    Command(stdout=again)._load_demo(now=now)
    assert _snapshot() == before
    assert "0 readings added" in again.getvalue()
