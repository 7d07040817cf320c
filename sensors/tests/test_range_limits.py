"""Every range-taking endpoint bounds the points it computes or returns, and its CSV streams."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from energy_dashboard.testing import AFTER_FIXED_DATES, streamed
from sensors import analytics, services

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def span(start: datetime, end: datetime) -> str:
    return f"start={iso(start)}&end={iso(end)}"


@pytest.fixture
def lab() -> None:
    services.room_create(name="lab")
    services.room_create(name="hall")
    services.sensor_register(sensor_id="p1", kind="power", room_name="lab")
    services.sensor_register(sensor_id="e1", kind="energy_meter", room_name="lab")
    services.sensor_register(sensor_id="e2", kind="energy_meter", room_name="hall")
    services.sensor_register(sensor_id="e3", kind="energy_meter")  # in no room


def energy(sensor: str, values: list[float], base: datetime = T0, step_min: int = 15) -> list[dict[str, Any]]:
    return [
        {
            "sensor_id": sensor,
            "metric": "energy",
            "timestamp": iso(base + timedelta(minutes=i * step_min)),
            "value": v,
        }
        for i, v in enumerate(values)
    ]


def refused(response: Any, field: str, *words: str) -> dict[str, Any]:
    """A 400 in the API's error shape, naming `field`, whose message says each of `words`."""
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    assert set(body) >= {"message", "code", "errors"}
    assert field in body["errors"], body
    text = (
        " ".join(body["errors"][field]) if isinstance(body["errors"][field], list) else body["errors"][field]
    )
    for word in words:
        assert word in text, (word, text)
    return body


def sensors_queries(run: Any) -> list[str]:
    """The SQL `run()` sent to the sensors database."""
    with CaptureQueriesContext(connections["sensors"]) as captured:
        run()
    return [q["sql"] for q in captured.captured_queries]


# --- /analytics/energy ----------------------------------------------------------------------


@pytest.mark.usefixtures("lab")
def test_energy_over_centuries_is_refused_at_once(viewer_api: APIClient) -> None:
    url = "/api/v1/analytics/energy?rooms=lab&interval=1h&start=1900-01-01T00:00:00Z&end=9000-01-01T00:00:00Z"
    responses: list[Any] = []
    queries = sensors_queries(lambda: responses.append(viewer_api.get(url)))
    body = refused(responses[0], "start", "1971")
    assert "end" in body["errors"] and "2200" in body["errors"]["end"][0]
    assert queries == []  # refused before reading anything


@pytest.mark.usefixtures("lab")
def test_energy_range_is_bounded_in_days(viewer_api: APIClient, settings: Any) -> None:
    settings.ANALYTICS_MAX_RANGE_DAYS = 10
    start = datetime(2026, 10, 1, tzinfo=UTC)
    ok = viewer_api.get(
        f"/api/v1/analytics/energy?rooms=lab&interval=1d&{span(start, start + timedelta(days=10))}"
    )
    assert ok.status_code == 200, ok.json()
    too_long = viewer_api.get(
        f"/api/v1/analytics/energy?rooms=lab&interval=1M&{span(start, start + timedelta(days=10, seconds=1))}"
    )
    refused(too_long, "start", "10 days", "ANALYTICS_MAX_RANGE_DAYS")


@pytest.mark.usefixtures("lab")
def test_energy_points_are_buckets_times_series(viewer_api: APIClient, settings: Any) -> None:
    settings.ANALYTICS_MAX_POINTS = 48
    start = T0.replace(hour=0)
    # 24 hourly buckets x 2 series: exactly the limit.
    ok = viewer_api.get(
        f"/api/v1/analytics/energy?rooms=lab&sensors=e1&interval=1h&{span(start, start + timedelta(hours=24))}"
    )
    assert ok.status_code == 200, ok.json()
    assert len(ok.json()["series"]) == 2
    # One more hour, or one more series, is past it.
    longer = viewer_api.get(
        f"/api/v1/analytics/energy?rooms=lab&sensors=e1&interval=1h&{span(start, start + timedelta(hours=25))}"
    )
    refused(longer, "start", "48", "ANALYTICS_MAX_POINTS")
    wider = viewer_api.get(
        f"/api/v1/analytics/energy?rooms=lab,hall&sensors=e1&interval=1h&{span(start, start + timedelta(hours=24))}"
    )
    refused(wider, "start", "48", "3 series")
    # A bucket only partly in the range counts: 00:30 to 24:30 touches 25 hours.
    shifted = viewer_api.get(
        "/api/v1/analytics/energy?rooms=lab&sensors=e1&interval=1h&"
        f"{span(start + timedelta(minutes=30), start + timedelta(hours=24, minutes=30))}"
    )
    refused(shifted, "start", "ANALYTICS_MAX_POINTS")


