"""The dashboard hears about each processed file live: an upload ends in one `ingestion` message
on the WebSocket (the file's readings are not pushed one by one: a file may hold millions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from energy_dashboard.asgi import application
from ingestion import slg


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_an_uploaded_file_is_announced_on_the_live_feed(operator: Any) -> None:
    first = datetime(2026, 3, 10, tzinfo=UTC)
    records = [("PT4001", first + timedelta(minutes=15 * i), 100 + i, False) for i in range(4)]
    content = b"".join(slg.write_slg(records, tz=ZoneInfo("Europe/Lisbon"), file_date=first.date()))
    key = Token.objects.create(user=operator).key
    api = APIClient()
    api.force_authenticate(operator)

    async def scenario() -> list[dict[str, Any]]:
        ws = WebsocketCommunicator(
            application, "/api/v1/ws", headers=[(b"authorization", f"Token {key}".encode())]
        )
        await ws.connect()
        await ws.receive_json_from(timeout=2)
        await ws.send_json_to({"type": "subscribe", "all": True})
        await ws.receive_json_from(timeout=2)
        upload = SimpleUploadedFile("live.slg_v2", content)
        answer = await sync_to_async(api.post)(
            "/api/v1/ingestion/upload", {"file": upload}, format="multipart"
        )
        assert answer.status_code == 201
        received = []
        while not await ws.receive_nothing(timeout=1):
            received.append(await ws.receive_json_from(timeout=2))
        await ws.disconnect()
        return received

    received = async_to_sync(scenario)()
    kinds = [m["type"] for m in received]
    assert kinds.count("ingestion") == 1 and "reading" not in kinds
    assert "sensor_status" in kinds  # the new meter was registered
    news = next(m for m in received if m["type"] == "ingestion")
    assert news["name"] == "live.slg_v2" and news["status"] == "imported"
    assert news["counts"] == {"records": 4, "inserted": 4, "duplicates": 0, "conflicts": 0}
