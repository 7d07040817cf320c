"""Helpers the demand-response tests share (fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

from demand_response import services

# An auto-response policy that evaluates every invitation: every day and hour, any notice, the
# whole flexibility, no device excluded, up to four hours long.
PERMISSIVE_POLICY: dict[str, Any] = {
    "enabled": True,
    "allowed_days": list(range(7)),
    "allowed_from_hour": 0,
    "allowed_until_hour": 24,
    "max_duration_minutes": 240,
    "min_notice_minutes": 0,
    "max_share": 1.0,
    "excluded_devices": [],
}


def permissive_policy(**changes: Any) -> None:
    """Set the permissive policy, with `changes` to the rules a test is about."""
    services.policy_update(updated_by="test", **{**PERMISSIVE_POLICY, **changes})
