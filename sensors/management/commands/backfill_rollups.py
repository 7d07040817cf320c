"""Recompute rollups and room metrics over a range."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from sensors import services


class Command(BaseCommand):
    help = "Recompute rollups and room metrics for readings in [--since, --until) (ISO 8601 with offset)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True)
        parser.add_argument("--until", required=True)
        parser.add_argument(
            "--sensor", action="append", dest="sensors", help="Only this sensor (repeatable)."
        )

    def handle(self, *args: Any, since: str, until: str, sensors: list[str] | None, **opts: Any) -> None:
        start, end = parse_datetime(since), parse_datetime(until)
        for name, value in (("--since", start), ("--until", end)):
            if value is None or value.tzinfo is None:
                raise CommandError(f"{name} must be ISO 8601 with an offset, e.g. 2026-11-01T00:00:00Z")
        assert start is not None
        assert end is not None
        if start >= end:
            raise CommandError("--since must be before --until")
        done = services.rollups_backfill(since=start, until=end, sensor_ids=sensors)
        self.stdout.write(f"Backfilled: recomputed {done['days']} day(s), {done['rooms']} room(s)")
