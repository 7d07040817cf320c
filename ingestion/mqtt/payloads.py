"""From an MQTT message to reading items: topic filters, the built-in presets, payload decoding.

Pure: no database, no network. The items are those `sensors.services.readings_ingest` takes
(``{sensor_id, metric, value, unit, timestamp}``); the readings store applies its own rules to
them (ranges, units, the horizon, energy registers), so this module only says what the
payload holds, and a message that does not hold what its mapping says is a `Problem`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from ingestion.mqtt.models import EXAMPLE_MAX_CHARS, MAX_FIELDS

# The metrics a field may name. The readings store's vocabulary (sensors.rules) is the final
# word: a metric it does not know is refused there, counted as a rejected reading.
METRICS = ("energy", "energy_total", "power", "co2", "temperature", "humidity", "occupancy")
# A sensor_id is a slug of at most 64 characters (sensors.models.Sensor).
SENSOR_ID_MAX = 64
_NOT_SLUG = re.compile(r"[^a-z0-9_-]+")
# An epoch time past this is in milliseconds (zigbee2mqtt's last_seen "epoch"): 1e11 s is the
# year 5138.
EPOCH_MS_ABOVE = 1e11

# Entries a mapping remembers of its sensors' names and its payloads' times.
MEMO_MAX = 10_000

MALFORMED, REJECTED, UNKNOWN_SENSOR, IGNORED = "malformed", "rejected", "unknown_sensor", "ignored"


class Problem(Exception):
    """A message that does not hold what its mapping says (kind MALFORMED), or that holds
    nothing the mapping reads (kind IGNORED)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# --- Presets --------------------------------------------------------------------------------


def _field(path: str, metric: str, unit: str, suffix: str = "") -> dict[str, str]:
    entry = {"path": path, "metric": metric, "unit": unit}
    if suffix:
        entry["sensor_suffix"] = suffix
    return entry


# Each preset's mapping fields, as the device's documentation describes its messages (the
# tests feed each one a payload quoted from that documentation).
PRESETS: dict[str, dict[str, Any]] = {
    # Shelly Gen2 (Plus/Pro): NotifyStatus of a switch component on <id>/status/switch:0;
    # apower in W, aenergy.total a register in Wh. No time of measurement: the arrival.
    "shelly_gen2": {
        "topic": "+/status/switch:0",
        "payload_format": "json",
        "sensor_level": 0,
        "fields": [_field("apower", "power", "W"), _field("aenergy.total", "energy_total", "Wh")],
    },
    # Tasmota's teleperiod message: ENERGY.Power in W, ENERGY.Total a register in kWh. Its
    # Time has no offset (the device's local time): the arrival is used unless time_field and
    # time_zone are set.
    "tasmota": {
        "topic": "tele/+/SENSOR",
        "payload_format": "json",
        "sensor_level": 1,
        "fields": [_field("ENERGY.Power", "power", "W"), _field("ENERGY.Total", "energy_total", "kWh")],
    },
    # zigbee2mqtt publishes each device's state on zigbee2mqtt/<friendly name>; energy is a
    # register in kWh. A device reports the fields it has.
    "zigbee2mqtt": {
        "topic": "zigbee2mqtt/+",
        "payload_format": "json",
        "sensor_level": 1,
        "fields": [
            _field("power", "power", "W"),
            _field("energy", "energy_total", "kWh"),
            _field("temperature", "temperature", "C"),
            _field("humidity", "humidity", "%"),
            _field("co2", "co2", "ppm"),
        ],
    },
    # emonhub's MQTT interfacer (node_var_fmt "emon/{nodename}/{keyname}"): one plain number a
    # message. emonTx4 channels P1..P6 (W) with registers E1..E6 (Wh) are one sensor each;
    # emonTx3's power1..power4; emonTH's temperature and humidity.
    "emonhub": {
        "topic": "emon/+/+",
        "payload_format": "number",
        "sensor_level": 1,
        "key_level": 2,
        "fields": [
            *(_field(f"P{n}", "power", "W", f"-{n}") for n in range(1, 7)),
            *(_field(f"E{n}", "energy_total", "Wh", f"-{n}") for n in range(1, 7)),
            *(_field(f"power{n}", "power", "W", f"-{n}") for n in range(1, 5)),
            _field("temperature", "temperature", "C"),
            _field("humidity", "humidity", "%"),
        ],
    },
    # A generic JSON object naming its sensor and time:
    # {"sensor_id": "...", "timestamp": "2026-...Z", "power": 120.5, "temperature": 21.2}.
    "json": {
        "topic": "readings/#",
        "payload_format": "json",
        "sensor_field": "sensor_id",
        "time_field": "timestamp",
        "fields": [
            _field("power", "power", "W"),
            _field("energy", "energy", "kWh"),
            _field("energy_total", "energy_total", "kWh"),
            _field("temperature", "temperature", "C"),
            _field("humidity", "humidity", "%"),
            _field("co2", "co2", "ppm"),
            _field("occupancy", "occupancy", "people"),
        ],
    },
    # One plain number on <prefix>/<sensor>: say which metric it is.
    "number": {
        "topic": "+/+",
        "payload_format": "number",
        "sensor_level": 1,
        "fields": [_field("", "power", "W")],
    },
}


