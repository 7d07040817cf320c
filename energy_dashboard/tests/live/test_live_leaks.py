"""The live WebSocket against careless and hostile clients: a malformed message gets an error and
the connection lives; a connection that ends in any way leaves nothing behind in the hub; one
connection follows a bounded number of rooms and sensors (issue 12, point 2).

Membership is watched from outside the hub: the hub subscribes its Redis connection to a
group's channel while the group has a member in the process, and unsubscribes when the last
one leaves, so PUBSUB NUMSUB on the test's own (uniquely named) rooms counts the members left.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
import redis
import websockets
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from rest_framework.authtoken.models import Token

from energy_dashboard.asgi import application
from energy_dashboard.live import groups
from energy_dashboard.live.consumers import LiveConsumer
from energy_dashboard.testing import free_port, subprocess_env

pytestmark = pytest.mark.django_db(databases="__all__")


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(fn)()


def rooms(n: int) -> list[str]:
    """Room names no other test (nor another run sharing the Redis server) follows."""
    prefix = uuid.uuid4().hex[:12]
    return [f"leak-{prefix}-{i}" for i in range(n)]


def channels_of(names: Iterable[str]) -> list[str]:
    return [groups.channel(groups.room_group(name)) for name in names]


def numsub(names: Iterable[str]) -> dict[str, int]:
    """Subscribers per room channel, in every process (only the hub under test subscribes)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return {
            (channel.decode() if isinstance(channel, bytes) else channel): count
            for channel, count in client.pubsub_numsub(*channels_of(names))
        }
    finally:
        client.close()


