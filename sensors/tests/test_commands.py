"""simulate_sensors, backfill_rollups, import_readings_csv, export_readings."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import services
from sensors.models import Reading, Rollup, RoomMetrics

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def demo() -> None:
    services.demo_load()


@pytest.mark.usefixtures("demo")
def test_simulator_backfills_a_day_with_daily_curves() -> None:
    out = io.StringIO()
    call_command(
        "simulate_sensors", "--iterations", "1", "--interval", "60", "--backfill-hours", "24", stdout=out
    )
    assert "Backfilled" in out.getvalue()
    power = dict(
        Reading.objects.filter(sensor__sensor_id="office-101-power").values_list("timestamp", "value")
    )
    assert len(power) >= 288
    # The office uses more when people are in (weekday 10:00 local) than at night (03:00).
    assert RoomMetrics.objects.filter(room__name="office-101").exists()
    co2 = list(Reading.objects.filter(metric="co2").values_list("value", flat=True))
    assert all(380 < v < 5000 for v in co2)
    temps = list(Reading.objects.filter(metric="temperature").values_list("value", flat=True))
    assert all(10 < v < 35 for v in temps)


@pytest.mark.usefixtures("demo")
def test_simulated_office_uses_more_power_in_working_hours() -> None:
    import random

    from sensors.models import Sensor
    from sensors.simulation import value_for

    sensor = Sensor.objects.select_related("room").get(sensor_id="office-101-power")
    rng = random.Random(1)
    working = value_for(sensor, "power", datetime(2026, 11, 4, 10, 0, tzinfo=UTC), 60, rng)  # Wednesday
    night = value_for(sensor, "power", datetime(2026, 11, 4, 3, 0, tzinfo=UTC), 60, rng)
    weekend = value_for(sensor, "power", datetime(2026, 11, 7, 10, 0, tzinfo=UTC), 60, rng)
    assert working > 2 * night and working > 2 * weekend


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("demo")
def test_import_then_export_round_trips(tmp_path: Path) -> None:
    source = tmp_path / "history.csv"
    source.write_text(
        "sensor_id,metric,timestamp,value,unit\n"
        "lobby-power,power,2026-11-02T10:00:00Z,1.5,kW\n"
        "lobby-power,power,2026-11-02T10:05:00+00:00,1600,\n"
        "lobby-co2,co2,1793613600,455,\n"
        "lobby-co2,co2,2026-11-02T10:00:00Z,not-a-number,\n"
        "ghost,power,2026-11-02T10:00:00Z,1,\n"
    )
    out = io.StringIO()
    with pytest.raises(CommandError, match="rejected"):
        call_command("import_readings_csv", str(source), "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["accepted"] == 3
    assert summary["rejected"] == [
        {"line": 5, "reason": "value must be a finite number"},
        {"line": 6, "reason": "unknown sensor 'ghost'"},
    ]
    assert Rollup.objects.filter(
        sensor__sensor_id="lobby-power", resolution="1h"
    ).get().mean == pytest.approx(1550.0)

    target = tmp_path / "export.csv"
    call_command(
        "export_readings",
        "--since",
        "2026-11-02T00:00:00Z",
        "--until",
        "2026-11-03T00:00:00Z",
        "--room",
        "lobby",
        "--output",
        str(target),
        stdout=io.StringIO(),
    )
    rows = list(csv.DictReader(target.open()))
    assert [(r["sensor_id"], r["timestamp"], float(r["value"])) for r in rows] == [
        ("lobby-co2", "2026-11-02T10:00:00Z", 455.0),
        ("lobby-power", "2026-11-02T10:00:00Z", 1500.0),
        ("lobby-power", "2026-11-02T10:05:00Z", 1600.0),
    ]
    # Importing the export adds nothing.
    again = io.StringIO()
    call_command("import_readings_csv", str(target), "--json", stdout=again)
    assert json.loads(again.getvalue())["duplicates"] == 3


def test_import_refuses_a_file_without_the_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(CommandError, match="missing column"):
        call_command("import_readings_csv", str(bad))


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("demo")
def test_backfill_rollups_recomputes_a_range() -> None:
    t0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    services.readings_ingest(
        readings=[
            {
                "sensor_id": "lobby-energy-meter",
                "metric": "energy",
                "timestamp": (t0 + timedelta(minutes=15 * i)).isoformat(),
                "value": 1,
            }
            for i in range(8)
        ]
    )
    services.aggregates_compute()
    Rollup.objects.all().delete()  # as if lost
    out = io.StringIO()
    call_command(
        "backfill_rollups", "--since", "2026-11-02T00:00:00Z", "--until", "2026-11-03T00:00:00Z", stdout=out
    )
    assert "recomputed 1 day(s)" in out.getvalue()
    assert Rollup.objects.get(resolution="1d").sum == 8.0
    with pytest.raises(CommandError, match="offset"):
        call_command("backfill_rollups", "--since", "2026-11-02", "--until", "2026-11-03T00:00:00Z")


def test_simulator_refuses_a_zero_interval() -> None:
    with pytest.raises(CommandError, match="positive"):
        call_command("simulate_sensors", "--interval", "0", "--iterations", "1")
