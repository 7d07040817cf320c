"""GET /rooms/{name}/series (the room page's charts) and the reads of the room and sensors pages."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import analytics, services
from sensors.models import Sensor

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # Lisbon is on UTC+0 then
URL = "/api/v1/rooms/lab/series"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def span(start: datetime, end: datetime) -> str:
    return f"start={iso(start)}&end={iso(end)}"


def readings(
    sensor: str, metric: str, values: list[float], base: datetime = T0, step_min: int = 15
) -> list[Any]:
    return [
        {
            "sensor_id": sensor,
            "metric": metric,
            "timestamp": iso(base + timedelta(minutes=i * step_min)),
            "value": v,
        }
        for i, v in enumerate(values)
    ]


@pytest.fixture
def lab() -> None:
    services.room_create(name="lab")
    services.room_create(name="hall")
    services.sensor_register(sensor_id="p1", kind="power", room_name="lab")
    services.sensor_register(sensor_id="p2", kind="power", room_name="lab")
    services.sensor_register(sensor_id="t1", kind="temperature", room_name="lab")
    services.sensor_register(sensor_id="t2", kind="temperature", room_name="lab")
    services.sensor_register(sensor_id="e1", kind="energy_meter", room_name="lab")
    services.sensor_register(sensor_id="e2", kind="energy_meter", room_name="hall")  # another room


def series_of(body: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    return [s for s in body["series"] if s["metric"] == metric]


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        (3, "raw"),
        (6, "raw"),
        (7, "5m"),
        (24, "5m"),
        (25, "5m"),
        (24 * 7, "15m"),
        (24 * 31, "1h"),
        (24 * 366, "1d"),
    ],
)
def test_auto_resolution_fits_the_range(hours: int, expected: str) -> None:
    assert analytics.room_series_resolution(T0, T0 + timedelta(hours=hours)) == expected


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_raw_is_each_sensors_readings_with_local_times(viewer_api: APIClient) -> None:
    summer = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon (UTC+1)
    services.readings_ingest(
        readings=readings("p1", "power", [100, 110], base=summer)
        + readings("p2", "power", [50], base=summer)
        + readings("e2", "energy", [9], base=summer)
    )
    response = viewer_api.get(
        f"{URL}?resolution=raw&metrics=power,energy&{span(summer, summer + timedelta(hours=1))}"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["resolution"] == "raw"
    assert body["timezone"] == "Europe/Lisbon"
    assert body["start"] == "2026-07-01T10:00:00+01:00"
    power = series_of(body, "power")
    assert [(s["sensor_id"], s["points"]) for s in power] == [
        ("p1", [["2026-07-01T10:00:00+01:00", 100.0], ["2026-07-01T10:15:00+01:00", 110.0]]),
        ("p2", [["2026-07-01T10:00:00+01:00", 50.0]]),
    ]
    # The hall's meter is not the lab's: the lab's energy is an empty series.
    assert series_of(body, "energy") == [{"metric": "energy", "sensor_id": None, "points": []}]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_rollups_combine_the_rooms_sensors_per_metric(viewer_api: APIClient) -> None:
    services.readings_ingest(
        readings=readings("p1", "power", [100, 300], step_min=30)
        + readings("p2", "power", [50, 50], step_min=30)
        + readings("t1", "temperature", [20, 22], step_min=30)
        + readings("t2", "temperature", [24], step_min=30)
        + readings("e1", "energy", [1, 2, 3, 4])
        + readings("e2", "energy", [100])
    )
    services.aggregates_compute()
    body = viewer_api.get(f"{URL}?resolution=1h&{span(T0, T0 + timedelta(hours=1))}").json()
    assert body["resolution"] == "1h"
    value = {s["metric"]: s["points"] for s in body["series"]}
    at = "2026-11-02T10:00:00+00:00"
    assert value["power"] == [[at, 200.0 + 50.0]]  # each sensor's mean, summed
    assert value["temperature"] == [[at, (21.0 + 24.0) / 2]]  # the mean of the sensors' means
    assert value["energy"] == [[at, 10.0]]  # kWh summed, the hall's meter left out
    assert value["humidity"] == []
    # The 5-minute room metrics at 5m.
    five = viewer_api.get(f"{URL}?resolution=5m&metrics=energy&{span(T0, T0 + timedelta(hours=1))}").json()
    assert five["resolution"] == "5m"
    assert [p[1] for p in five["series"][0]["points"]] == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_a_daylight_saving_day_has_25_local_hours(viewer_api: APIClient) -> None:
    # 2026-10-25 in Lisbon: 01:00-02:00 happens twice (UTC+1, then UTC+0); 25 hours from
    # local midnight (23:00 UTC the day before) to the next.
    first = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)
    services.readings_ingest(readings=readings("e1", "energy", [1.0] * 25, base=first, step_min=60))
    services.aggregates_compute()
    # Naive bounds are building time: the page asks for local midnights.
    day = "start=2026-10-25T00:00:00&end=2026-10-26T00:00:00"
    hourly = viewer_api.get(f"{URL}?resolution=1h&metrics=energy&{day}").json()
    stamps = [p[0] for p in hourly["series"][0]["points"]]
    assert len(stamps) == 25
    assert stamps[:4] == [
        "2026-10-25T00:00:00+01:00",
        "2026-10-25T01:00:00+01:00",
        "2026-10-25T01:00:00+00:00",
        "2026-10-25T02:00:00+00:00",
    ]
    assert stamps[-1] == "2026-10-25T23:00:00+00:00"
    daily = viewer_api.get(f"{URL}?resolution=1d&metrics=energy&{day}").json()
    assert daily["series"][0]["points"] == [["2026-10-25T00:00:00+01:00", 25.0]]
    auto = viewer_api.get(f"{URL}?metrics=energy&{day}").json()
    assert auto["resolution"] == "5m"
    assert auto["start"] == "2026-10-25T00:00:00+01:00" and auto["end"] == "2026-10-26T00:00:00+00:00"
    assert len(auto["series"][0]["points"]) == 25


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_the_spring_daylight_saving_day_has_23_local_hours(viewer_api: APIClient) -> None:
    # 2026-03-29 in Lisbon: 01:00 becomes 02:00 (UTC+0 to UTC+1); midnight to midnight is 23 hours.
    first = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    services.readings_ingest(readings=readings("e1", "energy", [2.0] * 23, base=first, step_min=60))
    services.aggregates_compute()
    day = "start=2026-03-29T00:00:00&end=2026-03-30T00:00:00"
    hourly = viewer_api.get(f"{URL}?resolution=1h&metrics=energy&{day}").json()
    stamps = [p[0] for p in hourly["series"][0]["points"]]
    assert len(stamps) == 23
    assert stamps[:3] == [
        "2026-03-29T00:00:00+00:00",
        "2026-03-29T02:00:00+01:00",
        "2026-03-29T03:00:00+01:00",
    ]
    assert hourly["end"] == "2026-03-30T00:00:00+01:00"
    daily = viewer_api.get(f"{URL}?resolution=1d&metrics=energy&{day}").json()
    assert daily["series"][0]["points"] == [["2026-03-29T00:00:00+00:00", 46.0]]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_points_past_the_limit_are_refused_and_auto_steps_up(
    viewer_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(analytics, "ROOM_SERIES_MAX_POINTS", 12)
    services.readings_ingest(readings=readings("p1", "power", [1.0] * 13, step_min=1))
    services.aggregates_compute()
    window = span(T0, T0 + timedelta(hours=1))
    refused = viewer_api.get(f"{URL}?resolution=raw&metrics=power&{window}")
    assert refused.status_code == 400
    body = refused.json()
    assert "ROOM_SERIES_MAX_POINTS" in body["message"] and "resolution" in body["errors"]
    exactly = viewer_api.get(f"{URL}?resolution=raw&metrics=power&{span(T0, T0 + timedelta(minutes=10))}")
    assert exactly.status_code == 200 and len(exactly.json()["series"][0]["points"]) == 10
    # auto over a short range falls back to the 5-minute windows (12 buckets) instead of refusing.
    auto = viewer_api.get(f"{URL}?metrics=power&{window}").json()
    assert auto["resolution"] == "5m" and auto["requested_resolution"] == "auto"
    assert len(auto["series"][0]["points"]) == 3  # 10:00, 10:05, 10:10
    # Buckets times metrics past the limit at a rollup: refused before anything is read.
    wide = viewer_api.get(f"{URL}?resolution=5m&metrics=power,energy&{window}")
    assert wide.status_code == 400, wide.json()


@pytest.mark.usefixtures("lab")
def test_bad_queries_are_json_errors(viewer_api: APIClient) -> None:
    missing = viewer_api.get("/api/v1/rooms/nowhere/series")
    assert missing.status_code == 404 and "nowhere" in missing.json()["message"]
    unknown = viewer_api.get(f"{URL}?metrics=power,watts")
    assert unknown.status_code == 400 and "watts" in unknown.json()["message"]
    backwards = viewer_api.get(f"{URL}?{span(T0, T0 - timedelta(hours=1))}")
    assert backwards.status_code == 400 and "start" in backwards.json()["errors"]
    for field in ("start", "end", "resolution", "metrics"):
        empty = viewer_api.get(f"{URL}?{field}=")
        assert empty.status_code == 400, empty.content
        assert list(empty.json()["errors"]) == [field]
    long_raw = viewer_api.get(f"{URL}?resolution=raw&{span(T0 - timedelta(days=40), T0)}")
    assert long_raw.status_code == 400 and "READINGS_MAX_RANGE_DAYS" in long_raw.json()["message"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_csv_is_the_same_points(viewer_api: APIClient) -> None:
    services.readings_ingest(
        readings=readings("p1", "power", [100, 110]) + readings("t1", "temperature", [21])
    )
    query = f"resolution=raw&metrics=power,temperature&{span(T0, T0 + timedelta(hours=1))}"
    body = viewer_api.get(f"{URL}?{query}").json()
    response = viewer_api.get(f"{URL}?{query}&format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.getvalue().decode())))
    assert rows[0] == ["metric", "sensor_id", "timestamp", "value"]
    expected = [
        [s["metric"], s["sensor_id"] or "", at, str(v)] for s in body["series"] for at, v in s["points"]
    ]
    assert rows[1:] == expected
    assert rows[1] == ["power", "p1", "2026-11-02T10:00:00+00:00", "100.0"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_sensors_table_filters_and_puts_faulty_and_stale_first() -> None:
    Sensor.objects.filter(sensor_id="t2").update(status=Sensor.Status.STALE)
    Sensor.objects.filter(sensor_id="p2").update(status=Sensor.Status.FAULT)
    Sensor.objects.filter(sensor_id="e1").update(status=Sensor.Status.INACTIVE)
    services.readings_ingest(readings=readings("p1", "power", [100, 120]) + readings("e1", "energy", [3]))
    table = services.sensors_table(filters={}, offset=0, limit=100)
    assert table["count"] == 6 and table["errors"] == {}
    order = [row["sensor_id"] for row in table["rows"]]
    assert order == ["p2", "t2", "e2", "p1", "t1", "e1"]
    p1 = next(row for row in table["rows"] if row["sensor_id"] == "p1")
    assert p1["last_value"] == 120.0 and p1["last_value_at"] == T0 + timedelta(minutes=15)
    assert p1["room"] == "lab" and p1["kind_label"] == "Power" and p1["metric"] == "power"
    # The API's filters: kind (several), room, status, search.
    from django.http import QueryDict

    power = services.sensors_table(
        filters=QueryDict("kind=power&kind=temperature&room=lab"), offset=0, limit=100
    )
    assert [row["sensor_id"] for row in power["rows"]] == ["p2", "t2", "p1", "t1"]
    stale = services.sensors_table(filters={"status": ["stale"]}, offset=0, limit=100)
    assert [row["sensor_id"] for row in stale["rows"]] == ["t2"]
    found = services.sensors_table(filters={"search": "E"}, offset=0, limit=1)
    assert found["count"] == 2 and [row["sensor_id"] for row in found["rows"]] == ["e2"]
    bad = services.sensors_table(filters={"kind": ["kettle"]}, offset=0, limit=100)
    assert "kind" in bad["errors"] and bad["count"] == 6


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_room_detail_lists_its_sensors_with_their_latest_values() -> None:
    services.readings_ingest(readings=readings("t1", "temperature", [21.5]))
    detail = services.room_detail("lab")
    assert detail is not None
    assert [s["sensor_id"] for s in detail["sensors"]] == ["e1", "p1", "p2", "t1", "t2"]
    t1 = next(s for s in detail["sensors"] if s["sensor_id"] == "t1")
    assert t1["last_value"] == 21.5 and t1["status"] == "active" and t1["last_seen"] is not None
    assert services.room_detail("nowhere") is None
