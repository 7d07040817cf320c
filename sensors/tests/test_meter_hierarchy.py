"""The meter hierarchy (Sensor.part_of): what it accepts, what it refuses, through the
services, the API and the admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from sensors import services
from sensors.models import MAX_METER_DEPTH, Sensor

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def meters() -> None:
    services.room_create(name="lab")
    services.sensor_register(sensor_id="main", kind="energy_meter")
    services.sensor_register(sensor_id="floor-1", kind="energy_meter", part_of="main")
    services.sensor_register(sensor_id="lab-meter", kind="energy_meter", room_name="lab", part_of="floor-1")
    services.sensor_register(sensor_id="lab-power", kind="power", room_name="lab")
    services.sensor_register(sensor_id="lab-co2", kind="co2", room_name="lab")


def sensor(sensor_id: str) -> Sensor:
    return Sensor.objects.get(sensor_id=sensor_id)


@pytest.mark.usefixtures("meters")
def test_services_register_and_change_the_parent() -> None:
    assert sensor("lab-meter").part_of == sensor("floor-1")
    assert list(sensor("main").sub_meters.values_list("sensor_id", flat=True)) == ["floor-1"]
    services.sensor_update(sensor=sensor("lab-meter"), part_of="main")
    assert sensor("lab-meter").part_of == sensor("main")
    services.sensor_update(sensor=sensor("lab-meter"), part_of=None)
    assert sensor("lab-meter").part_of is None


@pytest.mark.usefixtures("meters")
@pytest.mark.parametrize(
    ("child", "parent", "code"),
    [
        ("lab-power", "main", "part_of_kind"),  # power is not energy
        ("lab-co2", "main", "part_of_kind"),  # not a meter at all
        ("main", "main", "part_of_cycle"),
        ("main", "lab-meter", "part_of_cycle"),  # its own grandchild
    ],
)
def test_the_hierarchy_refuses(child: str, parent: str, code: str) -> None:
    before = sensor(child).part_of_id
    with pytest.raises(ValidationError) as refused:
        services.sensor_update(sensor=sensor(child), part_of=parent)
    assert refused.value.error_dict["part_of"][0].code == code
    assert sensor(child).part_of_id == before


@pytest.mark.usefixtures("meters")
def test_depth_is_bounded_below_and_above() -> None:
    # main > floor-1 > lab-meter is 3 levels; MAX_METER_DEPTH more levels under lab-meter can
    # only be added up to the limit.
    parent = "lab-meter"
    for level in range(4, MAX_METER_DEPTH + 1):
        services.sensor_register(sensor_id=f"level-{level}", kind="energy_meter", part_of=parent)
        parent = f"level-{level}"
    with pytest.raises(ValidationError) as refused:
        services.sensor_register(sensor_id="too-deep", kind="energy_meter", part_of=parent)
    assert refused.value.error_dict["part_of"][0].code == "part_of_depth"
    assert not Sensor.objects.filter(sensor_id="too-deep").exists()  # the registration rolled back
    # Moving a subtree under another meter counts the subtree's own depth too.
    services.sensor_register(sensor_id="other-main", kind="energy_meter")
    services.sensor_register(sensor_id="other-sub", kind="energy_meter", part_of="other-main")
    with pytest.raises(ValidationError):
        services.sensor_update(sensor=sensor("main"), part_of="other-sub")


@pytest.mark.usefixtures("meters")
def test_a_meter_with_sub_meters_keeps_its_kind() -> None:
    with pytest.raises(ValidationError) as refused:
        services.sensor_update(sensor=sensor("floor-1"), kind="power")
    assert "kind" in refused.value.error_dict


@pytest.mark.usefixtures("meters")
def test_deleting_a_parent_makes_its_sub_meters_top_level() -> None:
    services.sensor_delete(sensor=sensor("floor-1"))
    assert sensor("lab-meter").part_of is None


@pytest.mark.usefixtures("meters")
def test_api_shows_and_sets_part_of_with_messages(operator_api: APIClient) -> None:
    assert operator_api.get("/api/v1/sensors/lab-meter/").json()["part_of"] == "floor-1"
    created = operator_api.post(
        "/api/v1/sensors/",
        {"sensor_id": "hall-meter", "kind": "energy_meter", "part_of": "main"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert sensor("hall-meter").part_of == sensor("main")
    cycle = operator_api.patch("/api/v1/sensors/main/", {"part_of": "lab-meter"}, format="json")
    assert cycle.status_code == 400
    assert "cycle" in str(cycle.json())
    kind = operator_api.patch("/api/v1/sensors/lab-power/", {"part_of": "main"}, format="json")
    assert kind.status_code == 400
    assert "kind" in str(kind.json())
    unknown = operator_api.patch("/api/v1/sensors/lab-power/", {"part_of": "nope"}, format="json")
    assert unknown.status_code == 400
    assert sensor("main").part_of is None and sensor("lab-power").part_of is None


@pytest.mark.usefixtures("meters")
def test_admin_refuses_a_cycle_with_the_message(client: Client, operator: User) -> None:
    client.force_login(operator)
    main = sensor("main")
    response = client.post(
        f"/admin/sensors/sensor/{main.pk}/change/",
        {
            "sensor_id": "main",
            "name": "",
            "kind": "energy_meter",
            "room": "",
            "part_of": str(sensor("lab-meter").pk),
            "external_id": "",
            "status": "active",
            "expected_interval_s": "300",
            "metadata": "{}",
        },
    )
    assert response.status_code == 200  # the form again, with its error
    assert "a cycle" in response.content.decode()
    assert sensor("main").part_of is None
    response = client.post(
        f"/admin/sensors/sensor/{sensor('lab-power').pk}/change/",
        {
            "sensor_id": "lab-power",
            "name": "",
            "kind": "power",
            "room": str(sensor("lab-power").room_id),
            "part_of": "",
            "external_id": "",
            "status": "active",
            "expected_interval_s": "600",
            "metadata": "{}",
        },
    )
    assert response.status_code == 302
    assert sensor("lab-power").expected_interval_s == 600
