"""The sensor and room registry over the API."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from energy_dashboard.core import events
from sensors import services
from sensors.models import Room, Sensor

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def building() -> None:
    services.room_create(name="lab", display_name="Lab", floor="1")
    services.room_create(name="hall", display_name="Hall", floor="0")
    services.sensor_register(sensor_id="lab-power", kind="power", room_name="lab", name="Lab power")
    services.sensor_register(sensor_id="lab-co2", kind="co2", room_name="lab")
    services.sensor_register(sensor_id="hall-temp", kind="temperature", room_name="hall")
    services.sensor_register(sensor_id="meter-1", kind="energy_meter", external_id="PT0002000012345678XX")


def ids(response: Any) -> list[str]:
    return [s["sensor_id"] for s in response.json()["results"]]


@pytest.mark.usefixtures("building")
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["hall-temp", "lab-co2", "lab-power", "meter-1"]),
        ("?room=lab", ["lab-co2", "lab-power"]),
        ("?kind=co2&kind=temperature", ["hall-temp", "lab-co2"]),
        ("?unassigned=true", ["meter-1"]),
        ("?search=12345678", ["meter-1"]),
        ("?search=lab%20pow", ["lab-power"]),
        ("?status=stale", []),
    ],
)
def test_sensor_list_filters(viewer_api: APIClient, query: str, expected: list[str]) -> None:
    response = viewer_api.get(f"/api/v1/sensors/{query}")
    assert response.status_code == 200
    assert ids(response) == expected


@pytest.mark.usefixtures("building")
def test_seed_alias_lists_the_same(viewer_api: APIClient) -> None:
    assert ids(viewer_api.get("/api/v1/sensors/get?room=lab")) == ["lab-co2", "lab-power"]


def test_sensor_list_query_count_does_not_grow_with_rows(
    viewer_api: APIClient, django_assert_max_num_queries: Any
) -> None:
    services.room_create(name="r")
    for i in range(30):
        services.sensor_register(sensor_id=f"s-{i}", kind="power", room_name="r")
    # Count, page, and the user's groups: independent of the number of sensors.
    with django_assert_max_num_queries(4):
        response = viewer_api.get("/api/v1/sensors/")
    assert response.json()["count"] == 30
    with django_assert_max_num_queries(4):
        assert viewer_api.get("/api/v1/rooms/").json()["results"][0]["sensor_count"] == 30


@pytest.mark.usefixtures("building")
def test_sensor_detail_by_sensor_id(viewer_api: APIClient) -> None:
    body = viewer_api.get("/api/v1/sensors/lab-power").json()
    assert body["room"] == "lab" and body["kind"] == "power" and body["status"] == "active"
    assert viewer_api.get("/api/v1/sensors/nope").status_code == 404


def test_operator_registers_a_sensor_and_the_bus_hears_it(
    operator_api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    heard: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    services.room_create(name="lab")
    events.sensor_events.connect(receiver, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True, using="sensors"):
            response = operator_api.post(
                "/api/v1/sensors/", {"sensor_id": "lab-hum", "kind": "humidity", "room": "lab"}, format="json"
            )
    finally:
        events.sensor_events.disconnect(dispatch_uid="t")
    assert response.status_code == 201, response.json()
    assert response.json()["room"] == "lab"
    room = Sensor.objects.get(sensor_id="lab-hum").room
    assert room is not None and room.name == "lab"
    assert [(e["sensor_id"], e["event"], e["room"]) for e in heard] == [("lab-hum", "registered", "lab")]


def test_viewer_may_not_register(viewer_api: APIClient) -> None:
    response = viewer_api.post("/api/v1/sensors/", {"sensor_id": "x", "kind": "power"}, format="json")
    assert response.status_code == 403
    assert not Sensor.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sensor_id": "x", "kind": "toaster"}, "kind"),
        ({"sensor_id": "bad id!", "kind": "power"}, "sensor_id"),
        ({"sensor_id": "x", "kind": "power", "room": "nowhere"}, "room"),
        ({"sensor_id": "x", "kind": "power", "metadata": [1]}, "metadata"),
    ],
)
def test_bad_sensor_is_refused_with_the_field_named(
    operator_api: APIClient, body: dict[str, Any], field: str
) -> None:
    response = operator_api.post("/api/v1/sensors/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert response.json()["message"].startswith(field)


@pytest.mark.usefixtures("building")
def test_duplicate_sensor_id_is_refused(operator_api: APIClient) -> None:
    response = operator_api.post("/api/v1/sensors/", {"sensor_id": "lab-co2", "kind": "co2"}, format="json")
    assert response.status_code == 400
    assert "sensor_id" in response.json()["errors"]


@pytest.mark.usefixtures("building")
def test_operator_assigns_a_meter_to_a_room_and_deletes_a_sensor(operator_api: APIClient) -> None:
    response = operator_api.patch("/api/v1/sensors/meter-1", {"room": "hall"}, format="json")
    assert response.status_code == 200 and response.json()["room"] == "hall"
    response = operator_api.patch("/api/v1/sensors/meter-1", {"sensor_id": "renamed"}, format="json")
    assert response.status_code == 400
    assert operator_api.delete("/api/v1/sensors/lab-co2").status_code == 204
    assert not Sensor.objects.filter(sensor_id="lab-co2").exists()


@pytest.mark.usefixtures("building")
def test_rooms_by_name(viewer_api: APIClient, operator_api: APIClient) -> None:
    assert viewer_api.get("/api/v1/rooms/names").json() == ["hall", "lab"]
    lab = viewer_api.get("/api/v1/rooms/lab").json()
    assert lab["display_name"] == "Lab" and lab["sensor_count"] == 2
    created = operator_api.post("/api/v1/rooms/", {"name": "attic", "floor": "3"}, format="json")
    assert created.status_code == 201 and created.json()["sensor_count"] == 0
    assert operator_api.patch("/api/v1/rooms/attic", {"capacity": 4}, format="json").json()["capacity"] == 4
    assert operator_api.delete("/api/v1/rooms/lab").status_code == 204
    # Its sensors stay, with no room.
    assert Sensor.objects.get(sensor_id="lab-power").room is None
    assert not Room.objects.filter(name="lab").exists()
