"""The analytics cache answers repeated questions from Redis and never serves an answer whose
data has changed since: late readings, a backfill, a renamed room or a deleted sensor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import analytics, services
from sensors.models import Room, Sensor

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
SPAN = "start=2026-11-02T00:00:00Z&end=2026-11-03T00:00:00Z"


@pytest.fixture
def lab() -> None:
    services.room_create(name="lab")
    services.sensor_register(sensor_id="e1", kind="energy_meter", room_name="lab")


@pytest.fixture
def computed(monkeypatch: Any) -> list[str]:
    """How many times the answer was computed (not taken from the cache)."""
    calls: list[str] = []
    real = analytics.energy_report

    def counting(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs["interval"])
        return real(**kwargs)

    monkeypatch.setattr(analytics, "energy_report", counting)
    return calls


def store(values: list[float], start: datetime = T0) -> None:
    items = [
        {
            "sensor_id": "e1",
            "metric": "energy",
            "timestamp": (start + timedelta(minutes=15 * i)).isoformat(),
            "value": v,
        }
        for i, v in enumerate(values)
    ]
    assert services.readings_ingest(readings=items)["accepted"] == len(values)
    services.aggregates_compute()


def lab_total(api: APIClient, query: str = f"rooms=lab&interval=1h&{SPAN}") -> float:
    response = api.get(f"/api/v1/analytics/energy?{query}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return float(response.json()["series"][0]["total_kwh"])


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_a_repeated_question_is_answered_from_the_cache(viewer_api: APIClient, computed: list[str]) -> None:
    store([1, 2])
    assert lab_total(viewer_api) == 3.0
    assert lab_total(viewer_api) == 3.0
    assert computed == ["1h"]  # the second answer came from Redis
    assert lab_total(viewer_api, f"rooms=lab&interval=15m&{SPAN}") == 3.0
    assert computed == ["1h", "15m"]  # another question is its own entry


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_late_readings_make_the_cached_answer_unreachable(viewer_api: APIClient, computed: list[str]) -> None:
    store([1, 2])
    assert lab_total(viewer_api) == 3.0
    store([4], start=T0 - timedelta(hours=3))  # hours late, same local day
    assert lab_total(viewer_api) == 7.0
    assert computed == ["1h", "1h"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_data_of_another_day_leaves_the_answer_cached(viewer_api: APIClient, computed: list[str]) -> None:
    store([1, 2])
    assert lab_total(viewer_api) == 3.0
    store([5], start=T0 + timedelta(days=3))
    assert lab_total(viewer_api) == 3.0
    assert computed == ["1h"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_a_backfill_makes_its_days_answers_unreachable(viewer_api: APIClient, computed: list[str]) -> None:
    store([1, 2])
    assert lab_total(viewer_api) == 3.0
    services.rollups_backfill(since=T0 - timedelta(days=1), until=T0 + timedelta(days=1))
    assert lab_total(viewer_api) == 3.0
    assert computed == ["1h", "1h"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_registry_changes_make_every_answer_unreachable(viewer_api: APIClient, computed: list[str]) -> None:
    store([1, 2])
    assert lab_total(viewer_api) == 3.0
    assert lab_total(viewer_api) == 3.0
    assert len(computed) == 1
    services.room_update(room=Room.objects.get(name="lab"), display_name="Lab")
    assert lab_total(viewer_api) == 3.0
    assert len(computed) == 2

    by_sensor = f"sensors=e1&interval=1h&{SPAN}"
    assert lab_total(viewer_api, by_sensor) == 3.0
    services.sensor_delete(sensor=Sensor.objects.get(sensor_id="e1"))
    assert lab_total(viewer_api, by_sensor) == 0  # not the 3.0 cached before the deletion
    assert len(computed) == 4


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_without_redis_answers_are_computed(
    viewer_api: APIClient, computed: list[str], settings: Any, tmp_path: Any
) -> None:
    from energy_dashboard.core.redis import redis_client

    store([1, 2])
    settings.REDIS_URL = f"unix://{tmp_path}/none.sock"
    redis_client.cache_clear()
    try:
        assert lab_total(viewer_api) == 3.0
        assert lab_total(viewer_api) == 3.0
    finally:
        redis_client.cache_clear()
    assert computed == ["1h", "1h"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_a_ttl_of_zero_turns_the_cache_off(viewer_api: APIClient, computed: list[str], settings: Any) -> None:
    settings.ANALYTICS_CACHE_TTL_S = 0
    store([1, 2])
    lab_total(viewer_api)
    lab_total(viewer_api)
    assert computed == ["1h", "1h"]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_the_browsable_api_is_answered_as_before(viewer_api: APIClient) -> None:
    store([1, 2])
    page = viewer_api.get(f"/api/v1/analytics/energy?rooms=lab&interval=1h&{SPAN}", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"total_kwh" in page.content


@pytest.mark.usefixtures("lab")
def test_the_summary_is_reused_only_within_its_max_age_and_until_todays_data_changes(
    viewer_api: APIClient, monkeypatch: Any, settings: Any
) -> None:
    computed: list[datetime | None] = []
    real = analytics.analytics_summary

    def counting(now: datetime | None = None) -> dict[str, Any]:
        computed.append(now)
        return real(now)

    monkeypatch.setattr(analytics, "analytics_summary", counting)
    settings.ANALYTICS_SUMMARY_MAX_AGE_S = 3600  # one slot for the whole test
    first = viewer_api.get("/api/v1/analytics/summary")
    assert first.status_code == 200 and first["Content-Type"] == "application/json"
    assert viewer_api.get("/api/v1/analytics/summary").json() == first.json()
    assert len(computed) == 1
    store([2.5], start=timezone.now())  # today's aggregates change (now is always today)
    again = viewer_api.get("/api/v1/analytics/summary").json()
    assert len(computed) == 2
    assert again["energy_kwh"]["today"] == first.json()["energy_kwh"]["today"] + 2.5

    settings.ANALYTICS_SUMMARY_MAX_AGE_S = 0
    viewer_api.get("/api/v1/analytics/summary")
    viewer_api.get("/api/v1/analytics/summary")
    assert len(computed) == 4
