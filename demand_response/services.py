"""The public face of the demand-response module."""

from __future__ import annotations

from typing import Any


def overview() -> dict[str, Any]:
    """Counts for the platform overview."""
    return {"devices": 0, "invitations_pending": 0, "events_active": 0}
