"""The live WebSocket: who may connect, subscriptions, and events reaching the client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework.authtoken.models import Token

from energy_dashboard.asgi import application
from energy_dashboard.core import events
from energy_dashboard.live import groups
from energy_dashboard.testing import AFTER_FIXED_DATES

pytestmark = pytest.mark.django_db(databases="__all__")


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(fn)()


def communicator(headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/api/v1/ws", headers=headers or [])


def token_header(user: Any) -> list[tuple[bytes, bytes]]:
    key = Token.objects.create(user=user).key
    return [(b"authorization", f"Token {key}".encode())]


def test_anonymous_connection_is_closed_with_4401() -> None:
    async def scenario() -> Any:
        ws = communicator()
        connected, _ = await ws.connect()
        assert connected
        closed = await ws.receive_output(timeout=2)
        await ws.disconnect()
        return closed

    assert run(scenario) == {"type": "websocket.close", "code": 4401}


def test_wrong_token_is_closed_with_4401() -> None:
    async def scenario() -> Any:
        ws = communicator([(b"authorization", b"Token not-a-real-token")])
        await ws.connect()
        closed = await ws.receive_output(timeout=2)
        await ws.disconnect()
        return closed

    assert run(scenario)["code"] == 4401


def test_user_without_a_role_is_closed_with_4403(make_user: Any) -> None:
    headers = token_header(make_user("nobody"))

    async def scenario() -> Any:
        ws = communicator(headers)
        await ws.connect()
        closed = await ws.receive_output(timeout=2)
        await ws.disconnect()
        return closed

    assert run(scenario)["code"] == 4403


def test_token_header_authenticates_a_non_browser_client(viewer: Any) -> None:
    headers = token_header(viewer)

    async def scenario() -> Any:
        ws = communicator(headers)
        await ws.connect()
        welcome = await ws.receive_json_from(timeout=2)
        await ws.send_json_to({"type": "ping"})
        pong = await ws.receive_json_from(timeout=2)
        await ws.disconnect()
        return welcome, pong

    welcome, pong = run(scenario)
    assert welcome == {"type": "welcome", "user": "viewer"}
    assert pong == {"type": "pong", "dropped_total": 0}


def test_session_cookie_authenticates_a_browser(viewer: Any) -> None:
    client = Client()
    client.force_login(viewer)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"origin", b"http://localhost:8000")]

    async def scenario() -> Any:
        ws = communicator(headers)
        await ws.connect()
        welcome = await ws.receive_json_from(timeout=2)
        await ws.disconnect()
        return welcome

    assert run(scenario)["user"] == "viewer"


def test_cross_site_origin_is_refused(viewer: Any) -> None:
    headers = [*token_header(viewer), (b"origin", b"https://evil.example")]

    async def scenario() -> bool:
        ws = communicator(headers)
        connected, _ = await ws.connect()
        await ws.disconnect()
        return connected

    assert run(scenario) is False


def test_subscriptions_filter_what_a_client_receives(viewer: Any) -> None:
    headers = token_header(viewer)

    async def scenario() -> list[Any]:
        room_ws = communicator(headers)
        all_ws = communicator(headers)
        for ws in (room_ws, all_ws):
            await ws.connect()
            await ws.receive_json_from(timeout=2)
        await room_ws.send_json_to({"type": "subscribe", "rooms": ["lab"]})
        subscribed = await room_ws.receive_json_from(timeout=2)
        # Following everything and one room: each message must still arrive once.
        await all_ws.send_json_to({"type": "subscribe", "all": True, "rooms": ["lab"]})
        await all_ws.receive_json_from(timeout=2)

        publish = sync_to_async(groups.publish)
        await publish({"type": "room_metrics", "room": "office"}, rooms=["office"])
        await publish({"type": "room_metrics", "room": "lab"}, rooms=["lab"])
        got_room = await room_ws.receive_json_from(timeout=2)
        got_all = [await all_ws.receive_json_from(timeout=2) for _ in range(2)]
        nothing_more = await all_ws.receive_nothing(timeout=0.3) and await room_ws.receive_nothing(
            timeout=0.3
        )
        await room_ws.send_json_to({"type": "unsubscribe", "rooms": ["lab"]})
        unsubscribed = await room_ws.receive_json_from(timeout=2)
        for ws in (room_ws, all_ws):
            await ws.disconnect()
        return [subscribed, got_room, got_all, nothing_more, unsubscribed]

    subscribed, got_room, got_all, nothing_more, unsubscribed = run(scenario)
    assert subscribed == {
        "type": "subscribed",
        "subscriptions": {"all": False, "rooms": ["lab"], "sensors": []},
    }
    assert got_room == {"type": "room_metrics", "room": "lab"}
    assert [m["room"] for m in got_all] == ["office", "lab"]
    assert nothing_more is True
    assert unsubscribed == {
        "type": "unsubscribed",
        "subscriptions": {"all": False, "rooms": [], "sensors": []},
    }


@pytest.mark.parametrize(
    "message",
    [
        {"type": "subscribe"},
        {"type": "subscribe", "rooms": "lab"},
        {"type": "subscribe", "sensors": ["bad name!"]},
        {"type": "dance"},
        ["not", "an", "object"],
    ],
)
def test_bad_client_messages_get_an_error_not_a_disconnect(viewer: Any, message: Any) -> None:
    headers = token_header(viewer)

    async def scenario() -> Any:
        ws = communicator(headers)
        await ws.connect()
        await ws.receive_json_from(timeout=2)
        await ws.send_json_to(message)
        error = await ws.receive_json_from(timeout=2)
        await ws.send_json_to({"type": "ping"})
        pong = await ws.receive_json_from(timeout=2)
        await ws.disconnect()
        return error, pong

    error, pong = run(scenario)
    assert error["type"] == "error" and error["message"]
    assert pong == {"type": "pong", "dropped_total": 0}


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_bus_events_reach_the_socket_after_commit(viewer: Any) -> None:
    headers = token_header(viewer)

    async def scenario() -> list[Any]:
        ws = communicator(headers)
        await ws.connect()
        await ws.receive_json_from(timeout=2)
        await ws.send_json_to({"type": "subscribe", "all": True})
        await ws.receive_json_from(timeout=2)

        def emit() -> None:
            events.send_on_commit(
                events.dr_events,
                sender=None,
                using="demand_response",
                kind="event",
                id=7,
                status="active",
                previous_status="scheduled",
                detail={"target_kw": 12.5},
            )
            events.send_on_commit(
                events.data_ingestion,
                sender=None,
                using="ingestion",
                file_id=3,
                source="sa4cps",
                name="a.slg_v2",
                status="imported",
                counts={"records": 96, "inserted": 96, "duplicates": 0, "conflicts": 0},
            )

        await sync_to_async(emit)()
        received = [await ws.receive_json_from(timeout=3) for _ in range(2)]
        await ws.disconnect()
        return received

    dr, ingestion = run(scenario)
    assert dr == {
        "type": "dr_event",
        "kind": "event",
        "id": 7,
        "status": "active",
        "previous_status": "scheduled",
        "detail": {"target_kw": 12.5},
    }
    assert ingestion["type"] == "ingestion" and ingestion["counts"]["inserted"] == 96


ROOM_METRICS = {
    "bucket": "2026-11-02T10:00:00Z",
    "energy_kwh": 0.25,
    "power_w": 3000.0,
    "co2_ppm": 640.0,
    "temperature_c": 21.5,
    "humidity_pct": None,
    "occupancy": None,
    "sensors_reporting": 3,
}


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_room_metrics_on_the_bus_reach_the_rooms_followers(viewer: Any) -> None:
    headers = token_header(viewer)

    async def scenario() -> tuple[list[Any], bool]:
        ws = communicator(headers)
        await ws.connect()
        await ws.receive_json_from(timeout=2)
        await ws.send_json_to({"type": "subscribe", "rooms": ["lab"]})
        await ws.receive_json_from(timeout=2)

        def emit() -> None:
            for room in ("office", "lab"):
                events.send_on_commit(
                    events.room_metrics, sender=None, using="sensors", room=room, **ROOM_METRICS
                )

        await sync_to_async(emit)()
        received = [await ws.receive_json_from(timeout=3)]
        quiet = await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()
        return received, quiet

    received, quiet = run(scenario)
    assert received == [{"type": "room_metrics", "room": "lab", **ROOM_METRICS}]
    assert quiet is True  # not the office's


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_room_metrics_computed_by_the_aggregation_job_reach_the_socket(viewer: Any) -> None:
    from sensors import services

    services.room_create(name="lab")
    services.sensor_register(sensor_id="lab-power", kind="power", room_name="lab")
    stored = services.readings_ingest(
        readings=[
            {"sensor_id": "lab-power", "metric": "power", "timestamp": "2026-11-02T10:01:00Z", "value": 800}
        ]
    )
    assert stored["accepted"] == 1
    headers = token_header(viewer)

    async def scenario() -> Any:
        ws = communicator(headers)
        await ws.connect()
        await ws.receive_json_from(timeout=2)
        await ws.send_json_to({"type": "subscribe", "rooms": ["lab"]})
        await ws.receive_json_from(timeout=2)
        await sync_to_async(services.aggregates_compute)()
        pushed = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return pushed

    pushed = run(scenario)
    assert pushed == {
        "type": "room_metrics",
        "room": "lab",
        "bucket": "2026-11-02T10:00:00Z",
        "energy_kwh": None,
        "power_w": 800.0,
        "co2_ppm": None,
        "temperature_c": None,
        "humidity_pct": None,
        "occupancy": None,
        "sensors_reporting": 1,
    }


def test_publish_without_redis_logs_a_warning_and_does_not_raise(
    settings: Any, caplog: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    settings.REDIS_URL = f"unix://{tmp_path}/none.sock"
    monkeypatch.setattr(groups, "_redis", None)  # the process's client, made anew for that URL
    try:
        groups.publish({"type": "room_metrics", "room": "lab"}, rooms=["lab"])
    finally:
        groups._redis = None
    assert "live feed unavailable, room_metrics not pushed" in caplog.text


def test_sensor_followers_get_only_their_sensors(viewer: Any) -> None:
    headers = token_header(viewer)
    batch: list[dict[str, Any]] = [
        {
            "sensor_id": "a",
            "room": "lab",
            "metric": "power",
            "timestamp": "2026-11-02T10:00:00Z",
            "value": 1.0,
        },
        {
            "sensor_id": "b",
            "room": "lab",
            "metric": "power",
            "timestamp": "2026-11-02T10:00:00Z",
            "value": 2.0,
        },
        {
            "sensor_id": "c",
            "room": None,
            "metric": "power",
            "timestamp": "2026-11-02T10:00:00Z",
            "value": 3.0,
        },
        {
            "sensor_id": "d",
            "room": "hall",
            "metric": "power",
            "timestamp": "2026-11-02T10:00:00Z",
            "value": 4.0,
        },
    ]

    async def scenario() -> list[Any]:
        ws = communicator(headers)
        await ws.connect()
        await ws.receive_json_from(timeout=2)
        await ws.send_json_to({"type": "subscribe", "sensors": ["a", "c"], "rooms": ["lab"]})
        await ws.receive_json_from(timeout=2)
        await sync_to_async(groups.publish_readings)(batch)
        await sync_to_async(groups.publish)({"type": "sensor_status", "sensor_id": "z", "room": None})
        await sync_to_async(groups.publish)({"type": "dr_event", "id": 1})
        await sync_to_async(groups.publish)({"type": "sensor_status", "sensor_id": "c", "room": None})
        received = []
        while not await ws.receive_nothing(timeout=0.5):
            received.append(await ws.receive_json_from(timeout=1))
        await ws.disconnect()
        return received

    received = run(scenario)
    readings = [r["sensor_id"] for m in received if m["type"] == "reading" for r in m["readings"]]
    # a and c by the sensor list, b by the room, each once; not d (another room).
    assert sorted(readings) == ["a", "b", "c"]
    # Only the followed sensor's status; DR events go to followers of everything.
    others = [(m["type"], m.get("sensor_id")) for m in received if m["type"] != "reading"]
    assert others == [("sensor_status", "c")]


def test_nothing_is_encoded_or_published_while_nobody_follows(monkeypatch: Any) -> None:
    built: list[str] = []
    real = groups._envelope

    def counting(group: str, message_id: str, payload: dict[str, Any]) -> bytes:
        built.append(group)
        return real(group, message_id, payload)

    monkeypatch.setattr(groups, "_envelope", counting)
    groups.publish_readings(
        [{"sensor_id": "a", "room": "lab", "metric": "power", "timestamp": "T", "value": 1.0}]
    )
    groups.publish({"type": "sensor_status", "sensor_id": "a", "room": "lab"}, rooms=["lab"])
    assert built == []  # no client on any daphne process: one NUMSUB round trip, nothing else


@pytest.mark.clock(AFTER_FIXED_DATES)
def test_a_stored_batch_nobody_follows_is_never_turned_into_dicts(
    monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from sensors import services
    from sensors.services import readings

    built: list[int] = []
    real = readings._announced

    def counting(outcome: Any) -> list[dict[str, Any]]:
        built.append(len(outcome.inserted))
        return real(outcome)

    monkeypatch.setattr(readings, "_announced", counting)
    services.room_create(name="lab")
    services.sensor_register(sensor_id="p1", kind="power", room_name="lab")
    with django_capture_on_commit_callbacks(using="sensors", execute=True) as callbacks:
        result = services.readings_ingest(
            readings=[
                {"sensor_id": "p1", "metric": "power", "timestamp": "2026-11-02T10:00:00Z", "value": 1.0}
            ]
        )
    assert result["accepted"] == 1 and callbacks  # the event was sent after commit...
    assert built == []  # ...and the live feed, with no listener, never read its readings


def test_live_channels_are_named_for_the_redis_database(settings: Any) -> None:
    # Pub/sub ignores the database number: helpers' test runs and deployments that share one
    # Redis server on their own databases must not hear (nor count) each other's listeners.
    names: dict[str, str] = {}
    for url in ("redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/3", "unix:///r.sock?db=2", "redis://h"):
        settings.REDIS_URL = url
        names[url] = groups.channel(groups.ALL)
    assert names["redis://127.0.0.1:6379/2"] == "ed:live:2:live.all" == names["unix:///r.sock?db=2"]
    assert names["redis://127.0.0.1:6379/3"] == "ed:live:3:live.all"
    assert names["redis://h"] == "ed:live:0:live.all"