def wait_numsub_zero(names: list[str], timeout: float) -> dict[str, int]:
    """NUMSUB of `names`' channels once they are all 0, or as they stand at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        counts = numsub(names)
        if not any(counts.values()) or time.monotonic() > deadline:
            return {channel: count for channel, count in counts.items() if count}
        time.sleep(0.05)


def token_header(user: Any) -> list[tuple[bytes, bytes]]:
    key = Token.objects.create(user=user).key
    return [(b"authorization", f"Token {key}".encode())]


async def connected(headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/api/v1/ws", headers=headers)
    ok, _ = await ws.connect()
    assert ok
    assert (await ws.receive_json_from(timeout=2))["type"] == "welcome"
    return ws


async def subscribed(ws: WebsocketCommunicator, **what: Any) -> dict[str, Any]:
    await ws.send_json_to({"type": "subscribe", **what})
    answer = await ws.receive_json_from(timeout=5)
    assert answer["type"] == "subscribed", answer
    return answer


# --- malformed messages ---------------------------------------------------------------------

OVERSIZED = json.dumps({"type": "ping", "pad": "x" * 70_000})  # past the 64 KiB a message may be


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"text": "not json"}, "invalid_json"),
        ({"text": ""}, "invalid_json"),
        ({"text": "{"}, "invalid_json"),
        ({"text": "1" * 5000}, "invalid_json"),  # an integer longer than Python will parse
        ({"text": "[" * 50_000}, "invalid_json"),  # nested deeper than the decoder recurses
        ({"text": "null"}, "invalid_message"),
        ({"text": "5"}, "invalid_message"),
        ({"text": '["subscribe"]'}, "invalid_message"),
        ({"text": '{"type": 5}'}, "invalid_message"),
        ({"text": '{"type": "dance"}'}, "unknown_type"),
        ({"text": '{"type": "subscribe", "rooms": {"lab": 1}}'}, "invalid_subscription"),
        ({"text": '{"type": "subscribe", "sensors": [1, 2]}'}, "invalid_subscription"),
        ({"text": OVERSIZED}, "message_too_large"),
        ({"bytes": b"\x00\x01binary"}, "binary_frame"),
        ({"bytes": b'{"type": "ping"}'}, "binary_frame"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_malformed_frame_gets_an_error_and_the_connection_lives(
    viewer: Any, frame: dict[str, Any], code: str
) -> None:
    headers = token_header(viewer)
    [room] = rooms(1)

    async def scenario() -> tuple[Any, Any, Any]:
        ws = await connected(headers)
        await subscribed(ws, rooms=[room])
        await ws.send_input({"type": "websocket.receive", **frame})
        error = await ws.receive_json_from(timeout=5)
        await ws.send_json_to({"type": "ping"})
        pong = await ws.receive_json_from(timeout=2)
        # Still subscribed, still delivered to.
        await sync_to_async(groups.publish)({"type": "room_metrics", "room": room}, rooms=[room])
        pushed = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return error, pong, pushed

    error, pong, pushed = run(scenario)
    assert error["type"] == "error" and error["code"] == code and error["message"], error
    assert pong == {"type": "pong", "dropped_total": 0}
    assert pushed == {"type": "room_metrics", "room": room}


def test_a_message_just_under_the_size_limit_is_read(viewer: Any) -> None:
    from energy_dashboard.live.transport import MAX_CLIENT_MESSAGE_CHARS

    assert MAX_CLIENT_MESSAGE_CHARS == 64 * 1024 < len(OVERSIZED)
    text = json.dumps({"type": "ping", "pad": "x" * (MAX_CLIENT_MESSAGE_CHARS - 40)})
    assert len(text) <= MAX_CLIENT_MESSAGE_CHARS
    headers = token_header(viewer)

    async def scenario() -> Any:
        ws = await connected(headers)
        await ws.send_to(text_data=text)
        answer = await ws.receive_json_from(timeout=2)
        await ws.disconnect()
        return answer

    assert run(scenario) == {"type": "pong", "dropped_total": 0}


def test_frames_after_a_refused_handshake_are_ignored() -> None:
    async def scenario() -> tuple[Any, bool]:
        ws = WebsocketCommunicator(application, "/api/v1/ws")
        await ws.connect()
        closed = await ws.receive_output(timeout=2)
        # Sent before the client read the close: the consumer has no outbox to answer with.
        await ws.send_json_to({"type": "ping"})
        await ws.send_to(text_data="not json")
        quiet = await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()  # raises the consumer's exception, had it died
        return closed, quiet

    closed, quiet = run(scenario)
    assert closed == {"type": "websocket.close", "code": 4401}
    assert quiet is True


# --- the subscription cap -------------------------------------------------------------------


def test_subscriptions_are_capped_per_connection_before_any_group_is_joined(
    viewer: Any, settings: Any
) -> None:
    settings.LIVE_MAX_SUBSCRIPTIONS = 5
    headers = token_header(viewer)
    names = rooms(7)

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        ws = await connected(headers)
        # One message naming more than the cap: refused whole, nothing joined.
        await ws.send_json_to({"type": "subscribe", "rooms": names, "sensors": ["s1"]})
        out["too_many_at_once"] = await ws.receive_json_from(timeout=5)
        out["joined_after_refusal"] = await sync_to_async(numsub)(names)
        # Up to the cap, rooms and sensors together.
        out["three_rooms"] = await subscribed(ws, rooms=names[:3])
        out["five"] = await subscribed(ws, sensors=["s1", "s2"])
        await ws.send_json_to({"type": "subscribe", "rooms": names[3:4]})
        out["sixth"] = await ws.receive_json_from(timeout=5)
        out["joined_after_sixth"] = await sync_to_async(numsub)(names)
        # Following what is already followed again adds nothing.
        out["again"] = await subscribed(ws, rooms=names[:1])
        await ws.send_json_to({"type": "unsubscribe", "rooms": names[:1]})
        await ws.receive_json_from(timeout=5)
        out["after_room_freed"] = await subscribed(ws, rooms=names[3:4])
        await ws.disconnect()
        return out

    out = run(scenario)
    for refused in (out["too_many_at_once"], out["sixth"]):
        assert refused["type"] == "error" and refused["code"] == "too_many_subscriptions"
        assert refused["limit"] == 5 and "5" in refused["message"], refused
    assert not any(out["joined_after_refusal"].values())
    assert out["three_rooms"]["subscriptions"]["rooms"] == sorted(names[:3])
    assert out["five"]["subscriptions"]["sensors"] == ["s1", "s2"]
    joined = out["joined_after_sixth"]
    assert [joined[c] for c in channels_of(names)] == [1, 1, 1, 0, 0, 0, 0]
    assert out["again"]["subscriptions"]["rooms"] == sorted(names[:3])
    assert out["after_room_freed"]["subscriptions"]["rooms"] == sorted(names[1:4])


def test_the_default_cap_is_500_rooms_and_sensors(viewer: Any) -> None:
    headers = token_header(viewer)
    sensors = [f"s{i}" for i in range(500)]
    many = rooms(20_000)  # what one socket was seen to follow, here in messages of 500

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        ws = await connected(headers)
        await ws.send_json_to({"type": "subscribe", "sensors": [*sensors, "one-more"]})
        out["501"] = await ws.receive_json_from(timeout=5)
        out["500"] = await subscribed(ws, sensors=sensors)
        await ws.send_json_to({"type": "subscribe", "rooms": many[:1]})
        out["past"] = await ws.receive_json_from(timeout=5)
        await ws.send_json_to({"type": "unsubscribe", "sensors": sensors})
        await ws.receive_json_from(timeout=5)
        out["rooms"] = []
        for start in range(0, len(many), 500):
            await ws.send_json_to({"type": "subscribe", "rooms": many[start : start + 500]})
            out["rooms"].append(await ws.receive_json_from(timeout=30))
        out["joined"] = await sync_to_async(numsub)(many)
        await ws.disconnect()
        return out

    out = run(scenario)
    assert len(out["500"]["subscriptions"]["sensors"]) == 500
    first, *rest = out["rooms"]
    assert len(first["subscriptions"]["rooms"]) == 500
    assert len(rest) == 39
    for refused in (out["501"], out["past"], *rest):
        assert refused["code"] == "too_many_subscriptions" and refused["limit"] == 500, refused
        assert "500" in refused["message"]
    assert sum(out["joined"].values()) == 500  # the refused rooms were never joined
    assert settings.LIVE_MAX_SUBSCRIPTIONS == 500


# --- connections that end -------------------------------------------------------------------


def test_a_connection_closed_after_a_malformed_frame_leaves_no_member(viewer: Any) -> None:
    headers = token_header(viewer)
    names = rooms(2)

    async def scenario() -> dict[str, int]:
        ws = await connected(headers)
        await subscribed(ws, rooms=names)
        await ws.send_to(text_data="{not json")
        await ws.send_to(bytes_data=b"\xff")
        await ws.disconnect()
        return await sync_to_async(wait_numsub_zero)(names, 5)

    assert run(scenario) == {}


def test_an_exception_in_a_handler_leaves_no_member(viewer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = token_header(viewer)
    names = rooms(1)
    real = groups.subscription
    calls: list[int] = []

    def fails_the_second_time(message: dict[str, Any], **kwargs: Any) -> groups.Subscription:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("a bug in a handler")
        return real(message, **kwargs)

    monkeypatch.setattr(groups, "subscription", fails_the_second_time)

    async def scenario() -> tuple[str, dict[str, int]]:
        ws = await connected(headers)
        await subscribed(ws, rooms=names)
        await ws.send_json_to({"type": "subscribe", "sensors": ["s1"]})
        try:
            await ws.receive_output(timeout=5)
            outcome = "answered"
        except RuntimeError as exc:  # the application's own exception, as daphne would see it
            outcome = str(exc)
        return outcome, await sync_to_async(wait_numsub_zero)(names, 5)

    outcome, left = run(scenario)
    assert outcome == "a bug in a handler"
    assert left == {}


def test_a_failing_writer_closes_the_connection_and_leaves_no_member(
    viewer: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    headers = token_header(viewer)
    names = rooms(1)
    real = LiveConsumer._write
    broken = threading.Event()

    async def write(self: LiveConsumer, text: str) -> None:
        if broken.is_set():
            raise OSError("the socket went away")
        await real(self, text)

    monkeypatch.setattr(LiveConsumer, "_write", write)

    async def scenario() -> tuple[Any, dict[str, int]]:
        ws = await connected(headers)
        await subscribed(ws, rooms=names)
        broken.set()
        await sync_to_async(groups.publish)({"type": "room_metrics", "room": names[0]}, rooms=names)
        closed = await ws.receive_output(timeout=5)
        left = await sync_to_async(wait_numsub_zero)(names, 5)
        await ws.disconnect()
        return closed, left

    with caplog.at_level(logging.INFO):
        closed, left = run(scenario)
    assert closed == {"type": "websocket.close", "code": 4500}
    assert left == {}
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a connection's end"


def test_a_member_whose_delivery_raises_is_dropped_and_logged_once(
    viewer: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    headers = token_header(viewer)
    names = rooms(1)

    def deliver(self: LiveConsumer, event: dict[str, Any]) -> None:
        raise RuntimeError("a bug in deliver")

    async def scenario() -> tuple[Any, dict[str, int]]:
        ws = await connected(headers)
        await subscribed(ws, rooms=names)
        monkeypatch.setattr(LiveConsumer, "deliver", deliver)
        for _ in range(3):
            await sync_to_async(groups.publish)({"type": "room_metrics", "room": names[0]}, rooms=names)
            await asyncio.sleep(0.2)
        closed = await ws.receive_output(timeout=5)
        left = await sync_to_async(wait_numsub_zero)(names, 5)
        await ws.disconnect()
        return closed, left

    closed, left = run(scenario)
    assert closed == {"type": "websocket.close", "code": 4500}
    assert left == {}
    failures = [r for r in caplog.records if "delivering to a client failed" in r.getMessage()]
    assert len(failures) == 1  # once for that client, not once per published message


def test_redis_failing_during_a_subscribe_gets_an_error_and_leaves_no_member(
    viewer: Any, settings: Any, tmp_path: Any
) -> None:
    headers = token_header(viewer)
    settings.REDIS_URL = f"unix://{tmp_path}/no-redis.sock"  # the hub's connection, made at first join

    async def scenario() -> tuple[Any, Any]:
        ws = await connected(headers)
        await ws.send_json_to({"type": "subscribe", "rooms": rooms(1)})
        error = await ws.receive_json_from(timeout=10)
        await ws.send_json_to({"type": "ping"})
        pong = await ws.receive_json_from(timeout=2)
        await ws.disconnect()
        return error, pong

    error, pong = run(scenario)
    assert error["type"] == "error" and error["code"] == "unavailable", error
    assert pong["type"] == "pong"


@pytest.mark.parametrize("state", ["STATE_CLOSING", "STATE_CLOSED"])
def test_a_frame_written_to_a_closing_or_closed_protocol_is_dropped(state: str) -> None:
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet.testing import StringTransport

    from energy_dashboard.live.transport import _write_frame

    protocol = WebSocketProtocol()  # daphne's protocol, as the hub finds it after the client left
    protocol.client_addr = None
    protocol.transport = StringTransport()
    protocol.state = getattr(protocol, state)
    _write_frame(protocol, '{"type":"reading"}')  # autobahn raised Disconnected here
    assert protocol.transport.value() == b""


# --- against a real daphne ------------------------------------------------------------------

CLIENTS = 50


def _reset(sock: socket.socket, ws: Any) -> None:
    """End the TCP connection with a reset: no close frame, no FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


