"""What the rest of the ingestion module (its API, admin, `ingestion.services`) does with MQTT
brokers and mappings: create mappings from presets, say whether the ingester has work, and
report its state for /health."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from ingestion.mqtt import state
from ingestion.mqtt.models import Broker, Mapping
from ingestion.mqtt.payloads import preset_defaults

# The mapping fields a preset fills when they are not given.
PRESET_FIELDS = (
    "topic",
    "payload_format",
    "sensor_level",
    "sensor_field",
    "key_level",
    "fields",
    "time_field",
)


def mapping_fill_from_preset(values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """`values` with what its preset fills where a field is not given (on creation only:
    a later change keeps the mapping's own fields)."""
    if not creating:
        return values
    preset = values.get("preset") or Mapping.Preset.JSON
    filled = dict(values)
    for name, value in preset_defaults(preset).items():
        if name in PRESET_FIELDS and filled.get(name) in (None, "", []):
            filled[name] = value
    return filled


def mapping_create(*, broker: Broker, name: str, preset: str = Mapping.Preset.JSON, **fields: Any) -> Mapping:
    """A mapping of `broker` from `preset`, the given fields taking precedence; validated."""
    values = mapping_fill_from_preset({"preset": preset, **fields}, creating=True)
    mapping = Mapping(broker=broker, name=name, **values)
    mapping.full_clean()
    mapping.save()
    return mapping


NOT_REPORTING = (
    "the MQTT ingester has not reported in: `manage.py run` starts it when a broker is enabled as it "
    "starts, so restart it after enabling the first broker (or run `manage.py mqtt_ingest`)"
)


def brokers_enabled() -> bool:
    """Whether the ingester has a broker to subscribe to (`manage.py run` starts it then)."""
    return Broker.objects.filter(enabled=True).exists()


def health() -> dict[str, Any]:
    """Each enabled broker's state as the ingester last wrote it.

    ``ok`` is False when an enabled broker has no fresh state (the ingester is not running)
    or is not connected; ``running`` says whether the ingester reports at all.
    """
    enabled = list(Broker.objects.filter(enabled=True).values_list("name", flat=True))
    if not enabled:
        return {"ok": True, "running": None, "brokers": {}}
    live = state.read()
    now = time.time()
    brokers: dict[str, Any] = {}
    for name in enabled:
        found = live.get(name)
        if found is None:
            brokers[name] = {"connected": False, "error": NOT_REPORTING}
            continue
        brokers[name] = {
            "connected": found["connected"],
            "error": found["error"],
            "error_kind": found["error_kind"],
            "last_message_age_s": round(now - found["last_message_at"], 1)
            if found["last_message_at"]
            else None,
            "messages_in": found["messages_in"],
            "readings_stored": found["readings_stored"],
            "rejected": found["rejected"] + found["malformed"] + found["unknown_sensors"],
            "unknown_topics": found["unknown_topics"],
            "state_age_s": round(now - found["at"], 1),
        }
    running = any(name in live for name in enabled)
    ok = all(b["connected"] for b in brokers.values())
    return {
        "ok": ok,
        "running": running,
        "brokers": brokers,
        **({} if ok else {"error": "an enabled MQTT broker is not connected"}),
    }


def live_state(broker: Broker) -> dict[str, Any] | None:
    """The ingester's state of one broker (None when it is not reporting)."""
    found = state.read().get(broker.name)
    if found is None or time.time() - found["at"] > settings.HEARTBEAT_MAX_AGE_S:
        return None
    return found