@pytest.mark.usefixtures("lab")
def test_energy_series_count_is_bounded(viewer_api: APIClient, settings: Any) -> None:
    settings.ANALYTICS_MAX_SERIES = 3
    names = ",".join(f"room-{n}" for n in range(4))
    response = viewer_api.get(
        f"/api/v1/analytics/energy?rooms={names}&interval=1h&{span(T0, T0 + timedelta(hours=1))}"
    )
    refused(response, "rooms", "3", "ANALYTICS_MAX_SERIES")


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_energy_without_rooms_or_sensors_is_the_whole_building(viewer_api: APIClient) -> None:
    services.readings_ingest(
        readings=energy("e1", [1, 1, 1, 1]) + energy("e2", [2]) + energy("e3", [4, 4], step_min=60)
    )
    services.aggregates_compute()
    body = viewer_api.get(f"/api/v1/analytics/energy?interval=1h&{span(T0, T0 + timedelta(hours=2))}").json()
    assert body["scope"] == "building"
    [building] = body["series"]
    assert building["building"] == "all sensors"
    # Every energy sensor, the one in no room too (as the summary counts them).
    assert [p["energy_kwh"] for p in building["points"]] == [4.0 + 2.0 + 4.0, 4.0]
    assert building["total_kwh"] == 14.0
    daily = viewer_api.get(
        f"/api/v1/analytics/energy?interval=1d&{span(T0 - timedelta(days=1), T0 + timedelta(days=1))}"
    )
    assert daily.json()["series"][0]["points"] == [{"start": "2026-11-02T00:00:00+00:00", "energy_kwh": 14.0}]
    named = viewer_api.get(
        f"/api/v1/analytics/energy?rooms=lab&interval=1h&{span(T0, T0 + timedelta(hours=2))}"
    )
    assert named.json()["scope"] == "selection"
    csv_rows = rows_of(
        viewer_api.get(f"/api/v1/analytics/energy?interval=1h&format=csv&{span(T0, T0 + timedelta(hours=2))}")
    )
    assert csv_rows == [
        ["kind", "key", "start", "energy_kwh"],
        ["building", "all sensors", "2026-11-02T10:00:00+00:00", "10.0"],
        ["building", "all sensors", "2026-11-02T11:00:00+00:00", "4.0"],
    ]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize("interval", ["1d", "1w", "1M"])
def test_energy_in_local_periods_folds_in_order(viewer_api: APIClient, interval: str) -> None:
    # Readings on both sides of a local midnight in summer (UTC+1), and a week later in the next
    # month.
    base = datetime(2026, 6, 29, 22, 0, tzinfo=UTC)  # Monday 23:00 in Lisbon
    services.readings_ingest(readings=energy("e1", [1, 2, 4], base=base, step_min=60))  # 23:00, 00:00, 01:00
    services.readings_ingest(readings=energy("e1", [8], base=base + timedelta(days=7)))
    services.aggregates_compute()
    query = f"{span(base - timedelta(days=2), base + timedelta(days=9))}&interval={interval}"
    by_room = viewer_api.get(f"/api/v1/analytics/energy?rooms=lab&{query}").json()["series"][0]["points"]
    by_sensor = viewer_api.get(f"/api/v1/analytics/energy?sensors=e1&{query}").json()["series"][0]["points"]
    expected = {
        "1d": [
            ("2026-06-29T00:00:00+01:00", 1.0),
            ("2026-06-30T00:00:00+01:00", 6.0),
            ("2026-07-06T00:00:00+01:00", 8.0),
        ],
        "1w": [("2026-06-29T00:00:00+01:00", 7.0), ("2026-07-06T00:00:00+01:00", 8.0)],
        "1M": [("2026-06-01T00:00:00+01:00", 7.0), ("2026-07-01T00:00:00+01:00", 8.0)],
    }[interval]
    assert [(p["start"], p["energy_kwh"]) for p in by_room] == expected
    assert [(p["start"], p["energy_kwh"]) for p in by_sensor] == expected


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_energy_csv_reads_the_database_while_it_streams(viewer_api: APIClient) -> None:
    services.readings_ingest(readings=energy("e1", [1, 2]))
    services.aggregates_compute()
    responses: list[Any] = []
    url = f"/api/v1/analytics/energy?sensors=e1&interval=1h&format=csv&{span(T0, T0 + timedelta(hours=1))}"
    before = sensors_queries(lambda: responses.append(viewer_api.get(url)))
    assert not any("sensors_rollup" in sql for sql in before)
    during = sensors_queries(lambda: responses.append(rows_of(responses[0])))
    assert any("sensors_rollup" in sql for sql in during)
    assert responses[1][1] == ["sensor", "e1", "2026-11-02T10:00:00+00:00", "3.0"]


