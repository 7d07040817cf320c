"""dr_events reach the live WebSocket: a real scheduler step, a real Channels client."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from rest_framework.authtoken.models import Token

from demand_response import services
from energy_dashboard.asgi import application


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_an_event_activated_by_the_scheduler_is_pushed_to_the_live_socket(
    loads: datetime, viewer: Any
) -> None:
    start = timezone.now() + timedelta(minutes=1)
    event = services.event_create(
        target_kw=10, start=start, end=start + timedelta(minutes=30), devices=["ahu"]
    )
    headers = [(b"authorization", f"Token {Token.objects.create(user=viewer).key}".encode())]

    async def scenario() -> tuple[dict[str, int], list[dict[str, Any]]]:
        ws = WebsocketCommunicator(application, "/api/v1/ws", headers=headers)
        connected, _ = await ws.connect()
        assert connected
        assert (await ws.receive_json_from(timeout=2))["type"] == "welcome"
        await ws.send_json_to({"type": "subscribe", "all": True})
        assert (await ws.receive_json_from(timeout=2))["type"] == "subscribed"
        # The scheduler's step, committed for real: its dr_events go out after the commit.
        done = await sync_to_async(services.events_tick)(now=start)
        received = []
        while not await ws.receive_nothing(timeout=1):
            received.append(await ws.receive_json_from(timeout=2))
        await ws.disconnect()
        return done, received

    done, received = async_to_sync(scenario)()
    assert done == {"activated": 1, "completed": 0, "missed": 0, "errors": 0}
    activated = [m for m in received if m["type"] == "dr_event" and m["kind"] == "event"]
    assert len(activated) == 1, received
    assert {k: activated[0][k] for k in ("id", "status", "previous_status")} == {
        "id": event.pk,
        "status": "active",
        "previous_status": "scheduled",
    }
    assert activated[0]["detail"]["dispatched_kw"] == 10.0
    # The ahu's shed command came too, as a dispatch message of the same event.
    shed = [m for m in received if m["type"] == "dr_event" and m["kind"] == "dispatch"]
    assert [(m["status"], m["detail"]["device"], m["detail"]["event_id"]) for m in shed] == [
        ("shed", "ahu", event.pk)
    ]
