"""Each rule of sensors.rules on both ways in: an item (readings_ingest: the API, CSV files) and
a typed row (readings_import: meter files) with the same fault are refused for the same reason,
and a reading with two faults for the same one of them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from energy_dashboard.core.clock import iso_z
from sensors import rules, services
from sensors.models import Metric, Reading

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 3, 10, 8, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def meter() -> None:
    services.sensor_register(sensor_id="m1", kind="energy_meter")


def reasons(sensor_id: str, metric: str, moment: datetime, value: float) -> tuple[str, str]:
    """The reason each path gives for one reading: as an item, and as a typed row."""
    item = services.readings_ingest(
        readings=[{"sensor_id": sensor_id, "metric": metric, "timestamp": iso_z(moment), "value": value}]
    )
    row = services.readings_import(rows=[(sensor_id, metric, moment, value, False)])
    assert item["accepted"] == row["accepted"] == 0
    assert [r["index"] for r in item["rejected"]] == [r["index"] for r in row["rejected"]] == [0]
    assert not Reading.objects.exists()
    return item["rejected"][0]["reason"], row["rejected"][0]["reason"]


def test_an_unknown_sensor() -> None:
    assert reasons("ghost", "energy", T0, 1.0) == (rules.unknown_sensor("ghost"),) * 2
    assert rules.unknown_sensor("ghost") == "unknown sensor 'ghost'"


@pytest.mark.parametrize("metric", ["voltage", "", "Energy"])
def test_a_metric_outside_the_vocabulary(metric: str) -> None:
    reason = rules.unknown_metric(metric)
    assert reasons("m1", metric, T0, 1.0) == (reason, reason)
    # The vocabulary a client may name, the register included, on both paths.
    assert reason == f"metric {metric!r} is not one of {sorted([*Metric.values, 'energy_total'])}"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_finite(value: float) -> None:
    assert reasons("m1", "energy", T0, value) == (rules.NOT_FINITE, rules.NOT_FINITE)


def test_a_timestamp_in_the_future() -> None:
    moment = timezone.now() + rules.FUTURE_SKEW + timedelta(minutes=1)
    reason = rules.in_future(moment)
    assert reasons("m1", "energy", moment, 1.0) == (reason, reason)
    assert reason == f"timestamp {moment:%Y-%m-%dT%H:%M:%SZ} is in the future"


def test_a_timestamp_just_within_the_skew_is_taken_on_both_paths() -> None:
    moment = timezone.now() + rules.FUTURE_SKEW - timedelta(seconds=30)
    item = services.readings_ingest(
        readings=[{"sensor_id": "m1", "metric": "energy", "timestamp": iso_z(moment), "value": 1.0}]
    )
    row = services.readings_import(rows=[("m1", "energy", moment + timedelta(seconds=1), 1.0, False)])
    assert item["accepted"] == row["accepted"] == 1


@pytest.mark.parametrize("moment", [datetime(1970, 6, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)])
def test_a_timestamp_before_the_horizon(moment: datetime) -> None:
    assert reasons("m1", "energy", moment, 1.0) == (rules.BEFORE_EARLIEST, rules.BEFORE_EARLIEST)
    assert rules.BEFORE_EARLIEST == "timestamp is before 1971"


@pytest.mark.parametrize(("metric", "low", "high"), [(str(m), *bounds) for m, bounds in rules.RANGES.items()])
@pytest.mark.parametrize("side", ["below", "above"])
def test_a_value_outside_its_metrics_physical_range(metric: str, low: float, high: float, side: str) -> None:
    value = low - 1.0 if side == "below" else high * 2 + 1.0
    reason = rules.out_of_range(metric, value, low, high)
    assert reasons("m1", metric, T0, value) == (reason, reason)
    assert "is outside the physical range" in reason


@pytest.mark.parametrize(
    ("metric", "moment", "value", "expected"),
    [
        # The timestamp is checked before the range, the value's finiteness before the timestamp.
        ("energy", datetime(1970, 6, 1, tzinfo=UTC), -5.0, rules.BEFORE_EARLIEST),
        ("energy", datetime(1970, 6, 1, tzinfo=UTC), math.nan, rules.NOT_FINITE),
        ("voltage", datetime(1970, 6, 1, tzinfo=UTC), math.nan, rules.unknown_metric("voltage")),
    ],
)
def test_two_faults_give_the_same_first_reason_on_both_paths(
    metric: str, moment: datetime, value: float, expected: str
) -> None:
    assert reasons("m1", metric, moment, value) == (expected, expected)


def test_a_typed_row_carries_no_register() -> None:
    # An item's register becomes interval energy against the sensor's counter state; a parser
    # gives interval energy itself, so a register as a typed row is a mistake, and says so.
    row = services.readings_import(rows=[("m1", rules.COUNTER_METRIC, T0, 1.0, False)])
    assert row["rejected"] == [{"index": 0, "reason": rules.ROW_REGISTER}]
    item = services.readings_ingest(
        readings=[{"sensor_id": "m1", "metric": rules.COUNTER_METRIC, "timestamp": iso_z(T0), "value": 1.0}]
    )
    assert item == {"accepted": 1, "duplicates": 0, "conflicts": 0, "rejected": []}  # the first: a base
