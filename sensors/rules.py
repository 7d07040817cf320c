"""What a reading must be to be stored, whichever way it enters: the metric vocabulary, units
and their conversion, physical ranges, timestamps and the product's horizon, energy registers.

Two checkers apply these rules: `validate`, to items as clients send them (API batches, CSV
files, the simulator), and `check_rows`, to rows a trusted parser has typed (meter files).
They check the fields they share in the same order (sensor, metric, value, timestamp, range)
and give the same reason for the same fault: the bounds are the tables below and every reason
is written by one function or constant below. Their loops stay inline: they run once per
reading (100,000 a second through the API), so a rule is shared as its data and its message,
and a function runs only for a value a batch repeats (once per distinct timestamp, per
metric and unit) or for a refused reading.

Pure: nothing here reads or writes the database (that is `sensors.storage`). Internal to the
sensors module; callers use `sensors.services`.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Protocol, TypedDict

from django.utils import timezone

from energy_dashboard.core.clock import iso_z
from energy_dashboard.core.limits import EARLIEST
from sensors.models import Metric

logger = logging.getLogger(__name__)

# --- The vocabulary -------------------------------------------------------------------------

METRICS = frozenset(Metric.values)
# A cumulative energy register (kWh) sent as this metric becomes interval `energy`.
COUNTER_METRIC = "energy_total"
DB_METRIC_ENERGY = Metric.ENERGY.value
# What a client may name, as refusals list it.
VOCABULARY = sorted([*METRICS, COUNTER_METRIC])

# --- Units ----------------------------------------------------------------------------------

# Canonical unit per metric, the units accepted for it and the factor to the canonical one.
UNITS: dict[str, dict[str, Any]] = {
    Metric.ENERGY: {"kwh": 1.0, "wh": 1e-3, "mwh": 1e3},
    Metric.POWER: {"w": 1.0, "kw": 1e3, "mw": 1e6},
    Metric.CO2: {"ppm": 1.0},
    Metric.TEMPERATURE: {"c": None, "°c": None, "degc": None, "f": None, "°f": None, "k": None},
    Metric.HUMIDITY: {"%": 1.0, "pct": 1.0, "percent": 1.0, "%rh": 1.0},
    Metric.OCCUPANCY: {"people": 1.0, "count": 1.0, "": 1.0},
}
DEFAULT_UNIT: dict[str, str] = {
    Metric.ENERGY: "kwh",
    Metric.POWER: "w",
    Metric.CO2: "ppm",
    Metric.TEMPERATURE: "c",
    Metric.HUMIDITY: "%",
    Metric.OCCUPANCY: "",
}

# --- Ranges ---------------------------------------------------------------------------------

# Physical ranges in canonical units; outside is a broken sensor or a unit mistake.
RANGES: dict[str, tuple[float, float]] = {
    Metric.ENERGY: (0.0, 1e6),
    Metric.POWER: (-1e8, 1e8),
    Metric.CO2: (0.0, 40_000.0),
    Metric.TEMPERATURE: (-60.0, 120.0),
    Metric.HUMIDITY: (0.0, 100.0),
    Metric.OCCUPANCY: (0.0, 100_000.0),
}
ENERGY_HIGH = RANGES[Metric.ENERGY][1]

# --- Timestamps -----------------------------------------------------------------------------

# How far ahead of the server's clock a reading may be stamped (a sensor's clock runs fast).
FUTURE_SKEW = timedelta(minutes=5)

# --- Registers ------------------------------------------------------------------------------

# A counter step implying more than this average power is a spike, not consumption.
MAX_COUNTER_POWER_KW = 100_000.0
# The largest register value taken (kWh): a meter's register has at most 9-10 digits, even in
# MWh. Past it the rollover arithmetic (10 ** digits) leaves a double's range: a register of
# 1.5e308 kept its sensor's counter failing on every later reading.
COUNTER_MAX_KWH = 1e12

# --- The reasons a reading is refused ------------------------------------------------------

NOT_AN_OBJECT = "each reading must be an object"
SENSOR_MISSING = "sensor_id is missing"
NOT_FINITE = "value must be a finite number"
UNIT_NOT_TEXT = "unit must be a string"
BAD_QUALITY = "quality must be 'measured' or 'estimated'"
TIMESTAMP_TYPE = "timestamp must be ISO 8601 with an offset, or epoch seconds"
TIMESTAMP_NOT_FINITE = "timestamp is not a finite number"
TIMESTAMP_OUT_OF_RANGE = "timestamp is out of range"
TIMESTAMP_NO_OFFSET = "timestamp has no UTC offset (add Z or +hh:mm)"
BEFORE_EARLIEST = f"timestamp is before {EARLIEST.year}"
COUNTER_NEGATIVE = "an energy counter cannot be negative"
COUNTER_NOT_NEWER = "counter reading is not newer than the last one"
# A typed row is interval energy a parser computed; a register needs the counter state that
# only the item path keeps.
ROW_REGISTER = f"metric {COUNTER_METRIC!r} is a register: a typed row carries interval {DB_METRIC_ENERGY!r}"


def other_sensor(sensor_id: Any, default_sensor: str) -> str:
    """An item naming another sensor than the URL's."""
    return f"sensor_id {sensor_id!r} differs from the URL's {default_sensor!r}"


