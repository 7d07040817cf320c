"""What the ingestion tests share: meter files made with the project's writer, and what the
readings store holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ingestion import slg
from sensors import services as sensors

LISBON = ZoneInfo("Europe/Lisbon")
DAY = datetime(2026, 3, 10, tzinfo=UTC)  # a Tuesday; Lisbon is on UTC in March before the change


def meter_file(
    cpe: str,
    first: datetime = DAY,
    count: int = 96,
    *,
    base: int = 100,
    estimated_every: int = 0,
    file_date: date | None = None,
) -> bytes:
    """A valid SLG v2 file: `count` quarter hours of one meter from `first` (UTC), values
    base, base+1, ... centi-kWh; every `estimated_every`-th one (from the first) estimated."""
    records = [
        (cpe, first + timedelta(minutes=15 * i), base + i, bool(estimated_every) and i % estimated_every == 0)
        for i in range(count)
    ]
    return b"".join(slg.write_slg(records, tz=LISBON, file_date=file_date or first.date()))


def stored_rows(sensor_ids: list[str]) -> list[dict[str, Any]]:
    """Every raw energy reading of these sensors, oldest first."""
    return list(
        sensors.data_query(
            sensor_ids=sensor_ids,
            rooms=[],
            metrics=["energy"],
            start=datetime(2000, 1, 1, tzinfo=UTC),
            end=datetime(2100, 1, 1, tzinfo=UTC),
            aggregation="raw",
            interval="",
            limit=10_000_000,
        )
    )


def stored_count(*cpes: str) -> int:
    """How many readings the meters of these CPEs have."""
    return len(stored_rows([f"cpe-{cpe.lower()}" for cpe in cpes]))


def source_for(server: Any, name: str = "utility", **extra: Any) -> Any:
    """A RemoteSource for a test server (`servers.FtpServer`, FTPS included, or `SshServer`):
    its port and credentials, the FTPS certificate pinned (copied into INGESTION_SECRETS_DIR,
    the only place a source may read it from), the SFTP key and directory; no settle pause
    unless `extra` says so."""
    import shutil
    from pathlib import Path

    from django.conf import settings

    from ingestion.models import RemoteSource

    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": server.user,
        "settle_s": 0,
    }
    if hasattr(server, "client_private_key"):  # sshd
        fields |= {
            "protocol": "sftp",
            "private_key": server.client_private_key,
            "remote_path": str(server.files),
        }
    else:
        fields |= {"protocol": "ftps" if server.tls else "ftp", "password": server.password}
        if server.certfile:
            pinned = Path(settings.INGESTION_SECRETS_DIR) / f"{name}-ca.pem"
            shutil.copyfile(server.certfile, pinned)
            fields["ca_file"] = str(pinned)
    return RemoteSource.objects.create(name=name, **(fields | extra))


def wait_until(check: Callable[[], Any], what: str, timeout: float = 20, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy, and return it; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
