"""The registry of rooms and sensors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from energy_dashboard.core.clock import iso_z

# Bounds of what the registry takes (README, "Limits"): values every job, query and page can
# compute with. A sensor's expected interval of 2^63-1 s stopped the stale-sensor job for good
# (its timedelta overflows); a 10 MB metadata value was repeated in every sensor list.
MAX_EXPECTED_INTERVAL_S = 7 * 86_400
MAX_ROOM_CAPACITY = 100_000
MAX_ROOM_AREA_M2 = Decimal("1000000")
METADATA_MAX_DEPTH = 10
METADATA_MAX_BYTES = 16 * 1024
# A meter hierarchy (Sensor.part_of) is at most this many levels deep: a building's main meter,
# a floor's, a room's, a circuit's. Every total walks it, so it is bounded like any input.
MAX_METER_DEPTH = 4


def metadata_depth_exceeds(value: Any, limit: int = METADATA_MAX_DEPTH) -> bool:
    """True when `value` nests objects or arrays more than `limit` levels deep. Iterative: a
    value 1,000 levels deep must not exhaust the interpreter's stack before it is refused."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def validate_metadata(value: Any) -> None:
    """A sensor's metadata: a JSON object at most METADATA_MAX_DEPTH levels deep and
    METADATA_MAX_BYTES long as JSON."""
    if not isinstance(value, dict):
        raise ValidationError("metadata must be a JSON object.", code="invalid")
    if metadata_depth_exceeds(value):
        raise ValidationError(f"metadata may nest at most {METADATA_MAX_DEPTH} levels deep.", code="too_deep")
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        raise ValidationError("metadata must be JSON.", code="invalid") from None
    if size > METADATA_MAX_BYTES:
        raise ValidationError(
            f"metadata may be at most {METADATA_MAX_BYTES} bytes of JSON; this is {size}.", code="too_large"
        )


class Room(models.Model):
    """A space of the building; its unique `name` is its key in URLs and in other modules."""

    name = models.SlugField(max_length=64, unique=True)
    display_name = models.CharField(max_length=128, blank=True)
    floor = models.CharField(max_length=32, blank=True)
    area_m2 = models.DecimalField(
        max_digits=9,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(MAX_ROOM_AREA_M2)],
    )
    capacity = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_ROOM_CAPACITY)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name


