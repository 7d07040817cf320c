"""Post realistic readings for the demo building through readings_ingest."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from sensors import services


class Command(BaseCommand):
    help = (
        "Simulate the building's sensors: daily curves per room and kind, one batch every "
        "--interval seconds (0 iterations = until stopped); --backfill-hours writes history first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval", type=float, default=10.0, help="Seconds between batches (and the reading step)."
        )
        parser.add_argument("--iterations", type=int, default=0, help="Batches to send; 0 = until stopped.")
        parser.add_argument(
            "--backfill-hours", type=float, default=0.0, help="History to write first, at 5-minute steps."
        )
        parser.add_argument(
            "--sensor", action="append", dest="sensors", help="Only this sensor (repeatable)."
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["interval"] <= 0:
            raise CommandError("--interval must be positive")
        now = timezone.now().replace(microsecond=0)
        if opts["backfill_hours"]:
            done = services.simulate(
                sensor_ids=opts["sensors"],
                start=now - timedelta(hours=opts["backfill_hours"]),
                end=now,
                step_s=300,
            )
            services.aggregates_compute()
            self.stdout.write(f"Backfilled {done['accepted']} readings in {done['batches']} batches")
        sent = 0
        while opts["iterations"] == 0 or sent < opts["iterations"]:
            moment = timezone.now().replace(microsecond=0)
            done = services.simulate(
                sensor_ids=opts["sensors"],
                start=moment,
                end=moment + timedelta(seconds=1),
                step_s=opts["interval"],
                seed=sent,
            )
            sent += 1
            self.stdout.write(f"{moment.isoformat()}: {done['accepted']} readings", ending="\n")
            self.stdout.flush()
            if opts["iterations"] == 0 or sent < opts["iterations"]:
                time.sleep(opts["interval"])
