"""The demo building and its synthetic readings: rooms, sensors and meters to start from, a
history deep enough for every comparison the pages offer, and live readings, all through the
same paths as any client's (`readings_import` for history, `readings_ingest` live, the rollup
code for the aggregates)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from energy_dashboard.core.clock import building_tz
from sensors import simulation
from sensors.analytics import default_metric
from sensors.models import Metric, Reading, Room, Sensor
from sensors.rules import TypedRow
from sensors.services.readings import readings_import, readings_ingest
from sensors.services.registry import room_create, sensor_register, sensor_update
from sensors.services.upkeep import aggregates_compute, planner_statistics_refresh

DB = "sensors"

# The demo building: rooms with their sensors, each room with the same five kinds.
DEMO_ROOMS: list[tuple[str, str, str, float, int]] = [
    ("lobby", "Lobby", "0", 120.0, 40),
    ("office-101", "Office 101", "1", 45.0, 8),
    ("office-102", "Office 102", "1", 45.0, 8),
    ("meeting-201", "Meeting room 201", "2", 30.0, 12),
    ("server-room", "Server room", "-1", 20.0, 2),
]
DEMO_KINDS = [
    Sensor.Kind.ENERGY_METER,
    Sensor.Kind.POWER,
    Sensor.Kind.CO2,
    Sensor.Kind.TEMPERATURE,
    Sensor.Kind.HUMIDITY,
]


@dataclass(frozen=True)
class DemoMeter:
    """A meter of the building's own distribution, in no room: it measures its sub-meters'
    rooms and a load of its own that no sub-meter sees (corridors, lifts, the plant)."""

    sensor_id: str
    name: str
    # Its own unmetered load: base W, plus W at full occupancy of the building.
    own_base_w: float
    own_busy_w: float


MAIN_METER = DemoMeter("building-main-meter", "Building main meter", 2500.0, 3000.0)
FLOOR_1_METER = DemoMeter("floor-1-meter", "Floor 1 sub-meter", 300.0, 500.0)
DEMO_METERS = (MAIN_METER, FLOOR_1_METER)
# Which meter each meter is part of (sub-meter -> its parent): floor 1's offices behind the
# floor's sub-meter, the other rooms and the floor straight behind the main meter.
DEMO_METER_PARENTS: dict[str, str] = {
    FLOOR_1_METER.sensor_id: MAIN_METER.sensor_id,
    "office-101-energy-meter": FLOOR_1_METER.sensor_id,
    "office-102-energy-meter": FLOOR_1_METER.sensor_id,
    "lobby-energy-meter": MAIN_METER.sensor_id,
    "meeting-201-energy-meter": MAIN_METER.sensor_id,
    "server-room-energy-meter": MAIN_METER.sensor_id,
}

# The history's resolution by age: 5-minute readings for the last days (the live charts, a
# day's detail), quarter hours for the weeks a demand-response baseline looks back on (ten
# weekdays of quarter-hour load, docs/dr-baselines.md), hours before that, back to the start of
# the month 13 months ago (this month against the same month last year).
FIVE_MINUTE_DAYS = 2
QUARTER_HOUR_DAYS = 22
HISTORY_MONTHS = 13
# The comfort sensors (CO2, temperature, humidity) need no year: a month of history fills the
# room page's month view, and costs a third of the year's readings less.
COMFORT_HISTORY_DAYS = 35
# Rows per readings_import call: big enough that the per-call cost vanishes, small enough that
# no call holds more than a few seconds of work.
IMPORT_BATCH = 50_000


def demo_sensor_id(room: str, kind: str) -> str:
    """The sensor_id of a room's sensor of a kind (``office-101-power``)."""
    return f"{room}-{kind.replace('_', '-')}"


def demo_load() -> dict[str, int]:
    """Create the demo building's rooms, sensors and meters, with the meters' hierarchy
    (idempotent); returns what exists."""
    with transaction.atomic(using=DB):
        # The meters first: a sub-meter names the meter it is part of when it is registered.
        for meter in DEMO_METERS:
            sensor_register(
                sensor_id=meter.sensor_id,
                kind=Sensor.Kind.ENERGY_METER,
                name=meter.name,
                expected_interval_s=60,
                part_of=DEMO_METER_PARENTS.get(meter.sensor_id),
            )
        for name, display, floor, area, capacity in DEMO_ROOMS:
            room_create(name=name, display_name=display, floor=floor, area_m2=area, capacity=capacity)
            for kind in DEMO_KINDS:
                sensor_id = demo_sensor_id(name, kind.value)
                sensor_register(
                    sensor_id=sensor_id,
                    kind=kind.value,
                    name=f"{display} {kind.label.lower()}",
                    room_name=name,
                    expected_interval_s=60,
                    part_of=DEMO_METER_PARENTS.get(sensor_id),
                )
        # A demo building made before the hierarchy gets it (a meter already placed stays).
        for sensor in Sensor.objects.filter(sensor_id__in=list(DEMO_METER_PARENTS), part_of__isnull=True):
            sensor_update(sensor=sensor, part_of=DEMO_METER_PARENTS[sensor.sensor_id])
    return {"rooms": Room.objects.count(), "sensors": Sensor.objects.count()}


