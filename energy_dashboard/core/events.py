"""The event bus: the seed's topics as Django signals.

Modules publish facts here and other modules react, without importing each other. Send with
`send_on_commit` so that no receiver ever sees data that could still roll back. Receivers must
be quick and idempotent (a periodic job may publish the same fact twice); anything slow
becomes a Celery task. Signals stay in one process: the live feed (energy_dashboard/live) hears
the topics the dashboard shows and publishes them on Redis for the browsers, the one bridge to
other processes; it knows of a payload only what its topic's keyword arguments say.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

energy_data = Signal()
"""Readings were stored.

Keyword arguments:
    readings: a sequence of dicts ``{sensor_id, room (its name, or None), metric, timestamp
        (ISO 8601 UTC), value, quality}``, one batch per ingest call, never one signal per
        point. The ingest's is built on first use and also names its rooms (``readings.rooms``,
        a set of names): a receiver that needs only those never has the dicts built.
    source: str, where they came from (``"api"``, ``"ingestion"``, ``"simulator"``, ...).
"""

sensor_events = Signal()
"""A sensor changed: registered, updated, deleted, went stale or recovered.

Keyword arguments:
    sensor_id: str, the sensor's stable key.
    event: str, one of ``registered``, ``updated``, ``deleted``, ``stale``, ``recovered``,
        ``fault``.
    status: str, the sensor's status after the change.
    room: str | None, the name of the sensor's room.
"""

dr_events = Signal()
"""A demand-response invitation or event changed state.

Keyword arguments:
    kind: str, ``invitation``, ``event`` or ``dispatch`` (one device's part in an event:
        ``shed``, ``restored`` or ``skipped``).
    id: int, the invitation's, event's or event device's primary key.
    status: str, the state after the change.
    previous_status: str | None, the state before it.
    detail: dict, what the dashboard shows (target kW, start, end, reason ...).
"""

data_ingestion = Signal()
"""A meter file was processed.

Keyword arguments:
    file_id: int, the ledger entry's primary key.
    source: str | None, the remote source's name (None for uploads and local files).
    name: str, the file's name.
    status: str, the ledger status (``imported``, ``duplicate``, ``rejected``, ``failed``).
    counts: dict, ``{records, inserted, duplicates, conflicts}``.
"""

room_metrics = Signal()
"""A room's newest 5-minute figures were computed (the aggregation job, a backfill): one signal
per room and run, for the window the room's latest readings fall in.

Keyword arguments:
    room: str, the room's name.
    bucket: str, the window's start (ISO 8601 UTC, ``Z``).
    energy_kwh, power_w, co2_ppm, temperature_c, humidity_pct, occupancy: float | None, the
        window's figures (None when none of the room's sensors measures it).
    sensors_reporting: int, how many of the room's sensors sent readings in the window.
"""

system_events = Signal()
"""Something about the platform itself: start-up, a dependency going down or coming back.

Keyword arguments:
    event: str, what happened (``started``, ``dependency_down``, ``dependency_up`` ...).
    detail: dict, anything that explains it.
"""

TOPICS: dict[str, Signal] = {
    "energy_data": energy_data,
    "sensor_events": sensor_events,
    "dr_events": dr_events,
    "data_ingestion": data_ingestion,
    "room_metrics": room_metrics,
    "system_events": system_events,
}


def send_on_commit(signal: Signal, *, sender: Any, using: str | None = None, **kwargs: Any) -> None:
    """Send `signal` once the transaction open on `using` commits; at once when none is open.

    `using` is the database alias whose transaction the event depends on. If that transaction
    rolls back, the event is dropped. A receiver that raises is logged and does not stop the
    other receivers or the sender (`send_robust`): the data is already committed.
    """

    def send() -> None:
        for receiver, result in signal.send_robust(sender=sender, **kwargs):
            if isinstance(result, Exception):
                logger.error("receiver %r of %s failed", receiver, sender, exc_info=result)

    transaction.on_commit(send, using=using)
