"""The overview's reads: totals that count a nested meter once (summary, building energy, room
metrics), energy against the past up to the same local time (daylight-saving days too), and
the meter breakdown with each level's unmetered remainder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from rest_framework.test import APIClient

from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import services
from sensors.models import Room, RoomMetrics

pytestmark = [pytest.mark.django_db(databases="__all__"), pytest.mark.clock(AFTER_FIXED_DATES)]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def hourly(
    sensor: str, metric: str, value: float, start: datetime, end: datetime
) -> Iterator[dict[str, Any]]:
    moment = start
    while moment < end:
        yield {"sensor_id": sensor, "metric": metric, "timestamp": iso(moment), "value": value}
        moment += timedelta(hours=1)


def store(readings: list[dict[str, Any]]) -> None:
    for start in range(0, len(readings), 5_000):
        result = services.readings_ingest(readings=readings[start : start + 5_000])
        assert not result["rejected"], result["rejected"][:3]
    while services.aggregates_compute()["marks"]:
        pass


@pytest.fixture
def building() -> None:
    """A main meter in no room; two sub-meters, in the lab and the hall; a circuit under the
    lab's meter, also in the lab; a meter of its own in the hall; and the same for power, with
    the main power meter in the plant room."""
    for room in ("lab", "hall", "plant"):
        services.room_create(name=room)
    services.sensor_register(sensor_id="main", kind="energy_meter", name="Main meter")
    services.sensor_register(sensor_id="lab-meter", kind="energy_meter", room_name="lab", part_of="main")
    services.sensor_register(
        sensor_id="lab-circuit", kind="energy_meter", room_name="lab", part_of="lab-meter"
    )
    services.sensor_register(sensor_id="hall-meter", kind="energy_meter", room_name="hall", part_of="main")
    services.sensor_register(sensor_id="hall-own", kind="energy_meter", room_name="hall")
    services.sensor_register(sensor_id="main-power", kind="power", room_name="plant")
    services.sensor_register(sensor_id="lab-power", kind="power", room_name="lab", part_of="main-power")


# Hourly kWh of each meter: main 10 = lab 4 (of which the circuit 1) + hall 3 + 3 unmetered.
KWH = {"main": 10.0, "lab-meter": 4.0, "lab-circuit": 1.0, "hall-meter": 3.0, "hall-own": 2.0}
T0 = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)  # Lisbon is on UTC in November
NOW = datetime(2026, 11, 3, 6, 0, tzinfo=UTC)


def six_hours() -> None:
    readings = [r for sensor, kwh in KWH.items() for r in hourly(sensor, "energy", kwh, T0, NOW)]
    power = [
        {
            "sensor_id": "main-power",
            "metric": "power",
            "timestamp": iso(NOW - timedelta(minutes=1)),
            "value": 5000,
        },
        {
            "sensor_id": "lab-power",
            "metric": "power",
            "timestamp": iso(NOW - timedelta(minutes=1)),
            "value": 1200,
        },
    ]
    store(readings + power)


@pytest.mark.usefixtures("building")
def test_the_summary_counts_each_nested_meter_once() -> None:
    six_hours()
    summary = services.analytics_summary(NOW)
    assert summary["energy_kwh"]["today"] == pytest.approx(6 * (10 + 2))  # main + hall-own
    by_room = summary["energy_by_room_kwh"]["today"]
    assert by_room == pytest.approx(
        {
            "lab": 6 * 4,  # the lab meter's remainder (3) + its circuit (1)
            "hall": 6 * (3 + 2),
            "unassigned": 6 * 3,  # the main meter's unmetered remainder
        }
    )
    assert sum(by_room.values()) == pytest.approx(summary["energy_kwh"]["today"])
    assert summary["energy_by_kind_kwh"]["today"] == pytest.approx({"energy_meter": 6 * 12})
    assert summary["current_power_w"] == pytest.approx(5000)
    assert summary["current_power_by_room_w"] == pytest.approx({"plant": 3800, "lab": 1200})


@pytest.mark.usefixtures("building")
def test_the_building_and_rooms_energy_series_count_each_nested_meter_once() -> None:
    six_hours()
    report = services.energy_report(rooms=[], sensor_ids=[], start=T0, end=NOW, interval="1h")
    assert report["series"][0]["total_kwh"] == pytest.approx(6 * 12)
    rooms = services.energy_report(rooms=["lab", "hall"], sensor_ids=[], start=T0, end=NOW, interval="1h")
    assert {s["room"]: s["total_kwh"] for s in rooms["series"]} == pytest.approx({"lab": 24, "hall": 30})
    # Power in the 5-minute window of the last readings: the plant room holds the main power
    # meter's remainder, the lab its own sub-meter; both rooms count one reporting sensor.
    window = NOW - timedelta(minutes=5)
    plant = RoomMetrics.objects.get(room=Room.objects.get(name="plant"), bucket=window)
    lab = RoomMetrics.objects.get(room=Room.objects.get(name="lab"), bucket=window)
    assert plant.power_w == pytest.approx(3800) and plant.sensors_reporting == 1
    assert lab.power_w == pytest.approx(1200)


@pytest.mark.usefixtures("building")
def test_a_backfill_counts_like_the_incremental_job() -> None:
    six_hours()

    def windows() -> list[tuple[Any, ...]]:
        return sorted(
            RoomMetrics.objects.values_list(
                "room__name", "bucket", "energy_kwh", "power_w", "sensors_reporting"
            )
        )

    before = windows()
    RoomMetrics.objects.all().delete()
    services.rollups_backfill(since=T0, until=NOW)
    assert windows() == before
    rooms = services.energy_report(rooms=["lab"], sensor_ids=[], start=T0, end=NOW, interval="1d")
    assert rooms["series"][0]["total_kwh"] == pytest.approx(24)


@pytest.mark.usefixtures("building")
def test_the_breakdown_shows_each_levels_remainder() -> None:
    six_hours()
    breakdown = services.energy_breakdown("today", NOW)
    assert breakdown["total_kwh"] == pytest.approx(72)
    (main,) = breakdown["meters"]
    assert (main["sensor_id"], main["energy_kwh"], main["unmetered_kwh"]) == ("main", 60, pytest.approx(18))
    lab, hall = main["sub_meters"]
    assert (lab["sensor_id"], lab["energy_kwh"], lab["unmetered_kwh"]) == ("lab-meter", 24, pytest.approx(18))
    assert [c["sensor_id"] for c in lab["sub_meters"]] == ["lab-circuit"]
    assert hall["sensor_id"] == "hall-meter" and "unmetered_kwh" not in hall
    assert [m["sensor_id"] for m in breakdown["standalone"]] == ["hall-own"]
    assert {r["room"]: r["energy_kwh"] for r in breakdown["by_room"]} == pytest.approx(
        {"lab": 24, "hall": 30, "unassigned": 18}
    )
    assert breakdown["by_kind"] == pytest.approx({"energy_meter": 72})


@pytest.mark.usefixtures("building")
def test_sub_meters_that_read_more_than_their_parent_are_flagged() -> None:
    store(list(hourly("main", "energy", 1.0, T0, NOW)) + list(hourly("lab-meter", "energy", 2.0, T0, NOW)))
    (main,) = services.energy_breakdown("today", NOW)["meters"]
    assert main["unmetered_kwh"] == pytest.approx(-6)
    assert main["unmetered_negative"] is True


def comparison(now: datetime) -> dict[str, dict[str, Any]]:
    return {c["period"]: c for c in services.energy_comparison(now)["comparisons"]}


def test_today_against_yesterday_up_to_the_same_time_of_day() -> None:
    services.sensor_register(sensor_id="main", kind="energy_meter")
    start = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)  # a Sunday
    now = datetime(2026, 11, 3, 12, 5, tzinfo=UTC)  # Tuesday 12:05
    store(list(hourly("main", "energy", 1.0, start, now)))
    day = comparison(now)["day"]
    assert day["current"]["energy_kwh"] == pytest.approx(13)  # 00:00 .. 12:00 readings
    # Yesterday up to 12:05: twelve hours and a third of the 12:00 quarter's kWh.
    assert day["previous"]["energy_kwh"] == pytest.approx(12 + 1 / 3)
    assert day["previous"]["end"] == "2026-11-02T12:05:00+00:00"
    assert day["previous_whole"]["energy_kwh"] == pytest.approx(24)
    assert day["change_kwh"] == pytest.approx(13 - 12 - 1 / 3)
    assert day["change_pct"] == pytest.approx((13 - 37 / 3) / (37 / 3) * 100)


@pytest.mark.parametrize(
    ("now", "today_hours", "yesterday_hours"),
    [
        # Lisbon's clocks go back at 02:00 on 25 October 2026: noon is 13 hours into the day.
        (datetime(2026, 10, 25, 12, 0, tzinfo=UTC), 13, 12),
        # ... and forward at 01:00 on 29 March 2026: noon (WEST) is 11 hours into the day.
        (datetime(2026, 3, 29, 11, 0, tzinfo=UTC), 11, 12),
    ],
)
def test_a_daylight_saving_day_is_compared_up_to_the_same_clock_time(
    now: datetime, today_hours: int, yesterday_hours: int
) -> None:
    services.sensor_register(sensor_id="main", kind="energy_meter")
    store(list(hourly("main", "energy", 1.0, now - timedelta(days=2), now)))
    day = comparison(now)["day"]
    assert day["current"]["energy_kwh"] == pytest.approx(today_hours)
    assert day["previous"]["energy_kwh"] == pytest.approx(yesterday_hours)
    assert day["current"]["end"][11:16] == "12:00"
    assert day["previous"]["end"][11:16] == "12:00"
    # The whole previous day of 24 hours, and the current one's offset after the change.
    assert day["previous_whole"]["energy_kwh"] == pytest.approx(24)


def test_week_and_month_against_last_week_and_a_year_ago() -> None:
    services.sensor_register(sensor_id="main", kind="energy_meter")
    now = datetime(2026, 11, 4, 6, 0, tzinfo=UTC)  # Wednesday 06:00
    year_ago = datetime(2025, 11, 1, 0, 0, tzinfo=UTC)
    store(
        list(hourly("main", "energy", 2.0, year_ago, year_ago + timedelta(days=30)))
        + list(hourly("main", "energy", 1.0, datetime(2026, 10, 26, 0, 0, tzinfo=UTC), now))
    )
    periods = comparison(now)
    week, month = periods["week"], periods["month"]
    assert week["current"]["energy_kwh"] == pytest.approx(2 * 24 + 6)  # Monday, Tuesday, 6 h
    assert week["previous"]["energy_kwh"] == pytest.approx(2 * 24 + 6)
    assert week["previous_whole"]["energy_kwh"] == pytest.approx(7 * 24)
    assert week["change_pct"] == pytest.approx(0)
    assert month["previous_label"] == "November 2025"
    assert month["current"]["energy_kwh"] == pytest.approx(3 * 24 + 6)
    assert month["previous"]["energy_kwh"] == pytest.approx(2 * (3 * 24 + 6))
    assert month["previous_whole"]["energy_kwh"] == pytest.approx(2 * 30 * 24)
    assert month["change_pct"] == pytest.approx(-50)


def test_no_history_yet_says_none_not_zero() -> None:
    services.sensor_register(sensor_id="main", kind="energy_meter")
    now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    store(list(hourly("main", "energy", 1.0, datetime(2026, 11, 3, 0, 0, tzinfo=UTC), now)))
    month = comparison(now)["month"]
    assert month["current"]["energy_kwh"] == pytest.approx(12)
    assert month["previous"]["energy_kwh"] is None
    assert month["change_pct"] is None


@pytest.mark.usefixtures("building")
def test_the_api_answers_the_comparison_and_the_breakdown(viewer_api: APIClient) -> None:
    comparison_answer = viewer_api.get("/api/v1/analytics/comparison")
    assert comparison_answer.status_code == 200
    assert [c["period"] for c in comparison_answer.json()["comparisons"]] == ["day", "week", "month"]
    breakdown = viewer_api.get("/api/v1/analytics/breakdown?period=week")
    assert breakdown.status_code == 200
    assert breakdown.json()["period"] == "week"
    refused = viewer_api.get("/api/v1/analytics/breakdown?period=year")
    assert refused.status_code == 400
    assert "message" in refused.json()


@pytest.mark.usefixtures("building")
def test_a_rooms_series_counts_each_nested_meter_once() -> None:
    six_hours()
    lab = Room.objects.get(name="lab")
    for resolution in ("5m", "1h"):
        series = services.room_series(room=lab, metrics=["energy"], start=T0, end=NOW, resolution=resolution)
        (energy,) = series["series"]
        assert sum(value for _, value in energy["points"]) == pytest.approx(24), resolution
    plant = services.room_series(
        room=Room.objects.get(name="plant"), metrics=["power"], start=T0, end=NOW, resolution="15m"
    )
    assert plant["series"][0]["points"][-1][1] == pytest.approx(3800)


@pytest.mark.usefixtures("building")
def test_the_live_start_is_the_top_level_power_and_each_sensors_newest_reading() -> None:
    store(
        [
            {
                "sensor_id": "main-power",
                "metric": "power",
                "timestamp": iso(NOW - timedelta(minutes=m)),
                "value": v,
            }
            for m, v in ((20, 4000), (9, 4000), (2, 6000))
        ]
        + [
            {
                "sensor_id": "lab-power",
                "metric": "power",
                "timestamp": iso(NOW - timedelta(minutes=2)),
                "value": 900,
            }
        ]
    )
    live = services.overview_live(NOW)
    # 5-minute windows: 05:40 (4000), 05:50 (4000), 05:55 (6000); the sub-meter is left out.
    assert [watts for _, watts in live["recent"]] == [4000, 4000, 6000]
    assert live["latest"] == [
        ["lab-power", "lab", "power", iso(NOW - timedelta(minutes=2)), 900],
        ["main-power", "plant", "power", iso(NOW - timedelta(minutes=2)), 6000],
    ]
    assert services.meter_parents()["lab-meter"] == {"part_of": "main", "parent_room": None}
    assert services.meter_parents()["lab-power"] == {"part_of": "main-power", "parent_room": "plant"}


def test_the_cached_comparison_is_the_comparison(settings: Any) -> None:
    settings.ANALYTICS_SUMMARY_MAX_AGE_S = 3600
    services.sensor_register(sensor_id="main", kind="energy_meter")
    now = datetime.now(UTC)
    store(list(hourly("main", "energy", 1.0, now - timedelta(days=2), now - timedelta(minutes=1))))
    first = orjson.loads(services.energy_comparison_json())
    assert first["comparisons"][0]["previous_whole"]["energy_kwh"] == pytest.approx(24, abs=1)
    # Within its slot and with the same day versions, the same answer; new aggregates of
    # today make a new one.
    assert orjson.loads(services.energy_comparison_json()) == first
    store(
        [
            {
                "sensor_id": "main",
                "metric": "energy",
                "timestamp": iso(now - timedelta(seconds=30)),
                "value": 100.0,
            }
        ]
    )
    again = orjson.loads(services.energy_comparison_json())
    assert again["comparisons"][0]["current"]["energy_kwh"] == pytest.approx(
        first["comparisons"][0]["current"]["energy_kwh"] + 100
    )
