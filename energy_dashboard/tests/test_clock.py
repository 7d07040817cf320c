"""energy_dashboard.core.clock: instants as UTC ISO 8601 with Z, and the building's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from energy_dashboard.core.clock import building_tz, iso_z


def test_an_instant_is_written_in_utc_ending_in_z() -> None:
    assert iso_z(datetime(2026, 11, 2, 10, 0, tzinfo=UTC)) == "2026-11-02T10:00:00Z"
    # Any offset is written as its UTC instant.
    lisbon_summer = datetime(2026, 7, 1, 12, 30, tzinfo=ZoneInfo("Europe/Lisbon"))
    assert iso_z(lisbon_summer) == "2026-07-01T11:30:00Z"
    assert iso_z(datetime(2026, 1, 1, 5, 0, tzinfo=timezone(timedelta(hours=-5)))) == "2026-01-01T10:00:00Z"


def test_microseconds_are_kept_unless_seconds_are_asked() -> None:
    moment = datetime(2026, 11, 2, 10, 0, 5, 123456, tzinfo=UTC)
    assert iso_z(moment) == "2026-11-02T10:00:05.123456Z"
    assert iso_z(moment, timespec="seconds") == "2026-11-02T10:00:05Z"
    # The seconds form is the one messages have always used.
    assert iso_z(moment, timespec="seconds") == f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def test_what_is_written_is_read_back_as_the_same_instant() -> None:
    moment = datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC)
    assert datetime.fromisoformat(iso_z(moment)) == moment


@pytest.mark.parametrize("zone", ["Europe/Lisbon", "America/New_York", "UTC"])
def test_the_building_zone_is_time_zone(settings: Any, zone: str) -> None:
    settings.TIME_ZONE = zone
    assert building_tz() == ZoneInfo(zone)


def test_a_local_day_of_the_building_can_have_23_hours(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Lisbon"
    tz = building_tz()
    start = datetime.combine(date(2026, 3, 29), time.min, tzinfo=tz)  # clocks go forward at 01:00
    end = datetime.combine(date(2026, 3, 30), time.min, tzinfo=tz)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)
