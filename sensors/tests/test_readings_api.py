"""Readings over the API: ingest, series, analytics, free queries, CSV."""

from __future__ import annotations

import csv
import gc
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from energy_dashboard.core.parsers import JSONParser
from energy_dashboard.testing import AFTER_FIXED_DATES, streamed
from sensors import rules, services

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def lab() -> None:
    services.room_create(name="lab")
    services.room_create(name="hall")
    services.sensor_register(sensor_id="p1", kind="power", room_name="lab")
    services.sensor_register(sensor_id="e1", kind="energy_meter", room_name="lab")
    services.sensor_register(sensor_id="e2", kind="energy_meter", room_name="hall")
    services.sensor_register(sensor_id="c1", kind="co2", room_name="lab")


def readings(
    sensor: str, metric: str, values: list[float], base: datetime = T0, step_min: int = 15
) -> list[dict[str, Any]]:
    return [
        {
            "sensor_id": sensor,
            "metric": metric,
            "timestamp": iso(base + timedelta(minutes=i * step_min)),
            "value": v,
        }
        for i, v in enumerate(values)
    ]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_post_readings_answers_the_summary(operator_api: APIClient) -> None:
    body = {
        "readings": [
            *readings("p1", "power", [1, 2]),
            {"sensor_id": "nope", "metric": "power", "timestamp": iso(T0), "value": 1},
        ]
    }
    response = operator_api.post("/api/v1/readings", body, format="json")
    assert response.status_code == 201
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "conflicts": 0,
        "rejected": [{"index": 2, "reason": "unknown sensor 'nope'"}],
    }
    again = operator_api.post(
        "/api/v1/readings", {"readings": readings("p1", "power", [1, 2])}, format="json"
    )
    assert again.status_code == 200 and again.json()["duplicates"] == 2


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_a_batch_is_parsed_and_stored_with_the_garbage_collector_off(
    operator_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, bool]] = []
    parse, validate = JSONParser.parse, rules.validate

    def parse_watched(self: JSONParser, *args: Any, **kwargs: Any) -> Any:
        seen.append(("parse", gc.isenabled()))
        return parse(self, *args, **kwargs)

    def validate_watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(("validate", gc.isenabled()))
        return validate(*args, **kwargs)

    monkeypatch.setattr(JSONParser, "parse", parse_watched)
    monkeypatch.setattr(rules, "validate", validate_watched)
    response = operator_api.post(
        "/api/v1/readings", {"readings": readings("p1", "power", [1])}, format="json"
    )
    assert response.status_code == 201
    assert seen == [("parse", False), ("validate", False)]
    assert gc.isenabled()


@pytest.mark.usefixtures("lab")
def test_post_readings_with_nothing_accepted_is_400_with_reasons(operator_api: APIClient) -> None:
    response = operator_api.post(
        "/api/v1/readings",
        {"readings": [{"sensor_id": "p1", "metric": "power", "timestamp": "x", "value": 1}]},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == 0 and body["rejected"][0]["index"] == 0
    assert "not ISO 8601" in body["message"]


@pytest.mark.parametrize("body", [{}, {"readings": []}, {"readings": "nope"}, [], "text"])
def test_post_readings_with_a_bad_body_is_400_json(operator_api: APIClient, body: Any) -> None:
    response = operator_api.post("/api/v1/readings", body, format="json")
    assert response.status_code == 400
    assert response.json()["message"]


def test_viewer_may_not_post_readings(viewer_api: APIClient) -> None:
    assert viewer_api.post("/api/v1/readings", {"readings": []}, format="json").status_code == 403


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_sensor_data_post_takes_the_sensor_from_the_url(operator_api: APIClient) -> None:
    items = [{"metric": "power", "timestamp": iso(T0), "value": 5}]
    response = operator_api.post("/api/v1/sensors/p1/data", {"readings": items}, format="json")
    assert response.status_code == 201, response.json()
    other = [{"sensor_id": "e1", "metric": "energy", "timestamp": iso(T0), "value": 5}]
    refused = operator_api.post("/api/v1/sensors/p1/data", other, format="json")
    assert refused.status_code == 400
    assert "differs from the URL" in refused.json()["rejected"][0]["reason"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_sensor_data_raw_with_cursor_pagination(viewer_api: APIClient) -> None:
    services.readings_ingest(readings=readings("p1", "power", [float(i) for i in range(5)], step_min=1))
    url = f"/api/v1/sensors/p1/data?start={iso(T0)}&end={iso(T0 + timedelta(hours=1))}&limit=2"
    pages, values = 0, []
    while url:
        body = viewer_api.get(url).json()
        values += [p["value"] for p in body["points"]]
        url = body["next"]
        pages += 1
        assert pages < 10
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert body["metric"] == "power" and body["resolution"] == "raw"


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_sensor_data_from_rollups(viewer_api: APIClient) -> None:
    services.readings_ingest(readings=readings("e1", "energy", [1, 2, 3, 4, 5], step_min=15))
    services.aggregates_compute()
    body = viewer_api.get(
        f"/api/v1/sensors/e1/data?resolution=1h&start={iso(T0)}&end={iso(T0 + timedelta(hours=3))}"
    ).json()
    assert [(p["timestamp"], p["value"], p["count"]) for p in body["points"]] == [
        ("2026-11-02T10:00:00Z", 10.0, 4),
        ("2026-11-02T11:00:00Z", 5.0, 1),
    ]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_sensor_data_csv_is_streamed(viewer_api: APIClient) -> None:
    services.readings_ingest(readings=readings("p1", "power", [1, 2], step_min=1))
    response = viewer_api.get(
        f"/api/v1/sensors/p1/data?format=csv&start={iso(T0)}&end={iso(T0 + timedelta(hours=1))}"
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(streamed(response)).decode())))
    assert rows == [
        ["timestamp", "value", "quality"],
        ["2026-11-02T10:00:00Z", "1.0", "measured"],
        ["2026-11-02T10:01:00Z", "2.0", "measured"],
    ]


