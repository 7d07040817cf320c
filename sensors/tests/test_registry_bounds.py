"""The registry accepts only values every job and query can compute with (README, "Limits")."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from sensors import services
from sensors.models import (
    MAX_EXPECTED_INTERVAL_S,
    MAX_ROOM_CAPACITY,
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    Room,
    Sensor,
)

pytestmark = pytest.mark.django_db(databases="__all__")


def deep_json(depth: int) -> bytes:
    """JSON text of an object `depth` levels deep (too deep for the stdlib's encoder)."""
    return b'{"a": ' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def refused(response: Any, field: str, *words: str) -> None:
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert field in body["errors"] and body["message"].startswith(field), body
    for word in words:
        assert word in body["message"], (word, body["message"])


def test_metadata_nested_1000_deep_is_refused(operator_api: APIClient) -> None:
    body = b'{"sensor_id": "s", "kind": "power", "metadata": ' + deep_json(1000) + b"}"
    # Bytes, as DRF's APIClient.generic takes (its stubs say str).
    response = operator_api.generic("POST", "/api/v1/sensors/", body, content_type="application/json")  # type: ignore[arg-type]
    refused(response, "metadata", f"{METADATA_MAX_DEPTH} levels")
    assert not Sensor.objects.exists()


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        (nested(METADATA_MAX_DEPTH + 1), [f"{METADATA_MAX_DEPTH} levels"]),
        ({"a": [[[[[[[[[[[1]]]]]]]]]]]}, [f"{METADATA_MAX_DEPTH} levels"]),
        ({"blob": "x" * 10_000_000}, [f"{METADATA_MAX_BYTES} bytes"]),
        ({"blob": "x" * METADATA_MAX_BYTES}, [f"{METADATA_MAX_BYTES} bytes"]),
    ],
)
def test_deep_or_large_metadata_is_refused(operator_api: APIClient, metadata: Any, words: list[str]) -> None:
    response = operator_api.post(
        "/api/v1/sensors/", {"sensor_id": "s", "kind": "power", "metadata": metadata}, format="json"
    )
    refused(response, "metadata", *words)
    assert not Sensor.objects.exists()


def test_metadata_within_the_bounds_is_kept(operator_api: APIClient) -> None:
    metadata = {
        "vendor": "acme",
        "deep": nested(METADATA_MAX_DEPTH - 1),
        "blob": "x" * (METADATA_MAX_BYTES - 100),
    }
    response = operator_api.post(
        "/api/v1/sensors/", {"sensor_id": "s", "kind": "power", "metadata": metadata}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert Sensor.objects.get(sensor_id="s").metadata == metadata


def test_metadata_bounds_hold_on_update_too(operator_api: APIClient) -> None:
    services.sensor_register(sensor_id="s", kind="power")
    body = b'{"metadata": ' + deep_json(1000) + b"}"
    # Bytes, as DRF's APIClient.generic takes (its stubs say str).
    response = operator_api.generic("PATCH", "/api/v1/sensors/s", body, content_type="application/json")  # type: ignore[arg-type]
    refused(response, "metadata", f"{METADATA_MAX_DEPTH} levels")


@pytest.mark.parametrize("value", [2**63 - 1, 2**31, MAX_EXPECTED_INTERVAL_S + 1, 0, -1])
def test_expected_interval_is_bounded(operator_api: APIClient, value: int) -> None:
    response = operator_api.post(
        "/api/v1/sensors/", {"sensor_id": "s", "kind": "power", "expected_interval_s": value}, format="json"
    )
    refused(response, "expected_interval_s")


def test_expected_interval_at_its_bound_is_taken(operator_api: APIClient) -> None:
    response = operator_api.post(
        "/api/v1/sensors/",
        {"sensor_id": "s", "kind": "power", "expected_interval_s": MAX_EXPECTED_INTERVAL_S},
        format="json",
    )
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"capacity": 2**63 - 1}, "capacity"),
        ({"capacity": MAX_ROOM_CAPACITY + 1}, "capacity"),
        ({"area_m2": -5}, "area_m2"),
        ({"area_m2": "1e1000000"}, "area_m2"),
        ({"area_m2": "NaN"}, "area_m2"),
        ({"display_name": "x" * 10_000}, "display_name"),
        ({"floor": "x" * 1000}, "floor"),
        ({"display_name": "a\x00b"}, "display_name"),
    ],
)
def test_room_fields_are_bounded(operator_api: APIClient, body: dict[str, Any], field: str) -> None:
    refused(operator_api.post("/api/v1/rooms/", {"name": "r", **body}, format="json"), field)
    assert not Room.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sensor_id": "x" * 65}, "sensor_id"),
        ({"name": "x" * 129}, "name"),
        ({"external_id": "x" * 65}, "external_id"),
        ({"name": "a\x00b"}, "name"),
    ],
)
def test_sensor_text_fields_are_bounded(operator_api: APIClient, body: dict[str, Any], field: str) -> None:
    refused(
        operator_api.post("/api/v1/sensors/", {"sensor_id": "s", "kind": "power", **body}, format="json"),
        field,
    )


def test_the_admin_refuses_what_the_api_refuses(operator_client: Client) -> None:
    form = {
        "sensor_id": "s",
        "name": "",
        "kind": "power",
        "status": "active",
        "expected_interval_s": str(2**63 - 1),
        "metadata": '{"a": ' * 50 + "1" + "}" * 50,
    }
    page = operator_client.post("/admin/sensors/sensor/add/", form)
    assert page.status_code == 200  # the form again, with its errors
    errors = page.context["adminform"].form.errors
    assert "expected_interval_s" in errors and "metadata" in errors
    assert not Sensor.objects.exists()
    room = operator_client.post(
        "/admin/sensors/room/add/", {"name": "r", "capacity": str(2**40), "area_m2": "-1"}
    )
    assert room.status_code == 200
    assert {"capacity", "area_m2"} <= set(room.context["adminform"].form.errors)


def test_the_admin_refuses_metadata_too_deep_to_parse(operator_client: Client) -> None:
    form = {
        "sensor_id": "s",
        "kind": "power",
        "status": "active",
        "expected_interval_s": "60",
        "metadata": deep_json(100_000).decode(),
    }
    page = operator_client.post("/admin/sensors/sensor/add/", form)
    assert page.status_code == 200
    assert "metadata" in page.context["adminform"].form.errors
    assert not Sensor.objects.exists()
