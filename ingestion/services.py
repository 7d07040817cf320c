"""The public face of the ingestion module."""

from __future__ import annotations

from typing import Any


def overview() -> dict[str, Any]:
    """Counts for the platform overview."""
    return {"sources": 0, "files": 0}
