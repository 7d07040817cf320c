"""The MQTT API and admin: operators change brokers and mappings, viewers read; the password is
never returned; a mapping takes its preset's fields; bad input's examples are for operators."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from ingestion.mqtt.models import Broker, Mapping

pytestmark = pytest.mark.django_db(databases="__all__")

BROKERS = "/api/v1/ingestion/mqtt/brokers/"
MAPPINGS = "/api/v1/ingestion/mqtt/mappings/"
BROKER = {"name": "site", "host": "127.0.0.1", "port": 1883, "username": "ingest", "password": "s3cret-mqtt"}


def test_operators_create_brokers_and_the_password_is_never_returned(operator_api: APIClient) -> None:
    created = operator_api.post(BROKERS, BROKER, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert "password" not in body and body["has_password"] is True
    assert body["state"] is None  # no ingester running
    assert Broker.objects.get(name="site").password == "s3cret-mqtt"
    assert "s3cret-mqtt" not in str(operator_api.get(BROKERS).json())
    assert "s3cret-mqtt" not in str(operator_api.get(BROKERS + "site").json())
    # Changing something else keeps the password.
    changed = operator_api.patch(BROKERS + "site", {"enabled": False}, format="json")
    assert changed.status_code == 200 and Broker.objects.get(name="site").password == "s3cret-mqtt"


def test_viewers_read_brokers_and_mappings_but_change_nothing(operator_api: APIClient, viewer: Any) -> None:
    operator_api.post(BROKERS, BROKER, format="json")
    viewer_api = APIClient()
    viewer_api.force_authenticate(viewer)
    assert viewer_api.get(BROKERS).status_code == 200
    assert viewer_api.get(MAPPINGS).status_code == 200
    refused = viewer_api.post(BROKERS, BROKER | {"name": "other"}, format="json")
    assert refused.status_code == 403 and refused.json()["message"]
    refused = viewer_api.post(MAPPINGS, {"broker": "site", "name": "m", "preset": "tasmota"}, format="json")
    assert refused.status_code == 403
    assert viewer_api.delete(BROKERS + "site").status_code == 403


def test_a_mapping_takes_its_presets_fields_where_none_are_given(operator_api: APIClient) -> None:
    operator_api.post(BROKERS, BROKER, format="json")
    created = operator_api.post(
        MAPPINGS,
        {"broker": "site", "name": "plugs", "preset": "shelly_gen2", "register_unknown": True},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["topic"] == "+/status/switch:0" and body["sensor_level"] == 0
    assert body["fields"] == [
        {"path": "apower", "metric": "power", "unit": "W"},
        {"path": "aenergy.total", "metric": "energy_total", "unit": "Wh"},
    ]
    # Given fields win over the preset's.
    custom = operator_api.post(
        MAPPINGS,
        {
            "broker": "site",
            "name": "boiler",
            "preset": "number",
            "topic": "boiler/+/temp",
            "fields": [{"path": "", "metric": "temperature", "unit": "C"}],
        },
        format="json",
    )
    assert custom.status_code == 201, custom.json()
    assert custom.json()["topic"] == "boiler/+/temp" and custom.json()["fields"][0]["metric"] == "temperature"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"topic": "a/#/b"}, "topic"),
        ({"topic": "a/b+"}, "topic"),
        ({"fields": [{"path": "x", "metric": "voltage", "unit": "V"}]}, "fields"),
        ({"fields": [{"path": "", "metric": "power", "unit": "W"}]}, "fields"),  # JSON needs a path
        ({"payload_format": "number", "sensor_field": "name"}, "sensor_field"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
    ],
)
def test_a_mapping_that_cannot_work_is_refused_with_a_message(
    operator_api: APIClient, change: dict[str, Any], field: str
) -> None:
    operator_api.post(BROKERS, BROKER, format="json")
    body = {"broker": "site", "name": "bad", "preset": "tasmota"} | change
    refused = operator_api.post(MAPPINGS, body, format="json")
    assert refused.status_code == 400, refused.json()
    assert field in str(refused.json())
    assert not Mapping.objects.filter(name="bad").exists()


def test_a_broker_host_outside_the_allowed_networks_is_refused(
    operator_api: APIClient, settings: Any
) -> None:
    settings.INGESTION_ALLOWED_NETWORKS = []
    # Loopback, refused once INGESTION_ALLOWED_NETWORKS no longer lists it (the address rules are
    # ingestion.addresses', tested in test_addresses.py).
    refused = operator_api.post(BROKERS, BROKER, format="json")
    assert refused.status_code == 400 and "INGESTION_ALLOWED_NETWORKS" in refused.json()["errors"]["host"][0]


def test_a_mappings_fields_cannot_be_emptied_later(operator_api: APIClient) -> None:
    operator_api.post(BROKERS, BROKER, format="json")
    made = operator_api.post(
        MAPPINGS, {"broker": "site", "name": "t", "preset": "tasmota"}, format="json"
    ).json()
    refused = operator_api.patch(f"{MAPPINGS}{made['id']}", {"fields": []}, format="json")
    assert refused.status_code == 400 and "fields" in refused.json()["errors"]
    assert len(Mapping.objects.get(name="t").fields) == 2


def test_examples_of_bad_input_are_for_operators_only(operator_api: APIClient, viewer: Any) -> None:
    operator_api.post(BROKERS, BROKER, format="json")
    operator_api.post(MAPPINGS, {"broker": "site", "name": "t", "preset": "tasmota"}, format="json")
    example = {
        "reason": "the payload is not JSON",
        "topic": "tele/x/SENSOR",
        "payload": "oops",
        "at": "2026-01-01T00:00:00Z",
    }
    Mapping.objects.filter(name="t").update(
        malformed_count=3, last_problems={"malformed": example | {"count": 3}}
    )
    Broker.objects.filter(name="site").update(
        unclaimed_count=1, last_unclaimed={"topic": "x/y", "payload": "1", "at": "2026-01-01T00:00:00Z"}
    )
    seen = operator_api.get(MAPPINGS + "?broker=site").json()
    rows = seen["results"] if isinstance(seen, dict) else seen
    assert rows[0]["last_problems"]["malformed"]["payload"] == "oops"
    assert rows[0]["malformed_count"] == 3
    assert operator_api.get(BROKERS + "site").json()["last_unclaimed"]["topic"] == "x/y"
    viewer_api = APIClient()
    viewer_api.force_authenticate(viewer)
    seen = viewer_api.get(MAPPINGS).json()
    rows = seen["results"] if isinstance(seen, dict) else seen
    assert rows[0]["last_problems"] == {} and rows[0]["malformed_count"] == 3
    assert viewer_api.get(BROKERS + "site").json()["last_unclaimed"] is None


def test_the_presets_are_listed(viewer_api: APIClient) -> None:
    listed = viewer_api.get("/api/v1/ingestion/mqtt/presets")
    assert listed.status_code == 200
    names = [p["name"] for p in listed.json()]
    assert names == ["shelly_gen2", "tasmota", "zigbee2mqtt", "emonhub", "json", "number"]


def test_the_admin_keeps_the_password_and_fills_a_new_mapping_from_its_preset(operator: Any) -> None:
    browser = Client()
    browser.force_login(operator)
    operator.is_superuser = True
    operator.save()
    added = browser.post(
        "/admin/ingestion/broker/add/",
        {
            "name": "adm",
            "host": "127.0.0.1",
            "port": "1883",
            "password": "typed-in",
            "mappings-TOTAL_FORMS": "0",
            "mappings-INITIAL_FORMS": "0",
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    broker = Broker.objects.get(name="adm")
    assert broker.password == "typed-in"
    page = browser.get(f"/admin/ingestion/broker/{broker.pk}/change/").content.decode()
    assert "typed-in" not in page
    made = browser.post(
        "/admin/ingestion/mapping/add/",
        {
            "broker": broker.pk,
            "name": "z",
            "enabled": "on",
            "preset": "zigbee2mqtt",
            "payload_format": "json",
            "fields": "[]",
            "priority": "0",
        },
    )
    assert made.status_code == 302, made.content.decode()[:3000]
    mapping = Mapping.objects.get(name="z")
    assert mapping.topic == "zigbee2mqtt/+" and len(mapping.fields) == 5


def test_health_says_when_a_broker_is_enabled_but_no_ingester_reports(redis_clean: Any) -> None:
    from energy_dashboard.core import heartbeats

    heartbeats.worker_beat("w1@test", 1)
    heartbeats.beat_beat(2)
    assert Client().get("/health").status_code == 200
    Broker.objects.create(name="site", host="127.0.0.1", port=1883)
    answer = Client().get("/health")
    assert answer.status_code == 503
    mqtt = answer.json()["mqtt"]
    assert mqtt["running"] is False and mqtt["ok"] is False
    assert "has not reported in" in mqtt["brokers"]["site"]["error"]
    Broker.objects.filter(name="site").update(enabled=False)
    assert Client().get("/health").status_code == 200
