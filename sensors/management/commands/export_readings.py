"""Export raw readings as CSV."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from sensors import services


class Command(BaseCommand):
    help = "Write raw readings in [--since, --until) as CSV (the import format) to --output or stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True)
        parser.add_argument("--until", required=True)
        parser.add_argument("--sensor", action="append", dest="sensors", default=[])
        parser.add_argument("--room", action="append", dest="rooms", default=[])
        parser.add_argument("--metric", action="append", dest="metrics", default=[])
        parser.add_argument("--output", type=Path)

    def handle(self, *args: Any, **opts: Any) -> None:
        start, end = parse_datetime(opts["since"]), parse_datetime(opts["until"])
        if start is None or end is None or start.tzinfo is None or end.tzinfo is None:
            raise CommandError("--since and --until must be ISO 8601 with an offset")
        if not opts["sensors"] and not opts["rooms"]:
            opts["sensors"] = [s["sensor_id"] for s in services.sensors_list()]
        handle = opts["output"].open("w", newline="") if opts["output"] else sys.stdout
        try:
            writer = csv.writer(handle)
            writer.writerow(["sensor_id", "metric", "timestamp", "value", "quality"])
            count = 0
            for row in services.data_query(
                sensor_ids=opts["sensors"],
                rooms=opts["rooms"],
                metrics=opts["metrics"],
                start=start,
                end=end,
                aggregation="raw",
                interval="1h",
                limit=10**12,
            ):
                writer.writerow(
                    [row["sensor_id"], row["metric"], row["timestamp"], row["value"], row["quality"]]
                )
                count += 1
        finally:
            if opts["output"]:
                handle.close()
        if opts["output"]:
            self.stdout.write(f"Wrote {count} readings to {opts['output']}")