def preset_defaults(preset: str) -> dict[str, Any]:
    """The mapping fields a preset fills (a copy: callers may change it)."""
    defaults: dict[str, Any] = orjson.loads(orjson.dumps(PRESETS[preset]))
    return defaults


def check_fields(fields: Any, payload_format: str) -> str | None:  # noqa: PLR0911 (one answer per rule)
    """What is wrong with a mapping's `fields` (None: nothing)."""
    if not isinstance(fields, list) or not fields:
        return "list at least one field: [{path, metric, unit}]"
    if len(fields) > MAX_FIELDS:
        return f"at most {MAX_FIELDS} fields"
    for n, entry in enumerate(fields):
        if not isinstance(entry, dict):
            return f"field {n}: an object {{path, metric, unit}}"
        unknown = set(entry) - {"path", "metric", "unit", "sensor_suffix"}
        if unknown:
            return f"field {n}: unknown keys {sorted(unknown)}"
        for key in ("path", "metric", "unit", "sensor_suffix"):
            if not isinstance(entry.get(key, ""), str) or len(entry.get(key, "")) > 128:
                return f"field {n}: {key} must be text of at most 128 characters"
        if entry.get("metric") not in METRICS:
            return f"field {n}: metric must be one of {list(METRICS)}"
        if payload_format == "json" and not entry.get("path"):
            return f"field {n}: a JSON field needs its path (e.g. aenergy.total)"
        if _NOT_SLUG.search(entry.get("sensor_suffix", "").lower()):
            return f"field {n}: sensor_suffix may hold letters, digits, - and _ only"
    return None


# --- Topics ---------------------------------------------------------------------------------


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching (3.1.1, 4.7): `+` one level, `#` the rest (the parent included); a filter
    starting with a wildcard does not match topics starting with `$`."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted, levels = topic_filter.split("/"), topic.split("/")
    for index, part in enumerate(wanted):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(wanted) == len(levels)


def specificity(topic_filter: str) -> tuple[int, int]:
    """Of two filters claiming a topic, the more specific ranks higher: fewer wildcards, then
    more literal levels."""
    levels = topic_filter.split("/")
    wild = sum(1 for level in levels if level in ("+", "#"))
    return (-wild, len(levels) - wild)


# --- Decoding -------------------------------------------------------------------------------