@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize(
    "query",
    ["?resolution=5m", "?start=2026-11-02T10:00Z&end=2026-11-01T10:00Z", "?limit=0", "?metric=voltage"],
)
def test_sensor_data_bad_query_is_400(viewer_api: APIClient, query: str) -> None:
    response = viewer_api.get(f"/api/v1/sensors/p1/data{query}")
    assert response.status_code == 400 and response.json()["message"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_energy_per_hour_and_day_for_rooms_and_sensors(viewer_api: APIClient) -> None:
    services.readings_ingest(
        readings=readings("e1", "energy", [1, 1, 1, 1, 2]) + readings("e2", "energy", [3])
    )
    services.aggregates_compute()
    span = f"start={iso(T0)}&end={iso(T0 + timedelta(hours=2))}"
    body = viewer_api.get(f"/api/v1/analytics/energy?rooms=lab,hall&sensors=e1&interval=1h&{span}").json()
    series = {(s.get("room") or s.get("sensor")): s for s in body["series"]}
    assert [p["energy_kwh"] for p in series["lab"]["points"]] == [4.0, 2.0]
    assert series["lab"]["points"][0]["start"] == "2026-11-02T10:00:00+00:00"  # Lisbon, winter
    assert series["hall"]["total_kwh"] == 3.0
    assert series["e1"]["total_kwh"] == 6.0
    daily = viewer_api.get(
        f"/api/v1/analytics/energy?rooms=lab&interval=1d&start={iso(T0 - timedelta(days=1))}&end={iso(T0 + timedelta(days=1))}"
    ).json()
    assert [(p["start"], p["energy_kwh"]) for p in daily["series"][0]["points"]] == [
        ("2026-11-02T00:00:00+00:00", 6.0)
    ]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_energy_days_follow_the_building_clock_across_dst(viewer_api: APIClient) -> None:
    # 29 March 2026, Lisbon: clocks go forward at 01:00 UTC; the local day is 23 hours.
    day_start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    services.readings_ingest(
        readings=readings("e1", "energy", [1.0] * 24, base=day_start + timedelta(minutes=30), step_min=60)
    )
    services.aggregates_compute()
    body = viewer_api.get(
        f"/api/v1/analytics/energy?sensors=e1&interval=1d&start={iso(day_start - timedelta(days=1))}&end={iso(day_start + timedelta(days=2))}"
    ).json()
    points = [(p["start"], p["energy_kwh"]) for p in body["series"][0]["points"]]
    # 23 readings fall on the 23-hour local day 29 March; the last (23:30 UTC = 00:30 on the
    # 30th, summer time) on the next.
    assert points == [("2026-03-29T00:00:00+00:00", 23.0), ("2026-03-30T00:00:00+01:00", 1.0)]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_energy_csv(viewer_api: APIClient) -> None:
    services.readings_ingest(readings=readings("e1", "energy", [1, 2]))
    services.aggregates_compute()
    response = viewer_api.get(
        f"/api/v1/analytics/energy?sensors=e1&interval=1h&format=csv&start={iso(T0)}&end={iso(T0 + timedelta(hours=1))}"
    )
    rows = list(csv.reader(io.StringIO(b"".join(streamed(response)).decode())))
    assert rows == [
        ["kind", "key", "start", "energy_kwh"],
        ["sensor", "e1", "2026-11-02T10:00:00+00:00", "3.0"],
    ]


@pytest.mark.usefixtures("lab")
def test_summary(viewer_api: APIClient) -> None:
    now = timezone.now().replace(microsecond=0)
    services.readings_ingest(
        readings=[
            {
                "sensor_id": "p1",
                "metric": "power",
                "timestamp": iso(now - timedelta(minutes=5)),
                "value": 100,
            },
            {
                "sensor_id": "p1",
                "metric": "power",
                "timestamp": iso(now - timedelta(minutes=1)),
                "value": 250,
            },
            # At `now`, which is always today: a minute earlier is yesterday just after midnight.
            {"sensor_id": "e1", "metric": "energy", "timestamp": iso(now), "value": 2},
            {"sensor_id": "e2", "metric": "energy", "timestamp": iso(now), "value": 1},
            {"sensor_id": "c1", "metric": "co2", "timestamp": iso(now - timedelta(minutes=1)), "value": 1500},
        ]
    )
    services.aggregates_compute()
    body = viewer_api.get("/api/v1/analytics/summary").json()
    assert body["current_power_w"] == 250.0
    assert body["current_power_by_room_w"] == {"lab": 250.0}
    assert body["energy_kwh"]["today"] == 3.0
    assert body["energy_by_room_kwh"]["today"] == {"lab": 2.0, "hall": 1.0}
    assert body["energy_by_kind_kwh"]["month"] == {"energy_meter": 3.0}
    assert body["top_consumers_week_kwh"][0] == {"sensor_id": "e1", "energy_kwh": 2.0}
    assert body["comfort"]["rooms"]["lab"]["outside_comfort"] == ["co2"]
    assert body["comfort"]["rooms_outside_comfort"] == 1


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_data_query_raw_and_aggregated_and_csv(viewer_api: APIClient) -> None:
    services.readings_ingest(
        readings=readings("e1", "energy", [1, 2, 3, 4]) + readings("c1", "co2", [500, 700])
    )
    services.aggregates_compute()
    span = {"start": iso(T0), "end": iso(T0 + timedelta(hours=2))}
    raw = viewer_api.post(
        "/api/v1/data/query", {"rooms": ["lab"], "metrics": ["co2"], **span}, format="json"
    ).json()
    assert [r["value"] for r in raw["results"]] == [500.0, 700.0]
    summed = viewer_api.post(
        "/api/v1/data/query",
        {"sensors": ["e1"], "aggregation": "sum", "interval": "1h", **span},
        format="json",
    ).json()
    assert summed["results"] == [
        {
            "sensor_id": "e1",
            "room": "lab",
            "metric": "energy",
            "timestamp": "2026-11-02T10:00:00Z",
            "value": 10.0,
        }
    ]
    limited = viewer_api.post(
        "/api/v1/data/query", {"rooms": ["lab"], "limit": 3, **span}, format="json"
    ).json()
    assert limited["count"] == 3 and limited["truncated"] is True
    response = viewer_api.post("/api/v1/data/query?format=csv", {"sensors": ["c1"], **span}, format="json")
    rows = list(csv.reader(io.StringIO(b"".join(streamed(response)).decode())))
    assert rows[0] == ["sensor_id", "room", "metric", "timestamp", "value"] and len(rows) == 3


def test_data_query_validation(viewer_api: APIClient) -> None:
    response = viewer_api.post("/api/v1/data/query", {"start": iso(T0), "end": iso(T0)}, format="json")
    assert response.status_code == 400


@pytest.mark.usefixtures("lab")
def test_room_detail_has_latest_metrics(viewer_api: APIClient) -> None:
    now = timezone.now().replace(microsecond=0)
    services.readings_ingest(
        readings=[
            {"sensor_id": "c1", "metric": "co2", "timestamp": iso(now - timedelta(minutes=1)), "value": 640}
        ]
    )
    services.aggregates_compute()
    body = viewer_api.get("/api/v1/rooms/lab").json()
    assert body["latest"]["metrics"]["co2_ppm"] == 640.0
    assert body["latest"]["sensors"]["c1"]["value"] == 640.0
    assert body["latest"]["sensors"]["p1"] is None


@pytest.mark.usefixtures("lab")
def test_room_list_query_count_is_constant(viewer_api: APIClient, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(4):
        assert viewer_api.get("/api/v1/rooms/").status_code == 200


@pytest.mark.usefixtures("lab")
def test_oversized_batch_is_refused_with_a_message(operator_api: APIClient) -> None:
    items = readings("p1", "power", [1.0] * 10_001, step_min=0)
    response = operator_api.post("/api/v1/readings", {"readings": items}, format="json")
    assert response.status_code == 400
    assert "At most 10000" in response.json()["message"]


@pytest.mark.usefixtures("lab")
def test_comfort_uses_each_metrics_newest_window(viewer_api: APIClient) -> None:
    # The room's newest 5-minute window has only energy; its CO2 came in the window before.
    now = timezone.now().replace(microsecond=0)
    current = now.replace(minute=now.minute - now.minute % 5, second=0)
    services.readings_ingest(
        readings=[
            {
                "sensor_id": "c1",
                "metric": "co2",
                "timestamp": iso(current - timedelta(minutes=4)),
                "value": 1500,
            },
            {"sensor_id": "e1", "metric": "energy", "timestamp": iso(current), "value": 1},
        ]
    )
    services.aggregates_compute()
    lab = viewer_api.get("/api/v1/analytics/summary").json()["comfort"]["rooms"]["lab"]
    assert lab["co2_ppm"] == 1500.0 and lab["outside_comfort"] == ["co2"]
    assert lab["as_of"] == iso(current - timedelta(minutes=5))
