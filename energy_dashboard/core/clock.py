"""How the platform writes instants and which clock its calendar follows: one place for both.

Every API answer, live message and rejection reason writes an instant as UTC ISO 8601 ending
in ``Z``; local days, weeks and months (energy reports, baselines, rollups) are the building's,
in the one time zone of TIME_ZONE.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.conf import settings


def building_tz() -> ZoneInfo:
    """The building's time zone (TIME_ZONE): the calendar of its local days, weeks and months."""
    return ZoneInfo(settings.TIME_ZONE)


def iso_z(moment: datetime, *, timespec: str = "auto") -> str:
    """An aware instant as UTC ISO 8601 ending in Z, ``2026-11-02T10:00:00Z``.

    Microseconds are written when the instant has them (``timespec="auto"``, as the API gives
    stored instants back exactly); ``timespec="seconds"`` leaves them out, for messages.
    """
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
