"""Topic filters and payload decoding (pure: no broker, no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from ingestion.mqtt.models import validate_topic_filter
from ingestion.mqtt.payloads import (
    IGNORED,
    MALFORMED,
    Compiled,
    Problem,
    check_fields,
    preset_defaults,
    specificity,
    topic_matches,
)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("tele/+/SENSOR", "tele/plug/SENSOR", True),
        ("tele/+/SENSOR", "tele/plug/STATE", False),
        ("tele/+/SENSOR", "tele/a/b/SENSOR", False),
        ("emon/#", "emon", True),  # `#` includes the parent level
        ("emon/#", "emon/tx4/P1", True),
        ("#", "$SYS/broker/uptime", False),  # wildcards do not reach $ topics
        ("+/status/switch:0", "shelly-1/status/switch:0", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_filters_match_as_mqtt_says(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


def test_the_more_specific_filter_ranks_higher() -> None:
    assert specificity("tele/plug/SENSOR") > specificity("tele/+/SENSOR") > specificity("tele/#")


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a/+b", ""])
def test_a_bad_topic_filter_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        validate_topic_filter(bad)


def mapping(**overrides: Any) -> Compiled:
    row = {
        "id": 1,
        "name": "m",
        "topic": "#",
        "payload_format": "json",
        "sensor_level": None,
        "sensor_field": "",
        "sensor_prefix": "",
        "key_level": None,
        "fields": [],
        "time_field": "",
        "time_zone": "",
        "register_unknown": False,
        "priority": 0,
    }
    preset = overrides.pop("preset", None)
    if preset:
        row |= preset_defaults(preset)
    return Compiled.of(row | overrides)


def test_a_naive_time_is_read_in_the_mappings_zone_and_epoch_milliseconds_are_seen() -> None:
    tasmota = mapping(preset="tasmota", time_field="Time", time_zone="Europe/Lisbon")
    items = tasmota.decode("tele/p/SENSOR", b'{"Time":"2026-07-01T12:00:00","ENERGY":{"Power":5}}', 0.0)
    assert items[0]["timestamp"] == datetime(2026, 7, 1, 11, 0, tzinfo=UTC).timestamp()  # WEST is +01:00
    generic = mapping(preset="json", time_field="ts")
    items = generic.decode("readings/x", b'{"sensor_id":"x","ts":1780000000123,"power":1}', 0.0)
    assert items[0]["timestamp"] == pytest.approx(1780000000.123)


@pytest.mark.parametrize(
    ("payload", "kind", "reason"),
    [
        (b"[1, 2]", MALFORMED, "not a JSON object"),
        (b'{"sensor_id": true, "power": 1}', MALFORMED, "names the sensor"),
        (b'{"sensor_id": "x", "power": 1, "timestamp": "yesterday"}', MALFORMED, "not ISO 8601"),
        (b'{"sensor_id": "x", "power": "NaN", "timestamp": 1}', MALFORMED, "finite"),
        (b'{"sensor_id": "x", "power": [1], "timestamp": 1}', MALFORMED, "not a number"),
        (b'{"sensor_id": "x", "timestamp": 1, "voltage": 230}', IGNORED, "none of the mapping's fields"),
        (b'{"sensor_id": "' + b"x" * 80 + b'", "power": 1, "timestamp": 1}', MALFORMED, "longer than 64"),
        (b'{"sensor_id": "!!!", "power": 1, "timestamp": 1}', MALFORMED, "makes no sensor id"),
    ],
)
def test_a_payload_that_is_not_what_the_mapping_says_is_a_problem(
    payload: bytes, kind: str, reason: str
) -> None:
    with pytest.raises(Problem) as caught:
        mapping(preset="json").decode("readings/x", payload, 0.0)
    assert caught.value.kind == kind and reason in caught.value.reason


def test_plain_numbers_need_a_number_and_a_named_field() -> None:
    emon = mapping(preset="emonhub")
    assert emon.decode("emon/tx/P3", b" 12.5\n", 7.0) == [
        {"sensor_id": "tx-3", "metric": "power", "value": 12.5, "unit": "W", "timestamp": 7.0}
    ]
    with pytest.raises(Problem, match="not a number"):
        emon.decode("emon/tx/P3", b"on", 7.0)
    with pytest.raises(Problem, match="not a plain number"):
        emon.decode("emon/tx/P3", "½".encode(), 7.0)
    with pytest.raises(Problem) as caught:
        emon.decode("emon/tx/V1", b"230", 7.0)
    assert caught.value.kind == IGNORED
    with pytest.raises(Problem, match="no level 2"):
        emon.decode("emon/tx", b"1", 7.0)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ([], "at least one field"),
        ([{"path": "a", "metric": "volts"}], "metric must be one of"),
        ([{"path": "a", "metric": "power", "colour": "red"}], "unknown keys"),
        ([{"path": "a", "metric": "power", "sensor_suffix": "a b"}], "sensor_suffix"),
        (["power"], "an object"),
    ],
)
def test_fields_that_cannot_work_are_refused(fields: Any, fragment: str) -> None:
    problem = check_fields(fields, "json")
    assert problem is not None and fragment in problem


def test_every_preset_is_a_valid_mapping() -> None:
    from ingestion.mqtt.payloads import PRESETS

    for name, values in PRESETS.items():
        assert check_fields(values["fields"], values["payload_format"]) is None, name
        validate_topic_filter(values["topic"])
