"""The admin: operators manage the registry; readings are read-only and never counted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from sensors import services
from sensors.models import Sensor

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def operator_client(operator: Any) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def registry() -> None:
    services.room_create(name="lab")
    services.sensor_register(sensor_id="p1", kind="power", room_name="lab")
    services.sensor_register(sensor_id="m1", kind="energy_meter", external_id="PT0002000012345678XX")
    services.readings_ingest(
        readings=[
            {
                "sensor_id": "p1",
                "metric": "power",
                "timestamp": datetime(2026, 11, 2, 10, m, tzinfo=UTC).isoformat(),
                "value": m,
            }
            for m in range(5)
        ]
    )


@pytest.mark.usefixtures("registry")
@pytest.mark.parametrize(
    "path",
    [
        "/admin/sensors/room/",
        "/admin/sensors/sensor/",
        "/admin/sensors/sensor/?room__isempty=1",
        "/admin/sensors/sensor/?q=PT0002",
        "/admin/sensors/reading/",
        "/admin/sensors/rollup/",
        "/admin/sensors/roommetrics/",
        "/admin/django_celery_beat/periodictask/",
    ],
)
def test_operator_pages_render(operator_client: Client, path: str) -> None:
    assert operator_client.get(path).status_code == 200


@pytest.mark.usefixtures("registry")
def test_readings_list_counts_nothing_and_is_read_only(
    operator_client: Client, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(12) as captured:
        page = operator_client.get("/admin/sensors/reading/")
    assert page.status_code == 200
    assert not any(
        "COUNT(" in q["sql"].upper() and "sensors_reading" in q["sql"] for q in captured.captured_queries
    )
    assert operator_client.get("/admin/sensors/reading/add/").status_code == 403


@pytest.mark.usefixtures("registry")
def test_bulk_action_and_room_assignment(operator_client: Client) -> None:
    ids = list(Sensor.objects.values_list("pk", flat=True))
    response = operator_client.post(
        "/admin/sensors/sensor/", {"action": "mark_inactive", "_selected_action": ids}, follow=True
    )
    assert response.status_code == 200
    assert set(Sensor.objects.values_list("status", flat=True)) == {"inactive"}
    meter = Sensor.objects.get(sensor_id="m1")
    response = operator_client.post(
        f"/admin/sensors/sensor/{meter.pk}/change/",
        {
            "sensor_id": "m1",
            "name": "",
            "kind": "energy_meter",
            "room": Sensor.objects.get(sensor_id="p1").room_id,
            "external_id": "PT0002000012345678XX",
            "status": "active",
            "expected_interval_s": 900,
            "metadata": "{}",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    meter.refresh_from_db()
    assert meter.room.name == "lab" and meter.expected_interval_s == 900


def test_viewer_cannot_change_sensors(viewer: Any) -> None:
    viewer.is_staff = True
    viewer.save()
    client = Client()
    client.force_login(viewer)
    assert client.get("/admin/sensors/sensor/").status_code == 200
    assert client.get("/admin/sensors/sensor/add/").status_code == 403
