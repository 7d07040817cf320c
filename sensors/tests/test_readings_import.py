"""readings_import: the bulk path for typed rows (meter files) keeps readings_ingest's guarantees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections

from energy_dashboard.core import events
from sensors import services
from sensors.models import DirtyBucket, Reading, Sensor

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 3, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def meter() -> None:
    services.sensor_register(sensor_id="m1", kind="energy_meter")


def rows(n: int, base: float = 1.0) -> list[tuple[str, str, datetime, float, bool]]:
    return [("m1", "energy", T0 + timedelta(minutes=15 * i), base + i / 100, i % 2 == 0) for i in range(n)]


def test_new_rows_are_stored_marked_dirty_and_touch_the_sensor() -> None:
    result = services.readings_import(rows=rows(8))
    assert result == {"accepted": 8, "duplicates": 0, "conflicts": 0, "rejected": []}
    stored = list(Reading.objects.order_by("timestamp").values_list("timestamp", "value", "estimated"))
    assert stored[0] == (T0, 1.0, True) and stored[1] == (T0 + timedelta(minutes=15), 1.01, False)
    assert DirtyBucket.objects.filter(metric="energy").exists()
    assert Sensor.objects.get(sensor_id="m1").last_seen == T0 + timedelta(minutes=15 * 7)


def test_again_and_overlapping_rows_are_duplicates_and_conflicts_are_counted() -> None:
    services.readings_import(rows=rows(4))
    assert services.readings_import(rows=rows(6)) == {
        "accepted": 2,
        "duplicates": 4,
        "conflicts": 0,
        "rejected": [],
    }
    changed = services.readings_import(rows=rows(2, base=9.0))
    assert (changed["accepted"], changed["conflicts"]) == (0, 2)
    assert Reading.objects.get(timestamp=T0).value == 1.0  # the stored value is kept
    repeated = services.readings_import(rows=[*rows(1), *rows(1)])
    assert repeated["duplicates"] == 2


def test_bad_rows_are_refused_with_their_index_and_reason() -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    result = services.readings_import(
        rows=[
            ("m1", "energy", T0, 1.0, False),
            ("nope", "energy", T0, 1.0, False),
            ("m1", "energy", T0 + timedelta(minutes=15), float("nan"), False),
            ("m1", "energy", T0 + timedelta(minutes=30), -5.0, False),
            ("m1", "energy", future, 1.0, False),
            ("m1", "energy_total", T0, 1.0, False),
        ]
    )
    assert result["accepted"] == 1
    reasons = {r["index"]: r["reason"] for r in result["rejected"]}
    assert set(reasons) == {1, 2, 3, 4, 5}
    # NaN is refused as the item path refuses it (it said "physical range" here before; see
    # test_rules_on_both_paths.py for each rule on both paths).
    assert reasons[1] == "unknown sensor 'nope'" and reasons[2] == "value must be a finite number"
    assert "physical range" in reasons[3] and "future" in reasons[4]
    assert reasons[5] == "metric 'energy_total' is a register: a typed row carries interval 'energy'"


def test_meters_are_registered_once_each_in_one_statement_with_their_events(
    django_capture_on_commit_callbacks: Any, django_assert_max_num_queries: Any
) -> None:
    services.meters_for_external_ids(external_ids=["PT0001"])
    heard: list[dict[str, Any]] = []
    events.sensor_events.connect(lambda sender, **kw: heard.append(kw), dispatch_uid="t", weak=False)
    cpes = [f"PT{n:04d}" for n in range(1, 601)]
    try:
        with (
            django_capture_on_commit_callbacks(execute=True, using="sensors"),
            # Known ones, two INSERTs of 500 and 99, the new ones read back; savepoint and
            # release on PostgreSQL: not a query per meter.
            django_assert_max_num_queries(8, connection=connections["sensors"]),
        ):
            meters = services.meters_for_external_ids(external_ids=[*cpes, "PT0002"])
    finally:
        events.sensor_events.disconnect(dispatch_uid="t")
    assert meters == {cpe: f"cpe-{cpe.lower()}" for cpe in cpes}
    assert sorted(e["sensor_id"] for e in heard) == sorted(f"cpe-{cpe.lower()}" for cpe in cpes[1:])
    assert {(e["event"], e["status"], e["room"]) for e in heard} == {("registered", "active", None)}
    meter = Sensor.objects.get(external_id="PT0600")
    assert (meter.kind, meter.name, meter.expected_interval_s, meter.room_id) == (
        "energy_meter",
        "Meter PT0600",
        900,
        None,
    )
    assert meter.metadata == {"registered_by": "ingestion"} and meter.created_at is not None
    assert Sensor.objects.filter(external_id__in=cpes).count() == 600


def test_a_meter_whose_id_is_taken_by_another_sensor_is_an_error() -> None:
    services.sensor_register(sensor_id="cpe-pt9", kind="power", external_id="OTHER")
    with pytest.raises(ValueError, match="cpe-pt9 already exists with external id 'OTHER', not 'PT9'"):
        services.meters_for_external_ids(external_ids=["PT9"])
    assert not Sensor.objects.filter(external_id="PT9").exists()