def unknown_sensor(sensor_id: Any) -> str:
    """A sensor id the registry does not know."""
    return f"unknown sensor {sensor_id!r}"


def unknown_metric(metric: Any) -> str:
    """A metric outside the vocabulary."""
    return f"metric {metric!r} is not one of {VOCABULARY}"


def unknown_unit(metric: str, unit: str | None) -> str:
    """A unit the metric is not measured in."""
    return f"unit {unit!r} is not one of {sorted(u for u in UNITS[metric] if u)} for {metric}"


def out_of_range(metric: str, value: float, low: float, high: float) -> str:
    """A value outside its metric's physical range."""
    return f"{metric} {value:g} is outside the physical range {low:g}..{high:g}"


def in_future(moment: datetime) -> str:
    """An instant past the horizon's end."""
    return f"timestamp {iso_z(moment, timespec='seconds')} is in the future"


def register_too_large(value: float) -> str:
    """A register value past COUNTER_MAX_KWH."""
    return f"an energy register of {value:g} kWh is past {COUNTER_MAX_KWH:g} kWh"


def counter_jump(delta: float, hours: float) -> str:
    """A register step implying more than MAX_COUNTER_POWER_KW."""
    return f"counter jumped {delta:g} kWh in {hours:g} h"


def counter_step_too_large(delta: float) -> str:
    """A register step past the energy range."""
    return f"counter step of {delta:g} kWh is past the energy range 0..{ENERGY_HIGH:g} kWh"


# --- Shapes ---------------------------------------------------------------------------------


class Rejection(TypedDict):
    """One refused point and why."""

    index: int
    reason: str


class Known(Protocol):
    """What the rules need of a registered sensor: its key."""

    pk: int


# A validated point in canonical units, as a plain tuple (one object per point, not six):
# (index in the batch, sensor pk, metric, timestamp (aware, UTC), value, estimated).
Point = tuple[int, int, str, datetime, float, bool]

# A reading already typed by a trusted parser: (sensor_id, metric, timestamp (aware), value in
# the metric's canonical unit, estimated).
TypedRow = tuple[str, str, datetime, float, bool]


@dataclass
class Batch:
    """The outcome of validation: points to store and what was refused."""

    points: list[Point] = field(default_factory=list)
    counters: list[Point] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class PointError(ValueError):
    """A point that cannot be taken, with the reason shown to the client."""


# --- Rules as functions (once per distinct value, or on the way out) ------------------------


def horizon(now: datetime) -> tuple[datetime, datetime]:
    """The instants a reading may carry: from EARLIEST (energy_dashboard.core.limits) to
    FUTURE_SKEW past `now`, both included."""
    return EARLIEST, now + FUTURE_SKEW


def outside_horizon(moment: datetime) -> str:
    """Why an instant outside `horizon` is refused."""
    return BEFORE_EARLIEST if moment < EARLIEST else in_future(moment)


