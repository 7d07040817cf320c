"""Dispatch over MQTT, against the Mosquitto broker on 127.0.0.1:1883 with a real subscriber."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.utils import timezone

from demand_response import services
from demand_response.models import DispatchCommand
from energy_dashboard.testing import free_port

pytestmark = pytest.mark.django_db(databases="__all__")


class Subscriber:
    """A paho client that collects what arrives under a prefix."""

    def __init__(self, prefix: str) -> None:
        self.messages: list[tuple[str, dict[str, Any], int]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload), m.qos))
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscription was not acknowledged"

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[str, dict[str, Any], int]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix(settings: Any) -> str:
    unique = f"ed-test/{uuid.uuid4().hex}/dr"
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    settings.MQTT_TOPIC_PREFIX = unique
    return unique


@pytest.fixture
def subscriber(prefix: str) -> Iterator[Subscriber]:
    client = Subscriber(prefix)
    yield client
    client.close()


def test_shed_and_restore_commands_reach_a_subscriber(
    loads: datetime, prefix: str, subscriber: Subscriber
) -> None:
    start = timezone.now() + timedelta(minutes=5)
    event = services.event_create(target_kw=33, start=start, end=start + timedelta(minutes=30))
    services.events_tick(now=event.start)
    shed = subscriber.wait_for(2)
    assert [(topic, body["action"], body["kw"], qos) for topic, body, qos in shed] == [
        (f"{prefix}/ahu/command", "shed", 30.0, 1),
        (f"{prefix}/ev/command", "shed", 3.0, 1),
    ]
    assert shed[0][1]["event_id"] == event.pk
    assert shed[0][1]["device"] == "ahu"
    assert shed[0][1]["until"] == event.end.isoformat().replace("+00:00", "Z")
    assert set(DispatchCommand.objects.values_list("mqtt", flat=True)) == {"published"}
    services.events_tick(now=event.end)
    everything = subscriber.wait_for(4)
    assert sorted((topic, body["action"]) for topic, body, _ in everything[2:]) == [
        (f"{prefix}/ahu/command", "restore"),
        (f"{prefix}/ev/command", "restore"),
    ]
    assert len(everything) == 4


def test_an_unreachable_broker_is_recorded_and_the_event_still_runs(loads: datetime, settings: Any) -> None:
    settings.MQTT_URL = f"mqtt://127.0.0.1:{free_port()}"
    start = timezone.now() + timedelta(minutes=5)
    event = services.event_create(
        target_kw=5, start=start, end=start + timedelta(minutes=30), devices=["ahu"]
    )
    assert services.events_tick(now=event.start)["activated"] == 1
    event.refresh_from_db()
    assert event.status == "active"
    (outcome,) = DispatchCommand.objects.values_list("mqtt", flat=True)
    assert outcome.startswith("failed: cannot connect to the broker")
