"""A slow live client never holds up the others: its frames wait in a bounded outbox, the oldest
are dropped and counted, and it is told how many it lost."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
import websockets
from rest_framework.authtoken.models import Token

from energy_dashboard.live import groups
from energy_dashboard.live.transport import Outbox
from energy_dashboard.testing import free_port, subprocess_env


def test_outbox_drops_the_oldest_frames_and_reports_them_before_the_next() -> None:
    async def scenario() -> list[str]:
        sent: list[str] = []

        async def send(text: str) -> None:
            sent.append(text)

        box = Outbox(send, limit=3)
        box.pause()
        for i in range(5):
            box.put(f"f{i}")
        assert box.pending == 3 and box.dropped_total == 2
        writer = asyncio.ensure_future(box.run())
        await asyncio.sleep(0.01)
        assert sent == []  # paused: nothing written
        box.resume()
        await asyncio.sleep(0.01)
        box.put("f5")
        await asyncio.sleep(0.01)
        writer.cancel()
        return sent

    sent = asyncio.run(scenario())
    assert json.loads(sent[0]) == {"type": "lagging", "dropped": 2, "dropped_total": 2}
    assert sent[1:] == ["f2", "f3", "f4", "f5"]


def test_outbox_under_its_limit_loses_nothing() -> None:
    async def scenario() -> list[str]:
        sent: list[str] = []

        async def send(text: str) -> None:
            await asyncio.sleep(0)
            sent.append(text)

        box = Outbox(send, limit=2)
        writer = asyncio.ensure_future(box.run())
        for i in range(50):
            box.put(str(i))
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        writer.cancel()
        assert box.dropped_total == 0
        return sent

    assert asyncio.run(scenario()) == [str(i) for i in range(50)]


BATCHES = 600


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_client_that_stops_reading_loses_old_frames_while_another_gets_everything(
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
        env=subprocess_env(LIVE_CLIENT_BUFFER="5"),
    )
    daphne.wait_for(lambda out: "Listening on TCP address" in out, timeout=30, what="daphne listening")
    # ~10 kB a batch: 6 MB in all, far more than the socket buffers between daphne and a
    # client that does not read (its receive buffer is made small on purpose).
    batch = [
        {"sensor_id": f"s{i:03d}", "room": None, "metric": "power", "timestamp": f"T{i}", "value": i}
        for i in range(100)
    ]
    url = f"ws://127.0.0.1:{port}/api/v1/ws"
    headers = {"Authorization": f"Token {token}"}

    async def connect(small_buffer: bool) -> Any:
        sock = socket.socket()
        if small_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        ws = await websockets.connect(url, sock=sock, additional_headers=headers, max_queue=4)
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "subscribe", "all": True}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        return ws

    def marker(message: dict[str, Any]) -> int:
        return int(message["readings"][0]["timestamp"][1:])  # the batch number, see publish()

    def publish(fast_seen: list[int], reading: Any) -> None:
        # As fast as the fast client reads, a couple of batches ahead: it keeps up (its outbox
        # holds 5), while the slow one stops reading at once. Not past 60 s in all, nor once
        # the reader has stopped (it failed: waiting on it would only hold the test up).
        give_up = time.monotonic() + 60
        for n in range(BATCHES):
            while len(fast_seen) < n - 2 and time.monotonic() < give_up:
                if reading.done():
                    return
                time.sleep(0.0005)
            batch[0]["timestamp"] = f"T{n}"
            groups.publish_readings(batch)

    async def scenario() -> tuple[list[int], list[dict[str, Any]], dict[str, Any]]:
        fast, slow = await connect(False), await connect(True)
        fast_seen: list[int] = []

        async def read_fast() -> None:
            while len(fast_seen) < BATCHES:
                message = json.loads(await asyncio.wait_for(fast.recv(), timeout=30))
                assert message["type"] == "reading", message
                fast_seen.append(marker(message))

        reader = asyncio.ensure_future(read_fast())
        await asyncio.to_thread(publish, fast_seen, reader)
        await asyncio.wait_for(reader, timeout=60)
        # Now the slow client reads what it was left with.
        slow_got: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        await slow.send(json.dumps({"type": "ping"}))
        while time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(slow.recv(), timeout=30))
            if message["type"] == "pong":
                pong = message
                break
            slow_got.append(message)
        await fast.close()
        await slow.close()
        return fast_seen, slow_got, pong

    fast_seen, slow_got, pong = asyncio.run(scenario())
    assert fast_seen == list(range(BATCHES))  # the reader that kept up lost nothing, in order

    lagging = [m for m in slow_got if m["type"] == "lagging"]
    batches = [marker(m) for m in slow_got if m["type"] == "reading"]
    assert lagging, "the slow client was never told it lost frames"
    dropped = lagging[-1]["dropped_total"]
    assert dropped == sum(m["dropped"] for m in lagging)
    # The pong was built before it was queued, and queueing it dropped one more old frame.
    assert dropped - 1 <= pong["dropped_total"] <= dropped
    assert 0 < dropped < BATCHES
    # Every batch either reached it or was counted as dropped, and it kept the newest.
    assert len(batches) + dropped == BATCHES
    assert batches == sorted(batches) and batches[-1] == BATCHES - 1