# --- /sensors/{id}/data -----------------------------------------------------------------------


def rows_of(response: Any) -> list[list[str]]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.usefixtures("lab")
def test_raw_series_range_is_bounded(viewer_api: APIClient, settings: Any) -> None:
    settings.READINGS_MAX_RANGE_DAYS = 2
    ok = viewer_api.get(f"/api/v1/sensors/p1/data?{span(T0, T0 + timedelta(days=2))}")
    assert ok.status_code == 200
    for suffix in ("", "&format=csv"):
        response = viewer_api.get(
            f"/api/v1/sensors/p1/data?{span(T0, T0 + timedelta(days=2, seconds=1))}{suffix}"
        )
        assert response.status_code == 400
        if not suffix:
            refused(response, "start", "2 days", "READINGS_MAX_RANGE_DAYS")


@pytest.mark.usefixtures("lab")
def test_rollup_series_range_is_bounded_in_buckets(viewer_api: APIClient, settings: Any) -> None:
    settings.ANALYTICS_MAX_POINTS = 96
    ok = viewer_api.get(f"/api/v1/sensors/e1/data?resolution=15m&{span(T0, T0 + timedelta(hours=24))}")
    assert ok.status_code == 200
    past = viewer_api.get(
        f"/api/v1/sensors/e1/data?resolution=15m&{span(T0, T0 + timedelta(hours=24, minutes=15))}"
    )
    refused(past, "start", "96", "ANALYTICS_MAX_POINTS")
    # 95 days from 10:00 touch 96 local days.
    daily = viewer_api.get(f"/api/v1/sensors/e1/data?resolution=1d&{span(T0, T0 + timedelta(days=95))}")
    assert daily.status_code == 200


@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=0001-01-01T00:00:00%2B14:00", "start"),
        ("end=9999-12-31T23:59:59-12:00", "end"),
        ("cursor=1900-01-01T00:00:00Z", "cursor"),
    ],
)
def test_series_instants_outside_the_horizon_are_refused(
    viewer_api: APIClient, query: str, field: str
) -> None:
    refused(viewer_api.get(f"/api/v1/sensors/p1/data?{query}"), field)


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_sensor_data_csv_streams_every_point_of_the_range_from_the_database(viewer_api: APIClient) -> None:
    # More points than a page holds: the export is the range, not a page.
    points = [
        {"sensor_id": "p1", "metric": "power", "timestamp": iso(T0 + timedelta(seconds=s)), "value": s}
        for s in range(10_050)
    ]
    services.readings_ingest(readings=points[:5000])
    services.readings_ingest(readings=points[5000:])
    responses: list[Any] = []
    url = f"/api/v1/sensors/p1/data?format=csv&{span(T0, T0 + timedelta(hours=3))}"
    before = sensors_queries(lambda: responses.append(viewer_api.get(url)))
    assert not any("sensors_reading" in sql for sql in before)
    rows = rows_of(responses[0])
    assert rows[0] == ["timestamp", "value", "quality"]
    assert len(rows) == 1 + 10_050
    assert rows[-1] == [iso(T0 + timedelta(seconds=10_049)), "10049.0", "measured"]


@pytest.mark.usefixtures("lab")
def test_rollup_csv_has_its_columns_when_empty(viewer_api: APIClient) -> None:
    rows = rows_of(
        viewer_api.get(
            f"/api/v1/sensors/e1/data?resolution=1h&format=csv&{span(T0, T0 + timedelta(hours=2))}"
        )
    )
    assert rows == [["timestamp", "value", "count", "sum", "min", "max", "mean"]]


