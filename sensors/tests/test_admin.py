"""The admin: operators manage the registry; readings are read-only and never counted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import admin as sensors_admin
from sensors import services
from sensors.models import Sensor

pytestmark = pytest.mark.django_db(databases="__all__")


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


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("registry")
def test_readings_page_counts_nothing_and_is_read_only(
    operator_client: Client, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(12) as captured:
        page = operator_client.get("/admin/sensors/reading/?window=all")
    assert page.status_code == 200
    assert [row["value"] for row in page.context["rows"]] == [4, 3, 2, 1, 0]  # newest first
    assert not any(
        "COUNT(" in q["sql"].upper() and "sensors_reading" in q["sql"] for q in captured.captured_queries
    )
    # Nothing to add, change or delete: no such pages.
    assert operator_client.get("/admin/sensors/reading/add/").status_code == 404
    assert b"/admin/sensors/reading/add/" not in page.content


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("registry")
def test_readings_page_filters_and_windows(operator_client: Client) -> None:
    services.readings_ingest(
        readings=[
            {"sensor_id": "p1", "metric": "power", "timestamp": timezone.now().isoformat(), "value": 42},
            {
                "sensor_id": "m1",
                "metric": "energy",
                "timestamp": timezone.now().isoformat(),
                "value": 0.5,
                "quality": "estimated",
            },
        ]
    )

    def shown(query: str) -> list[tuple[str, str, float, str]]:
        page = operator_client.get(f"/admin/sensors/reading/{query}")
        assert page.status_code == 200
        return [(r["sensor_id"], r["metric"], r["value"], r["quality"]) for r in page.context["rows"]]

    # The last hour unless asked: the fixture's readings of 2 November are older.
    assert sorted(shown("")) == [
        ("m1", "Energy (kWh in the interval)", 0.5, "estimated"),
        ("p1", "Power (W)", 42, "measured"),
    ]
    assert shown("?sensor=m1") == [("m1", "Energy (kWh in the interval)", 0.5, "estimated")]
    assert shown("?metric=power") == [("p1", "Power (W)", 42, "measured")]
    assert shown("?quality=estimated") == [("m1", "Energy (kWh in the interval)", 0.5, "estimated")]
    assert len(shown("?window=all&sensor=p1")) == 6
    assert shown("?sensor=nobody&window=all") == []
    # A bad filter is shown as an error and the page still answers, unfiltered.
    page = operator_client.get("/admin/sensors/reading/?window=forever")
    assert page.status_code == 200 and page.context["form"].errors


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("registry")
def test_readings_page_pages_without_counting(
    operator_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sensors_admin, "READINGS_PER_PAGE", 2)
    first = operator_client.get("/admin/sensors/reading/?window=all")
    assert [r["value"] for r in first.context["rows"]] == [4, 3]
    assert first.context["newer_url"] is None
    page = "/admin/sensors/reading/"
    assert first.context["older_url"] == "?window=all&p=2"
    third = operator_client.get(page + first.context["older_url"].replace("p=2", "p=3"))
    assert [r["value"] for r in third.context["rows"]] == [0]
    assert third.context["older_url"] is None
    assert operator_client.get(page + third.context["newer_url"]).context["rows"][0]["value"] == 2


@pytest.mark.usefixtures("registry")
def test_readings_page_is_listed_and_needs_the_view_permission(
    operator_client: Client, make_user: Callable[..., User]
) -> None:
    index = operator_client.get("/admin/")
    sensors_app = next(app for app in index.context["app_list"] if app["app_label"] == "sensors")
    assert {"name": "Readings", "admin_url": "/admin/sensors/reading/"}.items() <= next(
        m for m in sensors_app["models"] if m["object_name"] == "Reading"
    ).items()
    assert b'href="/admin/sensors/reading/"' in operator_client.get("/admin/sensors/").content

    stranger = Client()
    stranger.force_login(make_user("staff-without-roles", None, is_staff=True))
    assert stranger.get("/admin/sensors/reading/").status_code == 403
    assert b"/admin/sensors/reading/" not in stranger.get("/admin/").content


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
    assert meter.room is not None and meter.room.name == "lab" and meter.expected_interval_s == 900


def test_viewer_cannot_change_sensors(viewer: Any) -> None:
    viewer.is_staff = True
    viewer.save()
    client = Client()
    client.force_login(viewer)
    assert client.get("/admin/sensors/sensor/").status_code == 200
    assert client.get("/admin/sensors/sensor/add/").status_code == 403
