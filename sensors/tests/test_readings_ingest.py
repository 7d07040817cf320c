"""readings_ingest: validation, units, counters, duplicates, conflicts, one event per batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from energy_dashboard.core import events
from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import services
from sensors.models import Reading, Sensor

# The readings sit at fixed instants (T0): "now" must come after them, whatever --clock says.
pytestmark = [pytest.mark.django_db(databases="__all__"), pytest.mark.clock(AFTER_FIXED_DATES)]

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def sensors_in_lab() -> None:
    services.room_create(name="lab")
    services.sensor_register(sensor_id="p1", kind="power", room_name="lab")
    services.sensor_register(sensor_id="m1", kind="energy_meter", room_name="lab")
    services.sensor_register(sensor_id="t1", kind="temperature", room_name="lab")


def point(
    sensor: str = "p1", metric: str = "power", at: datetime = T0, value: Any = 100.0, **extra: Any
) -> dict[str, Any]:
    return {"sensor_id": sensor, "metric": metric, "timestamp": iso(at), "value": value, **extra}


def stored(sensor: str, metric: str) -> list[tuple[datetime, float]]:
    return list(
        Reading.objects.filter(sensor__sensor_id=sensor, metric=metric)
        .order_by("timestamp")
        .values_list("timestamp", "value")
    )


@pytest.mark.usefixtures("sensors_in_lab")
def test_new_points_are_accepted_and_stored() -> None:
    result = services.readings_ingest(readings=[point(at=T0), point(at=T0 + timedelta(minutes=1), value=120)])
    assert result == {"accepted": 2, "duplicates": 0, "conflicts": 0, "rejected": []}
    assert stored("p1", "power") == [(T0, 100.0), (T0 + timedelta(minutes=1), 120.0)]
    assert Sensor.objects.get(sensor_id="p1").last_seen == T0 + timedelta(minutes=1)


@pytest.mark.usefixtures("sensors_in_lab")
def test_same_batch_twice_adds_nothing_and_counts_duplicates() -> None:
    batch = [point(at=T0), point(at=T0 + timedelta(minutes=1))]
    services.readings_ingest(readings=batch)
    assert services.readings_ingest(readings=batch) == {
        "accepted": 0,
        "duplicates": 2,
        "conflicts": 0,
        "rejected": [],
    }
    assert Reading.objects.count() == 2


@pytest.mark.usefixtures("sensors_in_lab")
def test_conflicting_value_is_counted_and_the_stored_one_kept() -> None:
    services.readings_ingest(readings=[point(value=100)])
    result = services.readings_ingest(readings=[point(value=999), point(at=T0 + timedelta(minutes=5))])
    assert result["accepted"] == 1 and result["conflicts"] == 1 and result["duplicates"] == 0
    assert stored("p1", "power")[0] == (T0, 100.0)


@pytest.mark.usefixtures("sensors_in_lab")
def test_repeats_inside_one_batch() -> None:
    result = services.readings_ingest(readings=[point(value=1), point(value=1), point(value=2)])
    assert result == {"accepted": 1, "duplicates": 1, "conflicts": 1, "rejected": []}


@pytest.mark.usefixtures("sensors_in_lab")
@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (point(value=float("nan")), "finite number"),
        (point(value="12"), "finite number"),
        (point(value=True), "finite number"),
        (point(value=float("inf")), "finite number"),
        (point(value=None), "finite number"),
        (point(sensor="ghost"), "unknown sensor 'ghost'"),
        # Sensor ids that are not strings, or missing, whatever the other items name (the
        # ignores: wrong types on purpose).
        (point(sensor=["p1"]), "sensor_id is missing"),  # type: ignore[arg-type]
        (point(sensor=7), "sensor_id is missing"),  # type: ignore[arg-type]
        ({"metric": "power", "timestamp": iso(T0), "value": 1}, "sensor_id is missing"),
        (point(timestamp=["2026-11-02T10:00:00Z"]), "timestamp must be ISO 8601"),
        (point(metric="voltage"), "metric 'voltage' is not one of"),
        (
            {"sensor_id": "p1", "metric": "power", "timestamp": "2026-11-02T10:00:00", "value": 1},
            "no UTC offset",
        ),
        ({"sensor_id": "p1", "metric": "power", "timestamp": "yesterday", "value": 1}, "not ISO 8601"),
        # Made when the test runs: "now" at collection is not the test's now (--clock, clock marks).
        (lambda: point(at=timezone.now() + timedelta(hours=1)), "in the future"),
        (point(metric="temperature", sensor="t1", value=500), "outside the physical range"),
        (point(metric="humidity", value=101), "outside the physical range"),
        (point(unit="furlongs"), "unit 'furlongs' is not one of"),
        (point(quality="guessed"), "quality must be"),
        ("not an object", "must be an object"),
    ],
)
def test_bad_points_are_rejected_with_their_index_and_reason(item: Any, reason: str) -> None:
    item = item() if callable(item) else item
    result = services.readings_ingest(readings=[point(at=T0 - timedelta(minutes=1)), item])
    assert result["accepted"] == 1
    assert len(result["rejected"]) == 1
    assert result["rejected"][0]["index"] == 1
    assert reason in result["rejected"][0]["reason"]


@pytest.mark.usefixtures("sensors_in_lab")
@pytest.mark.parametrize(
    ("metric", "value", "unit", "expected"),
    [
        ("power", 1.5, "kW", 1500.0),
        ("power", 2, "MW", 2_000_000.0),
        ("energy", 2500, "Wh", 2.5),
        ("energy", 0.5, "MWh", 500.0),
        ("temperature", 212, "°F", 100.0),
        ("temperature", 273.15, "K", 0.0),
        ("temperature", 21.5, None, 21.5),
    ],
)
def test_units_are_converted_to_canonical(
    metric: str, value: float, unit: str | None, expected: float
) -> None:
    item = point(metric=metric, value=value) | ({"unit": unit} if unit else {})
    assert services.readings_ingest(readings=[item])["accepted"] == 1
    assert stored("p1", metric)[0][1] == pytest.approx(expected)


@pytest.mark.usefixtures("sensors_in_lab")
def test_epoch_timestamps_in_seconds_and_milliseconds() -> None:
    epoch = int(T0.timestamp())
    result = services.readings_ingest(
        readings=[
            {"sensor_id": "p1", "metric": "power", "timestamp": epoch, "value": 1},
            {"sensor_id": "p1", "metric": "power", "timestamp": (epoch + 60) * 1000, "value": 2},
        ]
    )
    assert result["accepted"] == 2
    assert [t for t, _ in stored("p1", "power")] == [T0, T0 + timedelta(minutes=1)]


@pytest.mark.usefixtures("sensors_in_lab")
def test_offsets_are_stored_in_utc() -> None:
    services.readings_ingest(
        readings=[
            {"sensor_id": "p1", "metric": "power", "timestamp": "2026-11-02T11:00:00+01:00", "value": 1}
        ]
    )
    assert stored("p1", "power") == [(T0, 1.0)]


@pytest.mark.usefixtures("sensors_in_lab")
def test_cumulative_counter_becomes_interval_energy_across_a_reset_and_a_rollover() -> None:
    def register(minutes: int, value: float) -> dict[str, Any]:
        return point(sensor="m1", metric="energy_total", at=T0 + timedelta(minutes=minutes), value=value)

    result = services.readings_ingest(
        readings=[
            register(0, 999_990.0),  # sets the base
            register(15, 999_995.0),  # +5
            register(30, 3.0),  # rollover at 1 000 000: +5 +3 = 8
            register(45, 4.0),  # +1
            register(60, 1.5),  # reset (not near the top): 1.5 since the reset
        ]
    )
    assert result["rejected"] == []
    assert result["accepted"] == 5
    assert [v for _, v in stored("m1", "energy")] == pytest.approx([5.0, 8.0, 1.0, 1.5])
    # Each step is labelled with the start of its interval: 0-15 min at 0, and so on.
    assert [t for t, _ in stored("m1", "energy")] == [T0 + timedelta(minutes=m) for m in (0, 15, 30, 45)]
    # The next batch continues from the stored register, and never goes negative.
    services.readings_ingest(readings=[register(75, 2.0)])
    assert [v for _, v in stored("m1", "energy")][-1] == pytest.approx(0.5)


@pytest.mark.usefixtures("sensors_in_lab")
def test_counter_spike_and_stale_register_are_rejected() -> None:
    base = point(sensor="m1", metric="energy_total", at=T0, value=100.0)
    spike = point(sensor="m1", metric="energy_total", at=T0 + timedelta(minutes=15), value=1e9)
    older = point(sensor="m1", metric="energy_total", at=T0 - timedelta(minutes=15), value=50.0)
    services.readings_ingest(readings=[base])
    result = services.readings_ingest(readings=[base, spike, older])
    assert result["duplicates"] == 1  # the base register value again
    assert [r["index"] for r in result["rejected"]] == [1, 2]

    assert "counter jumped" in result["rejected"][0]["reason"]
    assert "not newer" in result["rejected"][1]["reason"]
    assert stored("m1", "energy") == []


@pytest.mark.usefixtures("sensors_in_lab")
def test_energy_data_is_sent_once_per_batch_after_commit(django_capture_on_commit_callbacks: Any) -> None:
    batches: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        batches.append(kwargs)

    events.energy_data.connect(receiver, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True, using="sensors"):
            services.readings_ingest(
                readings=[point(at=T0 + timedelta(minutes=i)) for i in range(50)], source="test"
            )
        with django_capture_on_commit_callbacks(execute=True, using="sensors"):
            services.readings_ingest(readings=[point(at=T0)])  # nothing new: no event
    finally:
        events.energy_data.disconnect(dispatch_uid="t")
    assert len(batches) == 1
    assert batches[0]["source"] == "test"
    assert len(batches[0]["readings"]) == 50
    assert batches[0]["readings"][0] == {
        "sensor_id": "p1",
        "room": "lab",
        "metric": "power",
        "timestamp": "2026-11-02T10:00:00Z",
        "value": 100.0,
        "quality": "measured",
    }


@pytest.mark.usefixtures("sensors_in_lab")
def test_stale_sensor_recovers_when_data_returns(django_capture_on_commit_callbacks: Any) -> None:
    Sensor.objects.filter(sensor_id="p1").update(status="stale")
    heard: list[dict[str, Any]] = []
    events.sensor_events.connect(lambda sender, **kw: heard.append(kw), dispatch_uid="t", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True, using="sensors"):
            services.readings_ingest(readings=[point(at=timezone.now() - timedelta(seconds=5))])
    finally:
        events.sensor_events.disconnect(dispatch_uid="t")
    assert Sensor.objects.get(sensor_id="p1").status == "active"
    assert [(e["sensor_id"], e["event"]) for e in heard] == [("p1", "recovered")]


@pytest.mark.usefixtures("sensors_in_lab")
def test_estimated_quality_is_kept() -> None:
    services.readings_ingest(readings=[point(quality="estimated")])
    assert Reading.objects.get().estimated is True


@pytest.mark.usefixtures("sensors_in_lab")
def test_batches_inside_one_outer_transaction_do_not_see_each_other_staged_rows() -> None:
    from django.db import transaction

    from sensors.models import DirtyBucket

    with transaction.atomic(using="sensors"):
        first = services.readings_ingest(readings=[point(at=T0)])
        second = services.readings_ingest(readings=[point(at=T0 + timedelta(hours=1))])
    assert (first["accepted"], second["accepted"], second["duplicates"]) == (1, 1, 0)
    # One mark per batch's window, not the first batch's again.
    assert DirtyBucket.objects.count() == 2


@pytest.mark.usefixtures("sensors_in_lab")
def test_sensor_ids_are_looked_up_whatever_their_characters() -> None:
    # Registered by a service (no slug check): quotes, commas, braces, a backslash, a space.
    odd = 'odd "id",{x}\\ y'
    services.sensor_register(sensor_id=odd, kind="power")
    result = services.readings_ingest(
        readings=[point(sensor=odd), point(sensor="p1"), point(sensor="nul\x00id"), point(sensor="ghost")]
    )
    assert result["accepted"] == 2
    assert result["rejected"] == [
        {"index": 2, "reason": "unknown sensor 'nul\\x00id'"},
        {"index": 3, "reason": "unknown sensor 'ghost'"},
    ]
    assert stored(odd, "power") == [(T0, 100.0)]


@pytest.mark.usefixtures("sensors_in_lab")
@pytest.mark.parametrize(
    ("item", "reason"),
    [
        # Valid ISO 8601 whose UTC instant is outside Python's datetime range.
        (point(timestamp="0001-01-01T00:00:00+14:00"), "out of range"),
        (point(timestamp="9999-12-31T23:59:59-12:00"), "out of range"),
        (point(timestamp="0001-01-01T00:00:00Z"), "before 1971"),
        (point(timestamp=10**400), "out of range"),
        (point(timestamp=-(10**30)), "out of range"),
        (point(timestamp=1e300), "out of range"),
        (point(timestamp=-1.0), "before 1971"),
        (point(value=10**400), "finite number"),
        (point(value=-(10**400)), "finite number"),
        (point(metric="energy_total", sensor="m1", value=10**400), "finite number"),
        (point(metric="energy_total", sensor="m1", value=1.5e308), "register"),
        (point(metric="energy_total", sensor="m1", value=1e308, unit="MWh"), "register"),
        (point(metric="power", value=1e308, unit="MW"), "outside the physical range"),
    ],
)
def test_extreme_points_are_rejected_like_any_other(item: Any, reason: str) -> None:
    result = services.readings_ingest(readings=[point(at=T0 - timedelta(minutes=1)), item])
    assert result["accepted"] == 1
    assert [r["index"] for r in result["rejected"]] == [1]
    assert reason in result["rejected"][0]["reason"], result["rejected"][0]["reason"]


@pytest.mark.usefixtures("sensors_in_lab")
def test_a_huge_register_is_rejected_and_the_counter_goes_on() -> None:
    def register(minutes: int, value: float) -> dict[str, Any]:
        return point(sensor="m1", metric="energy_total", at=T0 + timedelta(minutes=minutes), value=value)

    first = services.readings_ingest(readings=[register(0, 1.5e308)])
    assert first["accepted"] == 0 and "register" in first["rejected"][0]["reason"]
    assert services.readings_ingest(readings=[register(15, 1)])["accepted"] == 1  # the base
    assert services.readings_ingest(readings=[register(30, 3)])["accepted"] == 1
    assert stored("m1", "energy") == [(T0 + timedelta(minutes=15), 2.0)]


@pytest.mark.usefixtures("sensors_in_lab")
@pytest.mark.parametrize("bad", [1.5e308, float("inf"), -5.0])
def test_a_stored_register_out_of_bounds_is_rebased(bad: float) -> None:
    # A counter state no arithmetic can continue from, as an old row could hold.
    from sensors.models import CounterState

    m1 = Sensor.objects.get(sensor_id="m1")
    CounterState.objects.create(sensor=m1, timestamp=T0, value=bad)
    register = point(sensor="m1", metric="energy_total", at=T0 + timedelta(minutes=15), value=1)
    result = services.readings_ingest(readings=[register])
    assert result == {"accepted": 1, "duplicates": 0, "conflicts": 0, "rejected": []}
    later = point(sensor="m1", metric="energy_total", at=T0 + timedelta(minutes=30), value=4)
    assert services.readings_ingest(readings=[later])["accepted"] == 1
    assert stored("m1", "energy") == [(T0 + timedelta(minutes=15), 3.0)]


@pytest.mark.usefixtures("sensors_in_lab")
def test_a_register_step_past_the_energy_range_is_rejected_and_rebased() -> None:
    # 100 days of silence, then 2 GWh more: within the spike bound (100 MW), but one interval
    # reading past the energy range (1e6 kWh) that every reading is held to.
    def register(at: datetime, value: float) -> dict[str, Any]:
        return point(sensor="m1", metric="energy_total", at=at, value=value)

    services.readings_ingest(readings=[register(T0 - timedelta(days=100), 0.0)])
    result = services.readings_ingest(
        readings=[register(T0, 2e6), register(T0 + timedelta(hours=1), 2e6 + 5)]
    )
    assert [r["index"] for r in result["rejected"]] == [0]
    assert "past the energy range" in result["rejected"][0]["reason"]
    assert stored("m1", "energy") == [(T0, 5.0)]
