"""Room metrics leave the module as a bus topic: the aggregation job and a backfill announce each
touched room's newest window with `room_metrics`, after their commit, and call nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from energy_dashboard.core import events
from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import services

# The readings sit at a fixed November 2026 instant: the run's clock must be after it.
pytestmark = [pytest.mark.django_db(databases="__all__"), pytest.mark.clock(AFTER_FIXED_DATES)]

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # Lisbon is UTC+0 in November


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def heard() -> Iterator[list[dict[str, Any]]]:
    messages: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        messages.append(kwargs)

    events.room_metrics.connect(receiver, dispatch_uid="test-room-metrics")
    yield messages
    events.room_metrics.disconnect(dispatch_uid="test-room-metrics")


@pytest.fixture
def two_rooms(django_capture_on_commit_callbacks: Any) -> None:
    services.room_create(name="lab")
    services.room_create(name="office")
    services.sensor_register(sensor_id="lab-p", kind="power", room_name="lab")
    services.sensor_register(sensor_id="lab-c", kind="co2", room_name="lab")
    services.sensor_register(sensor_id="office-p", kind="power", room_name="office")
    points = [
        ("lab-p", "power", T0, 100.0),
        ("lab-p", "power", T0 + timedelta(minutes=6), 300.0),  # the lab's newest window
        ("lab-c", "co2", T0 + timedelta(minutes=7), 640.0),
        ("office-p", "power", T0 + timedelta(minutes=1), 50.0),
    ]
    with django_capture_on_commit_callbacks(using="sensors", execute=True):  # energy_data: not ours
        result = services.readings_ingest(
            readings=[
                {"sensor_id": sensor, "metric": metric, "timestamp": iso(at), "value": value}
                for sensor, metric, at, value in points
            ]
        )
    assert result["accepted"] == 4, result


def _aggregate() -> Any:
    return services.aggregates_compute()


def _backfill() -> Any:
    return services.rollups_backfill(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1))


@pytest.mark.usefixtures("two_rooms")
@pytest.mark.parametrize("job", [_aggregate, _backfill], ids=["aggregates_compute", "rollups_backfill"])
def test_each_touched_rooms_newest_window_is_announced_after_commit(
    job: Callable[[], Any], heard: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(using="sensors") as callbacks:
        job()
        assert heard == []  # nothing before the commit
    assert callbacks
    for callback in callbacks:
        callback()
    assert sorted(heard, key=lambda m: m["room"]) == [
        {
            "room": "lab",
            "bucket": "2026-11-02T10:05:00Z",
            "energy_kwh": None,
            "power_w": pytest.approx(300.0),
            "co2_ppm": pytest.approx(640.0),
            "temperature_c": None,
            "humidity_pct": None,
            "occupancy": None,
            "sensors_reporting": 2,
        },
        {
            "room": "office",
            "bucket": "2026-11-02T10:00:00Z",
            "energy_kwh": None,
            "power_w": pytest.approx(50.0),
            "co2_ppm": None,
            "temperature_c": None,
            "humidity_pct": None,
            "occupancy": None,
            "sensors_reporting": 1,
        },
    ]


@pytest.mark.usefixtures("two_rooms")
def test_nothing_is_announced_when_the_job_rolls_back(
    heard: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    from django.db import transaction

    def fails_after_the_job() -> None:
        with transaction.atomic(using="sensors"):
            services.aggregates_compute()
            raise RuntimeError("the caller's transaction fails")

    with django_capture_on_commit_callbacks(using="sensors", execute=True) as callbacks:
        with pytest.raises(RuntimeError, match="caller's transaction"):
            fails_after_the_job()
    assert callbacks == [] and heard == []


def test_only_each_rooms_newest_window_is_read(
    two_rooms: None, heard: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from sensors.models import Room
    from sensors.services.upkeep import _publish_latest_room_metrics

    _aggregate()
    heard.clear()
    pks = set(Room.objects.values_list("pk", flat=True))
    with CaptureQueriesContext(connections["sensors"]) as queries:
        with django_capture_on_commit_callbacks(using="sensors", execute=True):
            _publish_latest_room_metrics(pks)
    assert sorted(m["room"] for m in heard) == ["lab", "office"]
    # One bounded lookup per room, never a scan of every window.
    assert len(queries) == len(pks)
    assert all("LIMIT 1" in q["sql"] for q in queries.captured_queries)