# --- POST /data/query -------------------------------------------------------------------------


@pytest.mark.usefixtures("lab")
def test_raw_query_range_is_bounded(viewer_api: APIClient, settings: Any) -> None:
    settings.READINGS_MAX_RANGE_DAYS = 3
    body = {"sensors": ["p1"], "start": iso(T0), "end": iso(T0 + timedelta(days=3))}
    assert viewer_api.post("/api/v1/data/query", body, format="json").status_code == 200
    body["end"] = iso(T0 + timedelta(days=3, seconds=1))
    refused(
        viewer_api.post("/api/v1/data/query", body, format="json"),
        "start",
        "3 days",
        "READINGS_MAX_RANGE_DAYS",
    )


@pytest.mark.usefixtures("lab")
def test_aggregated_query_range_is_bounded_in_buckets(viewer_api: APIClient, settings: Any) -> None:
    settings.ANALYTICS_MAX_POINTS = 24
    body = {
        "sensors": ["e1"],
        "aggregation": "sum",
        "interval": "1h",
        "start": iso(T0),
        "end": iso(T0 + timedelta(hours=24)),
    }
    assert viewer_api.post("/api/v1/data/query", body, format="json").status_code == 200
    body["end"] = iso(T0 + timedelta(hours=25))
    refused(viewer_api.post("/api/v1/data/query", body, format="json"), "start", "24", "ANALYTICS_MAX_POINTS")


@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize("field", ["sensors", "rooms"])
def test_query_names_are_bounded(viewer_api: APIClient, settings: Any, field: str) -> None:
    settings.ANALYTICS_MAX_SERIES = 2
    body = {field: ["a", "b", "c"], "start": iso(T0), "end": iso(T0 + timedelta(hours=1))}
    refused(viewer_api.post("/api/v1/data/query", body, format="json"), field, "2", "ANALYTICS_MAX_SERIES")


@pytest.mark.usefixtures("lab")
def test_query_instants_outside_the_horizon_are_refused(viewer_api: APIClient) -> None:
    body = {"sensors": ["p1"], "start": "0001-01-01T00:00:00+14:00", "end": "9999-12-31T23:59:59-12:00"}
    body_back = refused(viewer_api.post("/api/v1/data/query", body, format="json"), "start")
    assert "end" in body_back["errors"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_query_csv_reads_the_database_while_it_streams(viewer_api: APIClient) -> None:
    services.readings_ingest(readings=energy("e1", [1, 2, 3]))
    responses: list[Any] = []
    body = {"sensors": ["e1"], "start": iso(T0), "end": iso(T0 + timedelta(hours=1))}
    before = sensors_queries(
        lambda: responses.append(viewer_api.post("/api/v1/data/query?format=csv", body, format="json"))
    )
    assert not any("sensors_reading" in sql for sql in before)
    rows = rows_of(responses[0])
    assert [r[4] for r in rows[1:]] == ["1.0", "2.0", "3.0"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize("export", ["series", "query"])
def test_an_export_holds_a_chunk_of_rows_not_the_range(
    viewer_api: APIClient, monkeypatch: pytest.MonkeyPatch, export: str
) -> None:
    monkeypatch.setattr(analytics, "CHUNK_ROWS", 200)
    for batch in range(4):
        services.readings_ingest(
            readings=[
                {
                    "sensor_id": "p1",
                    "metric": "power",
                    "timestamp": iso(T0 + timedelta(seconds=s)),
                    "value": s,
                }
                for s in range(batch * 5000, (batch + 1) * 5000)
            ]
        )
    end = T0 + timedelta(hours=6)
    viewer_api.get("/api/v1/rooms/")  # the first request's imports and caches, not measured
    tracemalloc.start()
    try:
        if export == "series":
            response = viewer_api.get(f"/api/v1/sensors/p1/data?format=csv&{span(T0, end)}")
        else:
            body = {"sensors": ["p1"], "start": iso(T0), "end": iso(end), "limit": 100_000}
            response = viewer_api.post("/api/v1/data/query?format=csv", body, format="json")
        chunks = iter(streamed(response))
        next(chunks)  # the first 500 rows
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The 20,000 rows of the range, read whole, take several megabytes.
    assert peak < 1_000_000, peak
    assert sum(chunk.count(b"\n") for chunk in chunks) + 500 == 20_000