async def until(ws: Any, kind: str) -> dict[str, Any]:
    """The next message of type `kind`, past the pushed batches before it."""
    while (message := json.loads(await ws.recv()))["type"] != kind:
        pass
    return message


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_fifty_clients_ending_badly_leave_no_member_and_no_traceback_on_daphne(
    start_process: Any, viewer: Any
) -> None:
    token = Token.objects.create(user=viewer).key
    port = free_port()
    daphne = start_process(
        "daphne",
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "energy_dashboard.asgi:application",
        env=subprocess_env(),
    )
    daphne.wait_for(lambda out: "Listening on TCP address" in out, timeout=30, what="daphne listening")
    url = f"ws://127.0.0.1:{port}/api/v1/ws"
    headers = {"Authorization": f"Token {token}"}
    names = rooms(CLIENTS + 1)
    shared = names[-1]
    batch = [
        {"sensor_id": f"s-{room}", "room": room, "metric": "power", "timestamp": "T", "value": 1.0}
        for room in names
    ]

    async def client(i: int) -> str:
        """One connection that ends in one of the ways a careless or hostile client ends it; what
        it heard back, for the assertions."""
        mode = MODES[i % len(MODES)]
        sock = socket.create_connection(("127.0.0.1", port))
        ws = await websockets.connect(url, sock=sock, additional_headers=headers, max_queue=None)
        subscribe = json.dumps({"type": "subscribe", "rooms": [names[i], shared]})
        heard = "-"
        try:
            assert json.loads(await ws.recv())["type"] == "welcome"
            if mode == "subscribe-and-close":
                await ws.send(subscribe)
                await ws.close()
                return mode
            if mode == "subscribe-and-reset":
                await ws.send(subscribe)
                _reset(sock, ws)
                return mode
            await ws.send(subscribe)
            await until(ws, "subscribed")
            if mode in ("garbage", "binary", "garbage-and-reset"):
                await ws.send(b"\x00\x01" if mode == "binary" else "{oops")
                if mode == "garbage-and-reset":
                    _reset(sock, ws)
                    return mode
                await until(ws, "error")
                await ws.send(json.dumps({"type": "ping"}))
                await until(ws, "pong")
                heard = "error+pong"
                await ws.close()
            elif mode == "reset":
                await asyncio.sleep(0.05 * (i % 5))  # while batches are being pushed to it
                _reset(sock, ws)
            elif mode == "drop":
                ws.transport.abort()  # FIN without a close frame
            else:
                await ws.close()
        except websockets.ConnectionClosed as closed:
            heard = f"closed {closed.rcvd.code if closed.rcvd else None}"
        return f"{mode}: {heard}"

    stop = threading.Event()

    def publish() -> None:
        # Batches to every client's room for as long as the clients live (bounded).
        for _ in range(3000):
            if stop.is_set():
                return
            groups.publish_readings(batch)
            time.sleep(0.005)

    async def scenario() -> list[str]:
        publisher = asyncio.ensure_future(asyncio.to_thread(publish))
        try:
            return list(await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(CLIENTS))), 60))
        finally:
            stop.set()
            await publisher

    outcomes = asyncio.run(scenario())
    left = wait_numsub_zero(names, 20)
    assert left == {}, f"members left in the hub: {left}"
    # A batch more for any member still there, then the log is read.
    groups.publish_readings(batch)
    time.sleep(1.5)
    log = daphne.output()
    assert "Traceback" not in log and "Exception inside application" not in log, log[-6000:]
    assert "took too long to shut down" not in log
    for outcome in outcomes:
        assert "closed" not in outcome, outcome  # the server closed no connection itself
        if outcome.startswith(("garbage:", "binary:")):
            assert outcome.endswith("error+pong"), outcome


MODES = (
    "garbage",
    "binary",
    "subscribe-and-close",
    "subscribe-and-reset",
    "garbage-and-reset",
    "reset",
    "drop",
    "normal",
)
