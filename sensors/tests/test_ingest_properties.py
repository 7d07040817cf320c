"""Properties of the readings validator under extreme input (Hypothesis): whatever a client
sends, every item is accepted or rejected with a reason, nothing raises, and what is accepted
is finite, within its metric's range and within the product's horizon."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.utils import timezone as dj_timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from energy_dashboard.core.limits import EARLIEST
from sensors import rules, services
from sensors.models import CounterState, Metric, Reading, Sensor
from sensors.rules import COUNTER_MAX_KWH, COUNTER_METRIC, FUTURE_SKEW, RANGES, UNITS, PointError
from sensors.storage import SensorRef

# Bounded: a few seconds for the whole file.
FAST = settings(max_examples=400, deadline=None, database=None)
SLOW = settings(
    max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

SENSOR_IDS = ["p1", "ß-Ω-1", "传感器", "e\u0301", "m1"]
SENSORS = {
    sensor_id: SensorRef(pk, sensor_id, "active", None, 300, None, None)
    for pk, sensor_id in enumerate(SENSOR_IDS, 1)
}

EXTREME_NUMBERS = [
    1e308, -1e308, 1.5e308, 1.7976931348623157e308, 5e-324, -5e-324, 1e-300, 0.0, -0.0,
    2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**400, -(10**400), float("nan"), float("inf"), float("-inf"),
]  # fmt: skip
# Each field is often valid, so that items get past the early checks to the later ones.
numbers = st.one_of(
    st.floats(min_value=-100.0, max_value=2000.0),
    st.integers(min_value=0, max_value=1000),
    st.sampled_from(EXTREME_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.one_of(st.booleans(), st.none(), st.lists(st.integers(), max_size=2)),
    st.sampled_from(["NaN", "inf", "-Infinity", "1e400", "12", "", "0x10"]),
)
offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
).map(lambda d: timezone(timedelta(minutes=round(d.total_seconds() / 60))))


def iso_between(low: datetime, high: datetime) -> st.SearchStrategy[str]:
    """ISO 8601 instants with any offset, their wall clock between `low` and `high`."""
    return st.builds(
        lambda moment, tz: moment.replace(tzinfo=tz).isoformat(),
        st.datetimes(min_value=low, max_value=high),
        offsets,
    )


timestamps = st.one_of(
    iso_between(datetime(1971, 1, 2), datetime(2026, 1, 1)),
    st.integers(min_value=31_600_000, max_value=1_760_000_000),  # epoch seconds, 1971-2025
    st.integers(min_value=31_600_000_000, max_value=1_760_000_000_000),  # epoch milliseconds
    iso_between(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-12:00",
            "0001-01-01T00:00:00+23:59",
            "1970-12-31T23:59:59Z",
        ]
    ),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
        datetime.isoformat
    ),  # naive
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**400, -(10**400), True, None, [], {}]),
    st.text(max_size=30),
)
valid_metrics = st.sampled_from([*Metric.values, COUNTER_METRIC])
metrics = st.one_of(valid_metrics, valid_metrics, st.text(max_size=10))
units = st.one_of(
    st.none(),
    st.sampled_from(
        sorted({unit for accepted in UNITS.values() for unit in accepted} | {"KWH", " W ", "°F"})
    ),
    st.text(max_size=6),
    st.integers(),
)
known_sensors = st.sampled_from(SENSOR_IDS)
items = st.one_of(
    st.fixed_dictionaries(
        {
            "sensor_id": st.one_of(
                known_sensors, known_sensors, st.text(max_size=8), st.integers(), st.none()
            ),
            "metric": metrics,
            "timestamp": timestamps,
            "value": numbers,
        },
        optional={
            "unit": units,
            "quality": st.one_of(st.sampled_from(["measured", "estimated"]), st.text(max_size=5), st.none()),
        },
    ),
    st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
)


def assert_within_horizon(moment: datetime, now: datetime) -> None:
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert EARLIEST <= moment <= now + FUTURE_SKEW


def item(**fields: Any) -> dict[str, Any]:
    return {"sensor_id": "p1", "metric": "power", "timestamp": "2025-01-01T00:00:00Z", "value": 1.0, **fields}


@FAST
@given(batch=st.lists(items, max_size=12))
# The faults found by hand (issue 12), always tried.
@example(batch=[item(timestamp="0001-01-01T00:00:00+14:00"), item(timestamp="9999-12-31T23:59:59-12:00")])
@example(batch=[item(value=10**400), item(timestamp=10**400), item(metric="energy_total", value=1.5e308)])
@example(batch=[item(metric="energy_total", sensor_id="m1", value=1e308, unit="MWh")])
def test_every_item_is_accepted_or_rejected_with_a_reason(batch: list[Any]) -> None:
    now = dj_timezone.now()
    result = rules.validate(batch, SENSORS)
    indexes = (
        [p[0] for p in result.points]
        + [p[0] for p in result.counters]
        + [r["index"] for r in result.rejected]
    )
    assert sorted(indexes) == list(range(len(batch)))
    for rejection in result.rejected:
        assert isinstance(rejection["reason"], str) and rejection["reason"]
    pks = {ref.pk for ref in SENSORS.values()}
    for index, pk, metric, moment, value, estimated in result.points:
        assert pk in pks and isinstance(estimated, bool)
        assert type(value) is float and math.isfinite(value)
        low, high = RANGES[metric]
        assert low <= value <= high
        assert_within_horizon(moment, now)
        assert batch[index]["metric"] == metric
    for _, pk, metric, moment, value, _ in result.counters:
        assert metric == Metric.ENERGY and pk in pks
        assert type(value) is float and math.isfinite(value) and 0 <= value <= COUNTER_MAX_KWH
        assert_within_horizon(moment, now)


@FAST
@given(raw=timestamps)
@example(raw="0001-01-01T00:00:00+14:00")
@example(raw=10**400)
def test_a_timestamp_is_an_instant_within_the_horizon_or_a_point_error(raw: Any) -> None:
    now = dj_timezone.now()
    try:
        moment = rules.parse_timestamp(raw, now)
    except PointError as exc:
        reason = str(exc)
    else:
        assert_within_horizon(moment, now)
        return
    assert reason


@FAST
@given(
    metric=st.sampled_from(sorted(UNITS)),
    value=st.floats(allow_nan=False, allow_infinity=False),
    unit=units,
)
def test_convert_gives_a_float_or_a_point_error(metric: str, value: float, unit: Any) -> None:
    if unit is not None and not isinstance(unit, str):
        return  # validate refuses a unit that is not a string before converting
    try:
        converted = rules.convert(metric, value, unit)
    except PointError as exc:
        reason = str(exc)
    else:
        # A finite value may overflow to infinity through a factor: validate's range check
        # refuses it.
        assert isinstance(converted, float) and not math.isnan(converted)
        return
    assert reason


# --- Counters, against the database -------------------------------------------------------

registers = st.one_of(
    st.floats(min_value=0, max_value=COUNTER_MAX_KWH),
    st.sampled_from(
        [0.0, 999_999.9, 1_000_000.0, COUNTER_MAX_KWH, 1.5e308, 5e-324, 10**400, -1.0, float("inf")]
    ),
)


@pytest.mark.django_db(databases="__all__")
@SLOW
@given(
    steps=st.lists(st.tuples(st.integers(min_value=1, max_value=10**6), registers), min_size=1, max_size=6)
)
def test_registers_become_bounded_interval_energy(steps: list[tuple[int, Any]]) -> None:
    sensor, _ = Sensor.objects.get_or_create(sensor_id="m1", defaults={"kind": "energy_meter"})
    CounterState.objects.filter(sensor=sensor).delete()
    Reading.objects.filter(sensor=sensor).delete()
    base = datetime(2020, 1, 1, tzinfo=UTC)
    batch, minutes = [], 0
    for gap, value in steps:
        minutes += gap
        at = base + timedelta(minutes=minutes)
        batch.append(
            {"sensor_id": "m1", "metric": COUNTER_METRIC, "timestamp": at.isoformat(), "value": value}
        )
    result = services.readings_ingest(readings=batch)
    assert result["accepted"] + result["duplicates"] + len(result["rejected"]) == len(batch)
    for value, moment in Reading.objects.filter(sensor=sensor).values_list("value", "timestamp"):
        low, high = RANGES[Metric.ENERGY]
        assert math.isfinite(value) and low <= value <= high
        assert moment >= EARLIEST
    state = CounterState.objects.filter(sensor=sensor).first()
    if state is not None:
        assert math.isfinite(state.value) and 0 <= state.value <= COUNTER_MAX_KWH
    # And the counter goes on from whatever it holds: one more, later, sane value is taken.
    later = base + timedelta(minutes=minutes + 60)
    again = services.readings_ingest(
        readings=[{"sensor_id": "m1", "metric": COUNTER_METRIC, "timestamp": later.isoformat(), "value": 1.0}]
    )
    assert again["accepted"] + len(again["rejected"]) == 1
    assert all("jumped" in r["reason"] or "range" in r["reason"] for r in again["rejected"])