def slug(text: str) -> str:
    """A sensor id's text: lowercase, runs of other characters as one hyphen."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


def example(topic: str, payload: bytes) -> dict[str, str]:
    """A message as kept for an operator: its topic and the start of its payload."""
    text = payload[:EXAMPLE_MAX_CHARS].decode("utf-8", "replace")
    return {"topic": topic[:EXAMPLE_MAX_CHARS], "payload": text}


def _dig(document: Any, path: str) -> Any:
    """The value at a dotted path (``aenergy.total``), or `_MISSING`."""
    node = document
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


_MISSING = object()


def _number(value: Any, what: str) -> float:
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):  # JSON's numbers: the usual case
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Problem(MALFORMED, f"{what} is not a number: {str(value)[:40]!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise Problem(MALFORMED, f"{what} is not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise Problem(MALFORMED, f"{what} is not a finite number")
    return number


@dataclass(frozen=True)
class Compiled:
    """A mapping as the ingester applies it (read from `Mapping.as_dict`)."""

    id: int
    name: str
    topic: str
    payload_format: str
    sensor_level: int | None
    sensor_field: str
    sensor_prefix: str
    key_level: int | None
    fields: tuple[dict[str, str], ...]
    time_field: str
    zone: ZoneInfo | None
    register_unknown: bool
    priority: int
    # Per message these repeat (a device's name, a second shared by a thousand sensors): each
    # is worked out once, remembered up to MEMO_MAX entries.
    _names: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    _times: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    _longest_suffix: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        longest = max((len(e.get("sensor_suffix", "")) for e in self.fields), default=0)
        object.__setattr__(self, "_longest_suffix", longest)

    @classmethod
    def of(cls, row: dict[str, Any]) -> Compiled:
        """From `Mapping.as_dict()`."""
        return cls(
            id=row["id"],
            name=row["name"],
            topic=row["topic"],
            payload_format=row["payload_format"],
            sensor_level=row["sensor_level"],
            sensor_field=row["sensor_field"],
            sensor_prefix=row["sensor_prefix"],
            key_level=row["key_level"],
            fields=tuple(row["fields"] or ()),
            time_field=row["time_field"],
            zone=ZoneInfo(row["time_zone"]) if row["time_zone"] else None,
            register_unknown=row["register_unknown"],
            priority=row["priority"],
        )

    @property
    def arrival_time(self) -> bool:
        """Whether the readings are stamped with the message's arrival."""
        return self.payload_format == "number" or not self.time_field

    def _sensor(self, levels: list[str], document: Any) -> str:
        if self.sensor_level is not None:
            if self.sensor_level >= len(levels):
                raise Problem(MALFORMED, f"the topic has no level {self.sensor_level} to name the sensor")
            raw = levels[self.sensor_level]
        else:
            raw = _dig(document, self.sensor_field)
            if raw is _MISSING or isinstance(raw, bool) or not isinstance(raw, str | int):
                raise Problem(MALFORMED, f"no text field {self.sensor_field!r} names the sensor")
            raw = str(raw)
        sensor = self._names.get(raw)
        if sensor is not None:
            return sensor
        name = slug(raw)
        if not name:
            raise Problem(MALFORMED, f"{raw[:40]!r} makes no sensor id")
        sensor = self.sensor_prefix + name
        if len(sensor) + self._longest_suffix > SENSOR_ID_MAX:
            raise Problem(MALFORMED, f"the sensor id {sensor[:40]!r}... is longer than {SENSOR_ID_MAX}")
        if len(self._names) >= MEMO_MAX:
            self._names.clear()
        self._names[raw] = sensor
        return sensor

    def _time(self, document: Any) -> float | str:
        raw = _dig(document, self.time_field)
        if raw is _MISSING:
            raise Problem(MALFORMED, f"the time field {self.time_field!r} is missing")
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            seconds = float(raw)
            return seconds / 1000 if abs(seconds) > EPOCH_MS_ABOVE else seconds
        if isinstance(raw, str):
            known = self._times.get(raw)
            if known is not None:
                return known
            try:
                moment = datetime.fromisoformat(raw)
            except ValueError:
                raise Problem(MALFORMED, f"the time {raw[:40]!r} is not ISO 8601 nor epoch seconds") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.zone or UTC)
            if len(self._times) >= MEMO_MAX:
                self._times.clear()
            seconds = self._times[raw] = moment.timestamp()
            return seconds
        raise Problem(MALFORMED, f"the time field {self.time_field!r} is not a time")

    def decode(self, topic: str, payload: bytes, arrival: float) -> list[dict[str, Any]]:
        """The reading items of one message; `Problem` when it does not hold what it should."""
        levels = topic.split("/")
        if self.payload_format == "number":
            return self._decode_number(levels, payload, arrival)
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise Problem(MALFORMED, "the payload is not JSON") from None
        if not isinstance(document, dict):
            raise Problem(MALFORMED, "the payload is not a JSON object")
        sensor = self._sensor(levels, document)
        stamp = self._time(document) if self.time_field else arrival
        items = []
        for entry in self.fields:
            raw = _dig(document, entry["path"])
            if raw is _MISSING or raw is None:
                continue  # a device reports the fields it has
            items.append(
                {
                    "sensor_id": sensor + entry.get("sensor_suffix", ""),
                    "metric": entry["metric"],
                    "value": _number(raw, f"field {entry['path']!r}"),
                    "unit": entry.get("unit") or None,
                    "timestamp": stamp,
                }
            )
        if not items:
            raise Problem(IGNORED, "none of the mapping's fields is in the payload")
        return items

    def _decode_number(self, levels: list[str], payload: bytes, arrival: float) -> list[dict[str, Any]]:
        key = ""
        if self.key_level is not None:
            if self.key_level >= len(levels):
                raise Problem(MALFORMED, f"the topic has no level {self.key_level} to name the field")
            key = levels[self.key_level]
        entries = [e for e in self.fields if e["path"] in ("", key)]
        if not entries:
            raise Problem(IGNORED, f"no field of the mapping is named {key!r}")
        try:
            text = payload.decode("ascii").strip()
        except UnicodeDecodeError:
            raise Problem(MALFORMED, "the payload is not a plain number") from None
        value = _number(text, "the payload")
        sensor = self._sensor(levels, None)
        return [
            {
                "sensor_id": sensor + entry.get("sensor_suffix", ""),
                "metric": entry["metric"],
                "value": value,
                "unit": entry.get("unit") or None,
                "timestamp": arrival,
            }
            for entry in entries
        ]


def sensor_kind(metric: str) -> str:
    """The kind of a sensor registered for its first metric (sensors.models.Sensor.Kind)."""
    return {
        "energy": "energy_meter",
        "energy_total": "energy_meter",
        "power": "power",
        "co2": "co2",
        "temperature": "temperature",
        "humidity": "humidity",
        "occupancy": "occupancy",
    }.get(metric, "energy_meter")