def parse_timestamp(raw: Any, now: datetime) -> datetime:
    """An aware UTC datetime from ISO 8601 with an offset, or epoch seconds/milliseconds,
    within the product's horizon (`horizon`)."""
    if isinstance(raw, bool):
        raise PointError(TIMESTAMP_TYPE)
    if isinstance(raw, int | float):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise PointError(TIMESTAMP_NOT_FINITE)
        try:
            # An int past a double's range overflows here, in the division or the conversion.
            seconds = raw / 1000.0 if abs(raw) > 1e11 else float(raw)  # milliseconds
            moment = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise PointError(TIMESTAMP_OUT_OF_RANGE) from None
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip().replace("z", "Z"))
        except ValueError:
            raise PointError(f"timestamp {raw[:40]!r} is not ISO 8601") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise PointError(TIMESTAMP_NO_OFFSET)
        try:
            # 0001-01-01T00:00+14:00 and 9999-12-31T23:59-12:00 are valid ISO 8601 whose UTC
            # instant is outside datetime's range.
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise PointError(f"timestamp {raw[:40]!r} is out of range") from None
    else:
        raise PointError(TIMESTAMP_TYPE)
    earliest, latest = horizon(now)
    if not earliest <= moment <= latest:
        raise PointError(outside_horizon(moment))
    return moment


def convert(metric: str, value: float, unit: str | None) -> float:
    """`value` in `unit` as the metric's canonical unit; PointError for an unknown unit."""
    key = (unit if unit is not None else DEFAULT_UNIT[metric]).strip().lower()
    accepted = UNITS[metric]
    if key not in accepted:
        raise PointError(unknown_unit(metric, unit))
    if metric == Metric.TEMPERATURE:
        if key in ("f", "°f"):
            return (value - 32.0) * 5.0 / 9.0
        if key == "k":
            return value - 273.15
        return value
    factor: float = accepted[key]  # None only for the temperatures, converted above
    return value * factor


# How a (metric, unit) pair converts: a factor (None: call `convert`, for temperatures) and the
# physical range; or the reason the unit is refused.
Scale = tuple[float | None, float, float] | str


def _scale(metric: str, unit: str | None) -> Scale:
    try:
        convert(metric, 1.0, unit)  # the same check, and the same message, as for each point
    except PointError as exc:
        return str(exc)
    low, high = RANGES[metric]
    if metric == Metric.TEMPERATURE:
        return None, low, high
    return UNITS[metric][(unit if unit is not None else DEFAULT_UNIT[metric]).strip().lower()], low, high


def _moment(raw: Any, now: datetime, stamps: dict[str | int | float, datetime | str]) -> datetime:
    """`parse_timestamp`, remembered per raw value for the batch (its items share timestamps)."""
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        return parse_timestamp(raw, now)  # refused, with its message
    moment = stamps.get(raw)
    if moment is None:
        try:
            moment = parse_timestamp(raw, now)
        except PointError as exc:
            moment = str(exc)
        stamps[raw] = moment
    if isinstance(moment, str):
        raise PointError(moment)
    return moment


def _finite_number(raw: Any) -> bool:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return False
    try:
        return math.isfinite(raw)
    except OverflowError:  # an int past a double's range
        return False


def named_sensors(items: Sequence[Any], default_sensor: str | None) -> list[str]:
    """The distinct sensor ids a batch of items names; only strings (validate refuses the rest)."""
    try:
        # The usual batch: every item an object naming its sensor. Faster than the loop below.
        named = set(map(itemgetter("sensor_id"), items))
    except (TypeError, KeyError, IndexError):
        named = {
            sensor_id
            for item in items
            if isinstance(item, dict) and isinstance(sensor_id := item.get("sensor_id", default_sensor), str)
        }
    if default_sensor:
        named.add(default_sensor)
    # PostgreSQL text cannot hold NUL: no sensor has such an id, and validate refuses it.
    return [sensor_id for sensor_id in named if isinstance(sensor_id, str) and "\x00" not in sensor_id]