def history_start(now: datetime) -> datetime:
    """Where the demo's history starts: local midnight of the first day of the month
    HISTORY_MONTHS before `now`'s."""
    local = now.astimezone(building_tz())
    months = local.year * 12 + local.month - 1 - HISTORY_MONTHS
    first = datetime.combine(local.date().replace(year=months // 12, month=months % 12 + 1, day=1), time.min)
    return first.replace(tzinfo=building_tz()).astimezone(UTC)


_TICK = timedelta(microseconds=1)


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def history_instants(now: datetime) -> Iterator[tuple[datetime, int]]:
    """(instant, step in seconds) of the demo's history, oldest first, up to `now` (excluded).

    The tiers' boundaries are whole UTC hours, so each reading's interval ends where the next
    one starts (an energy reading is the kWh of its interval: no gap, no overlap).
    """
    quarter_from = _floor_hour(now - timedelta(days=QUARTER_HOUR_DAYS))
    five_from = _floor_hour(now - timedelta(days=FIVE_MINUTE_DAYS))
    moment = history_start(now)
    while moment < now:
        step = 300 if moment >= five_from else 900 if moment >= quarter_from else 3600
        yield moment, step
        moment += timedelta(seconds=step)


def _children_of(meter_id: str) -> list[str]:
    return [child for child, parent in DEMO_METER_PARENTS.items() if parent == meter_id]


class _Building:
    """The demo's sensors, and their values at one instant: each room sensor as the simulator
    makes it (`sensors.simulation.value_for`), each meter the sum of what it meters."""

    def __init__(self, sensors: Sequence[Sensor]) -> None:
        self.sensors = list(sensors)
        by_id = {s.sensor_id: s for s in self.sensors}
        self.meters = [m for m in DEMO_METERS if m.sensor_id in by_id]
        # Children before parents: a parent's value sums its children's.
        self.meters.sort(key=lambda m: m.sensor_id != FLOOR_1_METER.sensor_id)
        self.children = {meter.sensor_id: _children_of(meter.sensor_id) for meter in self.meters}
        self.plain = [s for s in self.sensors if s.sensor_id not in self.children]

    def values(
        self,
        moment: datetime,
        step_s: float,
        rng: random.Random,
        shed_w: Mapping[str, float],
        only: set[str] | None = None,
    ) -> dict[str, tuple[str, float]]:
        """sensor_id -> (metric, value) at `moment` of every sensor, or of those in `only` (and
        what their meters sum); `shed_w` is taken off those sensors' power (a demand-response
        event's devices obeying their shed commands)."""
        local = moment.astimezone(building_tz())
        wanted = (
            None
            if only is None
            else only | {c for m in only & self.children.keys() for c in self.children[m]}
        )
        out: dict[str, tuple[str, float]] = {}
        for sensor in self.plain:
            if wanted is not None and sensor.sensor_id not in wanted:
                continue
            metric = default_metric[sensor.kind]
            value = simulation.value_for(sensor, metric, moment, step_s, rng, local=local)
            if metric == Metric.POWER and sensor.sensor_id in shed_w:
                value = max(0.0, value - shed_w[sensor.sensor_id])
            out[sensor.sensor_id] = (metric, round(value, 4))
        busy = simulation.building_occupancy(moment, local)
        for meter in self.meters:
            if wanted is not None and meter.sensor_id not in wanted:
                continue
            own_kwh = (meter.own_base_w + meter.own_busy_w * busy) * step_s / 3_600_000.0
            metered = sum(out[child][1] for child in self.children[meter.sensor_id] if child in out)
            out[meter.sensor_id] = (Metric.ENERGY, round(metered + own_kwh, 4))
        return out


def demo_sensors() -> list[Sensor]:
    """The demo building's sensors that exist (an operator may have deleted some)."""
    wanted = [demo_sensor_id(room, kind.value) for room, *_ in DEMO_ROOMS for kind in DEMO_KINDS]
    wanted += [meter.sensor_id for meter in DEMO_METERS]
    return list(Sensor.objects.select_related("room").filter(sensor_id__in=wanted))


def demo_history(
    *, now: datetime | None = None, until: datetime | None = None, shed_w: Mapping[str, float] | None = None
) -> dict[str, int]:
    """Write the demo building's history up to `until` (default `now`), then bring the rollups
    and room metrics up to date with the scheduler's job (`aggregates_compute`); idempotent.

    Each sensor gets readings only outside the span it already has readings in (before its
    first, after its last): a second run writes only what time added, a building that had a
    day of simulated readings gets the year before it, and nothing is counted twice. The
    instants are those of `history_instants(now)`, so calls with successive `until`s continue
    one grid (a demand-response event's window can be written apart, with `shed_w`).
    """
    now = now or timezone.now()
    until = min(until or now, now)
    building = _Building(demo_sensors())
    if not building.sensors:
        return {"readings": 0, "days": 0}
    spans = {
        pk: (first, last)
        for pk, first, last in Reading.objects.filter(sensor__in=building.sensors)
        .values("sensor_id")
        .annotate(first=Min("timestamp"), last=Max("timestamp"))
        .values_list("sensor_id", "first", "last")
    }
    # Each sensor's history starts at `not_before` (the comfort sensors' later), and nothing is
    # written inside the span it has readings in.
    comfort_from = _floor_hour(now - timedelta(days=COMFORT_HISTORY_DAYS))
    not_before = {
        s.sensor_id: history_start(now)
        if default_metric[s.kind] in (Metric.ENERGY, Metric.POWER)
        else comfort_from
        for s in building.sensors
    }
    gaps = {s.sensor_id: spans.get(s.pk) for s in building.sensors}
    # Up to which instant no sensor gets anything (a second run: nearly the whole history),
    # so that no values are computed there.
    skip_until = min(
        span[1] if span is not None and span[0] <= not_before[sensor_id] else not_before[sensor_id] - _TICK
        for sensor_id, span in gaps.items()
    )
    rng = random.Random(0)  # noqa: S311 (synthetic data, not security)
    rows: list[TypedRow] = []
    written = 0
    for moment, step in history_instants(now):
        if moment >= until:
            break
        if moment <= skip_until:
            continue
        due = {
            sensor_id
            for sensor_id, span in gaps.items()
            if moment >= not_before[sensor_id] and (span is None or not span[0] <= moment <= span[1])
        }
        if not due:
            continue
        for sensor_id, (metric, value) in building.values(moment, step, rng, shed_w or {}, due).items():
            if sensor_id in due:
                rows.append((sensor_id, metric, moment, value, False))
        if len(rows) >= IMPORT_BATCH:
            written += readings_import(rows=rows, source="demo")["accepted"]
            rows = []
    if rows:
        written += readings_import(rows=rows, source="demo")["accepted"]
    days = 0
    if written:
        planner_statistics_refresh()
        days = _aggregate()
    return {"readings": written, "days": days}


# Runs of the aggregation job after a history is written: each takes up to 5,000 dirty marks
# (a year's hourly history leaves about 50,000); the bound only stops a runaway loop.
MAX_AGGREGATION_RUNS = 1_000


def _aggregate() -> int:
    """Bring the rollups and room metrics up to date with the scheduler's own job
    (`aggregates_compute`), until no dirty mark is left; returns the days it recomputed.

    One transaction (each day's becomes a savepoint): a commit per day was a fifth of the
    demo's time on SQLite, and at start-up nobody else writes."""
    days = 0
    with transaction.atomic(using=DB):
        for _ in range(MAX_AGGREGATION_RUNS):
            done = aggregates_compute()
            days += done["days"]
            if not done["marks"]:
                break
    return days


def simulate(
    *, sensor_ids: list[str] | None = None, start: datetime, end: datetime, step_s: float, seed: int = 0
) -> dict[str, int]:
    """Ingest synthetic readings for the chosen sensors (default: every active sensor in a room,
    and the demo's meters) at each step in [start, end), one batch per instant, through
    readings_ingest.

    A sensor gets no reading at or before its newest one: the simulator's backfill after the
    demo's history (or a restart) adds only what is missing, so interval energies are never
    counted twice.
    """
    sensors = Sensor.objects.select_related("room").filter(status=Sensor.Status.ACTIVE)
    meters = [meter.sensor_id for meter in DEMO_METERS]
    sensors = sensors.filter(room__isnull=False) | sensors.filter(sensor_id__in=meters)
    if sensor_ids:
        sensors = sensors.filter(sensor_id__in=sensor_ids)
    building = _Building(list(sensors))
    last_seen = {s.sensor_id: s.last_seen for s in building.sensors}
    rng = random.Random(seed)  # noqa: S311 (synthetic data, not security)
    totals = {"batches": 0, "accepted": 0}
    for moment in simulation.instants(start, end, timedelta(seconds=step_s)):
        stamp = moment.isoformat()
        batch = [
            {"sensor_id": sensor_id, "metric": metric, "timestamp": stamp, "value": value}
            for sensor_id, (metric, value) in building.values(moment, step_s, rng, {}).items()
            if (seen := last_seen[sensor_id]) is None or moment > seen
        ]
        if not batch:
            continue
        result = readings_ingest(readings=batch, source="simulator")
        totals["batches"] += 1
        totals["accepted"] += result["accepted"]
    return totals