class Sensor(models.Model):
    """A device that measures one or more metrics; `sensor_id` is its stable key."""

    class Kind(models.TextChoices):
        ENERGY_METER = "energy_meter", "Energy meter"
        POWER = "power", "Power"
        CO2 = "co2", "CO2"
        TEMPERATURE = "temperature", "Temperature"
        HUMIDITY = "humidity", "Humidity"
        OCCUPANCY = "occupancy", "Occupancy"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INACTIVE = "inactive", "Inactive"
        STALE = "stale", "Stale"
        FAULT = "fault", "Fault"

    sensor_id = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=128, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.SET_NULL, related_name="sensors")
    # A meter's CPE, a vendor's device id ...: unique when given.
    external_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    last_seen = models.DateTimeField(null=True, blank=True)
    expected_interval_s = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(1), MaxValueValidator(MAX_EXPECTED_INTERVAL_S)]
    )
    metadata = models.JSONField(default=dict, blank=True, validators=[validate_metadata])
    # The meter this one is a sub-meter of (a building's main meter, its floors' and circuits'
    # meters): what it measures is part of what its parent measures, so a total counts a meter
    # only when none of its ancestors is in the same total (sensors.hierarchy). Deleting the
    # parent makes its sub-meters top-level meters again.
    part_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sub_meters",
        help_text=f"The meter this is a sub-meter of: same kind, at most {MAX_METER_DEPTH} levels deep.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Kinds that meter a quantity a parent meter also measures (energy, power): only these
    # may be part of another meter.
    METER_KINDS = frozenset({Kind.ENERGY_METER, Kind.POWER})

    class Meta:
        ordering = ["sensor_id"]
        indexes = [models.Index(fields=["room", "kind"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.name or self.sensor_id

    def clean(self) -> None:
        super().clean()
        validate_part_of(self, self.part_of)


def _height(sensor: Sensor) -> int:
    """Levels of sub-meters below `sensor` (0: none), read at most MAX_METER_DEPTH levels down
    (one query per level)."""
    if sensor.pk is None:
        return 0
    level, height = [sensor.pk], 0
    while level and height <= MAX_METER_DEPTH:
        level = list(Sensor.objects.filter(part_of_id__in=level).values_list("pk", flat=True))
        if level:
            height += 1
    return height


def _refused(field: str, message: str, code: str) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def validate_part_of(sensor: Sensor, parent: Sensor | None) -> None:
    """A meter may be part of `parent` when both meter the same quantity (same kind, a meter
    kind), the parent is not the meter itself nor one of its sub-meters (no cycle), and the
    hierarchy stays at most MAX_METER_DEPTH levels deep. Raises ValidationError (on `part_of`,
    or on `kind` when a kind change would break the meter's existing sub-meters)."""
    if sensor.pk is not None and sensor.kind:
        mismatched = Sensor.objects.filter(part_of_id=sensor.pk).exclude(kind=sensor.kind)
        if (child := mismatched.values_list("sensor_id", flat=True).first()) is not None:
            raise _refused(
                "kind",
                f"sub-meter {child} is of another kind; a meter's sub-meters are of its kind.",
                "part_of_kind",
            )
    if parent is None:
        return
    if sensor.kind not in Sensor.METER_KINDS:
        raise _refused(
            "part_of", "only energy meters and power sensors can be part of another meter.", "part_of_kind"
        )
    if parent.kind != sensor.kind:
        raise _refused(
            "part_of",
            f"{parent.sensor_id} is of kind {parent.kind}, this of {sensor.kind}: a sub-meter is of its "
            "parent's kind.",
            "part_of_kind",
        )
    # The parent's ancestors, bounded: a chain longer than the limit is refused before it is
    # walked further, so a cycle written straight to the database cannot loop here.
    depth, ancestor = 1, parent
    while ancestor is not None:
        if sensor.pk is not None and ancestor.pk == sensor.pk:
            raise _refused(
                "part_of",
                f"{parent.sensor_id} is {sensor.sensor_id} or one of its sub-meters (a cycle).",
                "part_of_cycle",
            )
        depth += 1
        if depth > MAX_METER_DEPTH:
            break
        ancestor = ancestor.part_of
    if depth + _height(sensor) > MAX_METER_DEPTH:
        raise _refused(
            "part_of",
            f"a meter hierarchy is at most {MAX_METER_DEPTH} levels deep; this makes it deeper.",
            "part_of_depth",
        )


class Metric(models.TextChoices):
    """What a reading measures, each in its canonical unit."""

    ENERGY = "energy", "Energy (kWh in the interval)"
    POWER = "power", "Power (W)"
    CO2 = "co2", "CO2 (ppm)"
    TEMPERATURE = "temperature", "Temperature (°C)"
    HUMIDITY = "humidity", "Relative humidity (%)"
    OCCUPANCY = "occupancy", "Occupancy (people)"


class Reading(models.Model):
    """One value of one metric of one sensor at one instant (UTC); the raw readings store."""

    # The point's key is the primary key (ADR 0008): a surrogate id cost every stored reading
    # a sequence call, 8 bytes and a second B-tree, about a third of a COPY's time.
    pk = models.CompositePrimaryKey("sensor_id", "metric", "timestamp")
    # No database foreign key (ADR 0006): its per-row check was half of PostgreSQL's work per
    # stored reading. The ingest locks its batch's sensors before it commits and checks none
    # is gone; sensor_delete locks the sensor before deleting its readings. That keeps the same
    # guarantee per batch.
    sensor = models.ForeignKey(
        Sensor, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    metric = models.CharField(max_length=16, choices=Metric.choices)
    timestamp = models.DateTimeField()
    value = models.FloatField()
    estimated = models.BooleanField(default=False)

    class Meta:
        # The primary key's index is also the index of every range query: sensor + metric,
        # then time.
        indexes = [
            # Retention deletes and "what arrived since" scans by time alone. A BRIN index on
            # PostgreSQL (migration 0005): the table is written in time order.
            models.Index(fields=["timestamp"], name="reading_timestamp"),
        ]

    def __str__(self) -> str:
        return f"{self.sensor_id} {self.metric} {iso_z(self.timestamp, timespec='seconds')} {self.value}"


class CounterState(models.Model):
    """The last cumulative counter value seen per sensor, to turn counters into interval energy."""

    sensor = models.OneToOneField(Sensor, on_delete=models.CASCADE, primary_key=True, related_name="+")
    timestamp = models.DateTimeField()
    value = models.FloatField()

    def __str__(self) -> str:
        return f"{self.sensor_id} register {self.value} at {iso_z(self.timestamp, timespec='seconds')}"


class Rollup(models.Model):
    """Aggregate of one sensor's metric over a 15-minute, hourly or (local) daily bucket."""

    class Resolution(models.TextChoices):
        QUARTER_HOUR = "15m", "15 minutes"
        HOUR = "1h", "1 hour"
        DAY = "1d", "1 day (building time zone)"

    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="+", db_index=False)
    metric = models.CharField(max_length=16, choices=Metric.choices)
    resolution = models.CharField(max_length=3, choices=Resolution.choices)
    bucket = models.DateTimeField(help_text="Start of the bucket (UTC).")
    count = models.PositiveIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()
    mean = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sensor", "metric", "resolution", "bucket"], name="rollup_unique_bucket"
            )
        ]
        indexes = [models.Index(fields=["resolution", "metric", "bucket"], name="rollup_by_time")]

    def __str__(self) -> str:
        return f"{self.sensor_id} {self.metric} {self.resolution} {self.bucket:%Y-%m-%dT%H:%M}"


class RoomMetrics(models.Model):
    """A room's figures over a 5-minute window."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+", db_index=False)
    bucket = models.DateTimeField(help_text="Start of the 5-minute window (UTC).")
    energy_kwh = models.FloatField(null=True)
    power_w = models.FloatField(null=True, help_text="Mean of the room's power sensors' sum.")
    co2_ppm = models.FloatField(null=True)
    temperature_c = models.FloatField(null=True)
    humidity_pct = models.FloatField(null=True)
    occupancy = models.FloatField(null=True)
    sensors_reporting = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "bucket"], name="room_metrics_unique")]
        verbose_name_plural = "room metrics"

    def __str__(self) -> str:
        return f"{self.room_id} {self.bucket:%Y-%m-%dT%H:%M}"


class DirtyBucket(models.Model):
    """An hour of a metric whose aggregates must be recomputed, for the sensors it names.

    Written in the same transaction as the readings, one row per stored batch and (metric,
    hour): a batch of 1,000 sensors' readings writes one mark, not 1,000 (a thousand rows were
    8% of a 5,000-reading request). Append-only: concurrent ingests never wait on each other's
    marks. The aggregation job reads marks up to an id and deletes exactly those, so a mark
    written while it computes stays for its next run (late data is never lost); repeated marks
    of one window are recomputed once. A deleted sensor's id may linger in a mark until the
    next run: its recomputation finds no readings and writes nothing.
    """

    metric = models.CharField(max_length=16, choices=Metric.choices)
    bucket = models.DateTimeField()
    # Comma-separated text, not a JSON array: PostgreSQL took 6-10x longer to read a jsonb
    # array of 1,000 numbers than the same text (about 2 ms of every 5,000-reading batch).
    sensor_ids = models.TextField(
        help_text="Primary keys of the sensors with new readings in the hour, comma-separated."
    )

    def __str__(self) -> str:
        return f"{self.metric} {self.bucket:%Y-%m-%dT%H:%M} ({len(self.pks)} sensors)"

    @property
    def pks(self) -> list[int]:
        """The sensors the mark names."""
        return parse_pks(self.sensor_ids)


def parse_pks(text: str) -> list[int]:
    """A mark's `sensor_ids` as integers."""
    return [int(pk) for pk in text.split(",")]