# --- The two checkers -----------------------------------------------------------------------


def validate(  # noqa: PLR0912, PLR0915 (one loop on the hot path: a helper per check costs a call per item)
    items: Sequence[Any], sensors: Mapping[str, Known], *, default_sensor: str | None = None
) -> Batch:
    """Check each item; return the good points in canonical units and the reasons for the rest.

    The checks, their order and their messages are one per item; what repeats across items (a
    timestamp shared by a batch's sensors, a metric's unit) is worked out once per batch.
    """
    now = timezone.now()
    isfinite = math.isfinite
    batch = Batch()
    points, counters, rejected = batch.points, batch.counters, batch.rejected
    # raw timestamp -> its datetime, or the reason it is refused (the same for every item).
    stamps: dict[str | int | float, datetime | str] = {}
    scales: dict[tuple[str, str | None], Scale] = {}
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise PointError(NOT_AN_OBJECT)
            # Any, not the dict's `Any | None`: each value's type is checked below, one by one.
            get: Callable[..., Any] = item.get
            sensor_id = get("sensor_id", default_sensor)
            if default_sensor is not None and sensor_id != default_sensor:
                raise PointError(other_sensor(sensor_id, default_sensor))
            if not isinstance(sensor_id, str) or not sensor_id:
                raise PointError(SENSOR_MISSING)
            sensor = sensors.get(sensor_id)
            if sensor is None:
                raise PointError(unknown_sensor(sensor_id))
            metric = get("metric")
            counter = metric == COUNTER_METRIC
            if not counter and not (isinstance(metric, str) and metric in METRICS):
                raise PointError(unknown_metric(metric))
            # Exact types first (JSON gives int and float; bool is neither), then the general check.
            kind = type(raw := get("value"))
            if not (kind is int or (kind is float and isfinite(raw))) and not _finite_number(raw):
                raise PointError(NOT_FINITE)
            # The batch's timestamps repeat: a string seen before is one dict lookup.
            moment = stamps.get(stamp) if type(stamp := get("timestamp")) is str else None
            if type(moment) is not datetime:
                moment = _moment(stamp, now, stamps)
            unit = get("unit")
            if unit is not None and not isinstance(unit, str):
                raise PointError(UNIT_NOT_TEXT)
            quality = get("quality", "measured")
            if quality not in ("measured", "estimated"):
                raise PointError(BAD_QUALITY)
            canonical = DB_METRIC_ENERGY if counter else metric
            scale = scales.get((canonical, unit))
            if scale is None:
                scale = scales[(canonical, unit)] = _scale(canonical, unit)
            if isinstance(scale, str):
                raise PointError(scale)
            factor, low, high = scale
            try:
                value = float(raw) * factor if factor is not None else convert(canonical, float(raw), unit)
            except OverflowError:  # an int past a double's range
                raise PointError(NOT_FINITE) from None
            if counter:
                if value < 0:
                    raise PointError(COUNTER_NEGATIVE)
                if not value <= COUNTER_MAX_KWH:  # also inf, from a unit's factor
                    raise PointError(register_too_large(value))
            elif not low <= value <= high:  # a register has no physical range
                raise PointError(out_of_range(metric, value, low, high))
            (counters if counter else points).append(
                (index, sensor.pk, canonical, moment, value, quality == "estimated")
            )
        except PointError as exc:
            rejected.append({"index": index, "reason": str(exc)})
    return batch


