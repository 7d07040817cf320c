"""readings_import: the bulk path for typed rows (meter files) keeps readings_ingest's guarantees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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
    assert (
        "unknown sensor" in reasons[1] and "physical range" in reasons[2] and "physical range" in reasons[3]
    )
    assert "future" in reasons[4] and "metric" in reasons[5]
