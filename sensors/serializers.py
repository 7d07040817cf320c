"""API shapes of rooms and sensors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import serializers

from energy_dashboard.core.api import ModelSerializer, QuerySerializer, UTCDateTimeField
from energy_dashboard.core.limits import EARLIEST, LATEST, within_horizon
from sensors.analytics import bucket_count
from sensors.models import MAX_METER_DEPTH, Metric, Room, Sensor, validate_metadata, validate_part_of


class InstantField(UTCDateTimeField):
    """An instant within the product's horizon (energy_dashboard.core.limits); naive means building
    time. A year-1 or year-9999 instant was accepted and overflowed later."""

    default_error_messages = {
        "horizon": f"Give an instant from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} (UTC).",
    }

    def to_internal_value(self, value: Any) -> datetime:
        moment = super().to_internal_value(value)  # 'overflow' when the zone cannot hold it
        if not within_horizon(moment):
            self.fail("horizon")
        return moment


class MetadataField(serializers.JSONField):
    """A sensor's metadata: bounded (sensors.models.validate_metadata) before anything walks
    it; DRF's own check serialises it recursively, which a value 1,000 levels deep overflows."""

    def to_internal_value(self, data: Any) -> Any:
        try:
            validate_metadata(data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return super().to_internal_value(data)


def _names(raw: str) -> list[str]:
    """Comma-separated names, in order, each once."""
    return list(dict.fromkeys(name for name in raw.split(",") if name))


def _too_many(field: str, count: int) -> None:
    limit = settings.ANALYTICS_MAX_SERIES
    if count > limit:
        raise serializers.ValidationError(
            {
                field: f"at most {limit} rooms and sensors per request (ANALYTICS_MAX_SERIES); "
                f"this names {count}."
            }
        )


def default_to_last_day(attrs: dict[str, Any]) -> None:
    """A series' range: `end` defaults to now and `start` to a day before it; start < end."""
    attrs.setdefault("end", timezone.now())
    attrs.setdefault("start", attrs["end"] - timedelta(days=1))
    if attrs["start"] >= attrs["end"]:
        raise serializers.ValidationError({"start": "start must be before end."})


def check_raw_range(start: datetime, end: datetime) -> None:
    """A raw range spans at most READINGS_MAX_RANGE_DAYS."""
    days = settings.READINGS_MAX_RANGE_DAYS
    if end - start > timedelta(days=days):
        raise serializers.ValidationError(
            {
                "start": f"a raw range may span at most {days} days (READINGS_MAX_RANGE_DAYS); this one "
                f"spans {(end - start) / timedelta(days=1):.6g} days: ask for rollups, or several ranges."
            }
        )


def check_rollup_range(start: datetime, end: datetime, interval: str, series: int = 1) -> None:
    """A rollup range spans at most ANALYTICS_MAX_RANGE_DAYS, and its buckets times its series
    are at most ANALYTICS_MAX_POINTS."""
    days = settings.ANALYTICS_MAX_RANGE_DAYS
    if end - start > timedelta(days=days):
        raise serializers.ValidationError(
            {
                "start": f"a range may span at most {days} days (ANALYTICS_MAX_RANGE_DAYS); this one "
                f"spans {(end - start) / timedelta(days=1):.6g} days."
            }
        )
    limit = settings.ANALYTICS_MAX_POINTS
    buckets = bucket_count(start, end, interval)
    if buckets * series > limit:
        raise serializers.ValidationError(
            {
                "start": f"at most {limit} points per request (ANALYTICS_MAX_POINTS: buckets x series); "
                f"this asks {buckets} {interval} buckets x {series} series = {buckets * series}: shorten "
                "the range, take a longer interval or name fewer series."
            }
        )


class RoomSerializer(ModelSerializer[Room]):
    """A room; `name` is its key in URLs."""

    sensor_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Room
        fields = [
            "name",
            "display_name",
            "floor",
            "area_m2",
            "capacity",
            "sensor_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class SensorSerializer(ModelSerializer[Sensor]):
    """A sensor; `sensor_id` is its key in URLs, `room` the room's name."""

    room = serializers.SlugRelatedField(
        slug_field="name", queryset=Room.objects.all(), allow_null=True, required=False
    )
    metadata = MetadataField(required=False)
    part_of = serializers.SlugRelatedField(
        slug_field="sensor_id",
        queryset=Sensor.objects.all(),
        allow_null=True,
        required=False,
        help_text="The sensor_id of the meter this one is a sub-meter of (same kind; at most "
        f"{MAX_METER_DEPTH} levels deep; no cycles). Totals count a meter only once.",
    )

    class Meta:
        model = Sensor
        fields = [
            "sensor_id",
            "name",
            "kind",
            "room",
            "part_of",
            "external_id",
            "status",
            "last_seen",
            "expected_interval_s",
            "metadata",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_seen", "created_at", "updated_at"]

    def validate_sensor_id(self, value: str) -> str:
        if self.instance is not None and value != self.instance.sensor_id:
            raise serializers.ValidationError("sensor_id is the sensor's key and cannot change.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The meter hierarchy as the model checks it (sensors.models.validate_part_of), as a
        400 with the field's message rather than an error at save time."""
        if "part_of" in attrs or "kind" in attrs:
            candidate = self.instance or Sensor()
            kind = attrs.get("kind", candidate.kind)
            parent = attrs.get("part_of", candidate.part_of)
            probe = Sensor(pk=candidate.pk, sensor_id=attrs.get("sensor_id", candidate.sensor_id), kind=kind)
            try:
                validate_part_of(probe, parent)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.message_dict) from None
        return attrs


class SeriesQuery(QuerySerializer):
    """Query parameters of GET /sensors/{sensor_id}/data."""

    metric = serializers.ChoiceField(choices=Metric.choices, required=False)
    start = InstantField(required=False, help_text="Default: end - 24 h. Naive = building time.")
    end = InstantField(required=False, help_text="Default: now.")
    resolution = serializers.ChoiceField(choices=["raw", "15m", "1h", "1d"], default="raw")
    limit = serializers.IntegerField(min_value=1, max_value=10_000, default=1000)
    cursor = InstantField(required=False, help_text="Return points after this instant.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Raw: at most READINGS_MAX_RANGE_DAYS; rollups: at most ANALYTICS_MAX_RANGE_DAYS and
        ANALYTICS_MAX_POINTS buckets (an export streams the whole range, pages do not)."""
        default_to_last_day(attrs)
        if attrs["resolution"] == "raw":
            check_raw_range(attrs["start"], attrs["end"])
        else:
            check_rollup_range(attrs["start"], attrs["end"], attrs["resolution"])
        return attrs


class ReadingsBatch(serializers.Serializer[Any]):
    """Body of POST /readings and POST /sensors/{sensor_id}/data: the items are checked one by
    one by readings_ingest, so one bad item never refuses the rest."""

    readings = serializers.ListField(child=serializers.JSONField(), max_length=10_000, allow_empty=False)


class Rejection(serializers.Serializer[Any]):
    """One refused reading: its place in the batch and why."""

    index = serializers.IntegerField(help_text="Position in `readings`, from 0.")
    reason = serializers.CharField()


class IngestSummary(serializers.Serializer[Any]):
    """What happened to a batch."""

    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    rejected = Rejection(many=True)


class IngestRefused(serializers.Serializer[Any]):
    """400 of a batch: an error body (`message`, `code`); with `errors` when the body's shape
    is wrong, with the summary (nothing accepted, each item's reason) when every item was
    refused."""

    message = serializers.CharField()
    code = serializers.CharField()
    # (DRF's metaclass takes declared fields off the class: this does not shadow
    # Serializer.errors, as django-stubs' view of the class says.)
    errors = serializers.DictField(child=serializers.JSONField(), required=False)  # type: ignore[assignment]
    accepted = serializers.IntegerField(required=False)
    duplicates = serializers.IntegerField(required=False)
    conflicts = serializers.IntegerField(required=False)
    rejected = Rejection(many=True, required=False)


class EnergyQuery(QuerySerializer):
    """Query parameters of GET /analytics/energy."""

    rooms = serializers.CharField(
        required=False,
        help_text="Comma-separated room names. With no rooms and no sensors: the whole building.",
    )
    sensors = serializers.CharField(required=False, help_text="Comma-separated sensor ids.")
    start = InstantField(required=False, help_text="Default: end - 7 days.")
    end = InstantField(required=False, help_text="Default: now.")
    interval = serializers.ChoiceField(choices=["15m", "1h", "1d", "1w", "1M"], default="1h")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """At most ANALYTICS_MAX_SERIES names, ANALYTICS_MAX_RANGE_DAYS days and
        ANALYTICS_MAX_POINTS points (buckets x series; the building is one series)."""
        attrs["rooms"] = _names(attrs.get("rooms", ""))
        attrs["sensors"] = _names(attrs.get("sensors", ""))
        series = len(attrs["rooms"]) + len(attrs["sensors"])
        _too_many("rooms" if attrs["rooms"] else "sensors", series)
        attrs.setdefault("end", timezone.now())
        attrs.setdefault("start", attrs["end"] - timedelta(days=7))
        if attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"start": "start must be before end."})
        check_rollup_range(attrs["start"], attrs["end"], attrs["interval"], max(series, 1))
        return attrs


class EnergyPoint(serializers.Serializer[Any]):
    """One interval's energy; `start` in the building's time zone, with its offset."""

    start = serializers.DateTimeField()
    energy_kwh = serializers.FloatField()


class EnergySeriesOut(serializers.Serializer[Any]):
    """One series: a room's, a sensor's, or the whole building's (`building`: every sensor's
    energy, those in no room too); exactly one of `room`, `sensor`, `building` is given."""

    room = serializers.CharField(required=False)
    sensor = serializers.CharField(required=False)
    building = serializers.CharField(required=False)
    total_kwh = serializers.FloatField()
    points = EnergyPoint(many=True)


class EnergyReport(serializers.Serializer[Any]):
    """The answer of GET /analytics/energy (JSON; `?format=csv` has the same rows)."""

    interval = serializers.ChoiceField(choices=["15m", "1h", "1d", "1w", "1M"])
    timezone = serializers.CharField(help_text="The building's (TIME_ZONE): local days, weeks, months.")
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    scope = serializers.ChoiceField(
        choices=["selection", "building"],
        help_text="`building` when no room and no sensor was named: one series, the whole building.",
    )
    series = EnergySeriesOut(many=True)


class DataQuery(serializers.Serializer[Any]):
    """Body of POST /data/query."""

    sensors = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    rooms = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    metrics = serializers.ListField(
        child=serializers.ChoiceField(choices=Metric.choices), required=False, default=list
    )
    start = InstantField()
    end = InstantField()
    aggregation = serializers.ChoiceField(choices=["raw", "avg", "sum", "min", "max", "count"], default="raw")
    interval = serializers.ChoiceField(choices=["15m", "1h", "1d"], default="1h")
    limit = serializers.IntegerField(min_value=1, max_value=100_000, default=10_000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """At most ANALYTICS_MAX_SERIES names in each list; raw: at most READINGS_MAX_RANGE_DAYS;
        aggregates: at most ANALYTICS_MAX_RANGE_DAYS and ANALYTICS_MAX_POINTS buckets."""
        if not attrs["sensors"] and not attrs["rooms"]:
            raise serializers.ValidationError({"sensors": "name sensors or rooms."})
        for field in ("sensors", "rooms"):
            attrs[field] = list(dict.fromkeys(attrs[field]))
            _too_many(field, len(attrs[field]))
        if attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"start": "start must be before end."})
        if attrs["aggregation"] == "raw":
            check_raw_range(attrs["start"], attrs["end"])
        else:
            check_rollup_range(attrs["start"], attrs["end"], attrs["interval"])
        return attrs


class BreakdownQuery(QuerySerializer):
    """Query parameters of GET /analytics/breakdown (`?period=` empty is a 400, as the schema
    allows only the choices)."""

    period = serializers.ChoiceField(
        choices=["today", "week", "month"],
        default="today",
        help_text="Local: since midnight, Monday or the 1st.",
    )


class RoomSeriesQuery(QuerySerializer):
    """Query parameters of GET /rooms/{name}/series."""

    start = InstantField(required=False, help_text="Default: end - 24 h. Naive = building time.")
    end = InstantField(required=False, help_text="Default: now. Naive = building time.")
    resolution = serializers.ChoiceField(
        choices=["auto", "raw", "5m", "15m", "1h", "1d"],
        default="auto",
        help_text="auto: raw up to 6 h, else the finest of 5m, 15m, 1h, 1d with at most 800 buckets.",
    )
    metrics = serializers.CharField(
        required=False, help_text="Comma-separated metrics. Default: all of them."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Known metrics; raw: at most READINGS_MAX_RANGE_DAYS; otherwise at most
        ANALYTICS_MAX_RANGE_DAYS (the points are bounded by ROOM_SERIES_MAX_POINTS)."""
        names = _names(attrs.get("metrics", ""))
        unknown = [name for name in names if name not in Metric.values]
        if unknown:
            raise serializers.ValidationError(
                {"metrics": f"unknown metric {unknown[0]!r}; known: {', '.join(Metric.values)}."}
            )
        attrs["metrics"] = names or list(Metric.values)
        default_to_last_day(attrs)
        if attrs["resolution"] == "raw":
            check_raw_range(attrs["start"], attrs["end"])
        days = settings.ANALYTICS_MAX_RANGE_DAYS
        if attrs["end"] - attrs["start"] > timedelta(days=days):
            raise serializers.ValidationError(
                {"start": f"a range may span at most {days} days (ANALYTICS_MAX_RANGE_DAYS)."}
            )
        return attrs