def check_rows(rows: Sequence[TypedRow], sensors: Mapping[str, Known]) -> Batch:
    """Check typed rows (a meter file's records) by the rules `validate` applies to the same
    fields, in its order and with its reasons: known sensor, metric of the vocabulary, finite
    value, within the horizon, within the metric's physical range. A typed row has no unit to
    convert and carries no register (ROW_REGISTER). Rejections carry the row's index."""
    earliest, latest = horizon(timezone.now())
    isfinite = math.isfinite
    batch = Batch()
    points, rejected = batch.points, batch.rejected
    for index, (sensor_id, metric, moment, value, estimated) in enumerate(rows):
        sensor = sensors.get(sensor_id)
        bounds = RANGES.get(metric)
        if sensor is None:
            reason = unknown_sensor(sensor_id)
        elif bounds is None:
            reason = ROW_REGISTER if metric == COUNTER_METRIC else unknown_metric(metric)
        elif not isfinite(value):
            reason = NOT_FINITE
        elif not earliest <= moment <= latest:
            reason = outside_horizon(moment)
        elif not bounds[0] <= value <= bounds[1]:
            reason = out_of_range(metric, value, *bounds)
        else:
            points.append((index, sensor.pk, metric, moment, value, estimated))
            continue
        rejected.append({"index": index, "reason": reason})
    return batch


# --- Registers ------------------------------------------------------------------------------

# A sensor's last register reading: (timestamp, kWh).
Register = tuple[datetime, float]


@dataclass
class Steps:
    """Interval energy from a batch's register values."""

    intervals: list[Point]
    bases: int  # register values that only set a sensor's base
    repeats: int  # repeats of the last register value
    moved: list[int]  # sensors whose register changed (their new one is in `registers`), in order


def register_steps(counters: list[Point], registers: dict[int, Register], rejected: list[Rejection]) -> Steps:
    """Interval energy from cumulative registers, against each sensor's last one (`registers`,
    updated in place).

    A register that goes down is a rollover when it was near the top of its decimal range
    (999 999 -> 12 continues at 1 000 012), otherwise a meter reset (the new value is the
    energy since the reset). A step implying more than MAX_COUNTER_POWER_KW is a spike:
    refused, and the register is re-based so the next step is measured from it; so is a step
    past the energy range (RANGES), and a stored register outside 0..COUNTER_MAX_KWH (an old
    row) is replaced by the next value as a new base.
    """
    bases = repeats = 0
    by_sensor: dict[int, list[Point]] = defaultdict(list)
    for point in counters:
        by_sensor[point[1]].append(point)
    intervals: list[Point] = []
    moved: list[int] = []
    for sensor_pk, points in by_sensor.items():
        points.sort(key=itemgetter(3))
        register = registers.get(sensor_pk)
        changed = False
        for index, _, metric, moment, value, estimated in points:
            if register is not None and not 0 <= register[1] <= COUNTER_MAX_KWH:
                # A stored register no step can be measured from (an old row, a manual edit;
                # NaN fails the comparison too): this value becomes the base, as a first one.
                logger.warning(
                    "sensor pk %s: stored energy register %r is outside 0..%g kWh; re-based on %r",
                    sensor_pk,
                    register[1],
                    COUNTER_MAX_KWH,
                    value,
                )
                register, changed = (moment, value), True
                bases += 1
                continue
            if register is None:
                register, changed = (moment, value), True
                bases += 1  # the first register value only sets the base
                continue
            last_at, last_value = register
            if moment <= last_at:
                if moment == last_at and value == last_value:
                    repeats += 1  # the same register reading again
                    continue
                rejected.append({"index": index, "reason": COUNTER_NOT_NEWER})
                continue
            delta = value - last_value
            if delta < 0:
                top = 10 ** math.ceil(math.log10(last_value + 1))
                delta = (top - last_value) + value if last_value >= 0.9 * top else value
            hours = (moment - last_at).total_seconds() / 3600.0
            if delta / hours > MAX_COUNTER_POWER_KW:
                rejected.append({"index": index, "reason": counter_jump(delta, hours)})
            elif delta > ENERGY_HIGH:
                # A step after a long silence: stored as one interval reading it would be past
                # the energy range that every other reading is held to.
                rejected.append({"index": index, "reason": counter_step_too_large(delta)})
            else:
                # Labelled with the interval's start, as all interval energy is: the step
                # from the last register reading to this one belongs to [last, this).
                intervals.append((index, sensor_pk, metric, last_at, delta, estimated))
            register, changed = (moment, value), True
        if changed and register is not None:
            registers[sensor_pk] = register
            moved.append(sensor_pk)
    return Steps(intervals, bases, repeats, moved)
