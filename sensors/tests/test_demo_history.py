"""The demo's history grid, its meters' sums and the live simulator's rule of never writing at
or before a sensor's newest reading (energy_dashboard/tests/test_demo.py loads the whole demo)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from energy_dashboard.core.clock import building_tz
from sensors import services
from sensors.models import Reading, Sensor
from sensors.services.demo import (
    DEMO_METER_PARENTS,
    FIVE_MINUTE_DAYS,
    FLOOR_1_METER,
    MAIN_METER,
    QUARTER_HOUR_DAYS,
    _Building,
    demo_sensors,
    history_instants,
    history_start,
)


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 12, 4, 18, 7, 31, tzinfo=UTC),
        datetime(2026, 10, 25, 22, 59, tzinfo=UTC),  # 23:59 on the 25-hour day, Lisbon
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # the spring-forward day
        datetime(2027, 1, 31, 23, 59, tzinfo=UTC),
    ],
)
def test_history_grid_is_contiguous_and_finer_towards_now(now: datetime) -> None:
    instants = list(history_instants(now))
    start = history_start(now).astimezone(building_tz())
    # From local midnight on the first of the month 13 months before.
    months_back = (now.astimezone(building_tz()).year - start.year) * 12 + (
        now.astimezone(building_tz()).month - start.month
    )
    assert months_back == 13
    assert (start.day, start.hour, start.minute) == (1, 0, 0)
    assert instants[0][0] == history_start(now)
    # Each reading's interval ends where the next starts (energy is per interval).
    for (moment, step), (following, _) in itertools.pairwise(instants):
        assert following - moment == timedelta(seconds=step)
    last, last_step = instants[-1]
    assert last < now <= last + timedelta(seconds=last_step)
    steps = {step: [m for m, s in instants if s == step] for step in (3600, 900, 300)}
    assert max(steps[3600]) < min(steps[900]) and max(steps[900]) < min(steps[300])
    assert min(steps[900]) >= now - timedelta(days=QUARTER_HOUR_DAYS, hours=1)
    assert min(steps[300]) >= now - timedelta(days=FIVE_MINUTE_DAYS, hours=1)
    assert len(steps[300]) >= FIVE_MINUTE_DAYS * 288


@pytest.mark.django_db(databases="__all__")
def test_each_meter_measures_its_sub_meters_and_a_load_of_its_own() -> None:
    services.demo_load()
    parents = dict(
        Sensor.objects.filter(part_of__isnull=False).values_list("sensor_id", "part_of__sensor_id")
    )
    assert parents == DEMO_METER_PARENTS
    building = _Building(demo_sensors())
    for moment in (datetime(2026, 11, 4, 11, tzinfo=UTC), datetime(2026, 11, 4, 3, tzinfo=UTC)):
        values = building.values(moment, 900, random.Random(1), {})
        kwh = {sensor_id: value for sensor_id, (metric, value) in values.items() if metric == "energy"}
        floor = kwh["office-101-energy-meter"] + kwh["office-102-energy-meter"]
        assert kwh[FLOOR_1_METER.sensor_id] > floor
        children = [c for c, p in DEMO_METER_PARENTS.items() if p == MAIN_METER.sensor_id]
        assert kwh[MAIN_METER.sensor_id] > sum(kwh[c] for c in children)
    # A shed device's metered power drops by what it sheds.
    moment = datetime(2026, 11, 4, 11, tzinfo=UTC)
    plain = building.values(moment, 900, random.Random(1), {})["lobby-power"][1]
    shed = building.values(moment, 900, random.Random(1), {"lobby-power": 1000.0})["lobby-power"][1]
    assert shed == pytest.approx(plain - 1000.0)


@pytest.mark.django_db(databases="__all__")
def test_the_simulator_writes_nothing_at_or_before_a_sensors_newest_reading() -> None:
    services.demo_load()
    now = timezone.now().replace(microsecond=0)
    first = services.simulate(start=now - timedelta(hours=1), end=now, step_s=300)
    assert first["batches"] == 12
    # The demo's meters are simulated too, not only the sensors in rooms.
    assert Reading.objects.filter(sensor__sensor_id=MAIN_METER.sensor_id).count() == 12
    count = Reading.objects.count()
    # The same hour again, and an overlapping one at another step: nothing is added (a second
    # series of interval energies would count the energy twice).
    assert services.simulate(start=now - timedelta(hours=1), end=now, step_s=300)["batches"] == 0
    newest = now - timedelta(seconds=300)
    assert (
        services.simulate(start=now - timedelta(minutes=30), end=newest + timedelta(seconds=1), step_s=10)[
            "batches"
        ]
        == 0
    )
    assert Reading.objects.count() == count
    # Later instants are written as before.
    later = services.simulate(start=now, end=now + timedelta(seconds=1), step_s=10)
    assert later["batches"] == 1 and later["accepted"] == Sensor.objects.count()
