"""End to end: a real Celery worker ingests readings; a client of a real daphne receives them."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import websockets
from rest_framework.authtoken.models import Token

from energy_dashboard.celery import app
from energy_dashboard.testing import WORKER_ARGS, free_port, subprocess_env
from sensors import services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases="__all__")]


def test_readings_ingested_by_a_worker_reach_a_browser_on_daphne(start_process: Any, viewer: Any) -> None:
    services.room_create(name="lab")
    services.sensor_register(sensor_id="lab-power", kind="power", room_name="lab")
    services.sensor_register(sensor_id="hall-power", kind="power")
    token = Token.objects.create(user=viewer).key

    env = subprocess_env()
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
        env=env,
    )
    worker = start_process(
        "worker",
        *WORKER_ARGS,
        env=env,
    )
    worker.wait_for(lambda out: "ready." in out, timeout=60, what="the worker starting")
    daphne.wait_for(
        lambda out: "Listening on TCP address" in out or "Configuring endpoint" in out,
        timeout=30,
        what="daphne listening",
    )

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    batch = [
        {
            "sensor_id": "lab-power",
            "metric": "power",
            "timestamp": (t0 + timedelta(seconds=i)).isoformat(),
            "value": 100 + i,
        }
        for i in range(3)
    ] + [{"sensor_id": "hall-power", "metric": "power", "timestamp": t0.isoformat(), "value": 7}]

    async def client() -> list[dict[str, Any]]:
        deadline = time.monotonic() + 30
        while True:
            try:
                ws = await websockets.connect(
                    f"ws://127.0.0.1:{port}/api/v1/ws", additional_headers={"Authorization": f"Token {token}"}
                )
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
        async with ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"type": "subscribe", "rooms": ["lab"]}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            sent_at = time.monotonic()
            await asyncio.to_thread(app.send_task, "sensors.tasks.readings_ingest", args=[batch, "e2e"])
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
            assert time.monotonic() - sent_at < 30
            return [message]

    (message,) = asyncio.run(client())
    assert message["type"] == "reading"
    # Only the room's readings: the hall's sensor is not followed.
    assert [(r["sensor_id"], r["value"]) for r in message["readings"]] == [
        ("lab-power", 100.0),
        ("lab-power", 101.0),
        ("lab-power", 102.0),
    ]
    worker.wait_for(
        lambda out: re.search(r"sensors\.tasks\.readings_ingest\[[^\]]+\] succeeded", out) is not None,
        timeout=30,
        what="the task succeeding",
    )
