"""`manage.py mqtt_ingest`: the MQTT ingester as its own process (started by `manage.py run`
when an enabled broker exists; docs/mqtt.md)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ingestion.mqtt import ingester


class Command(BaseCommand):
    """Subscribe to every enabled broker and store what arrives, until SIGTERM / SIGINT."""

    help = (
        "Run the MQTT ingester: every enabled broker's mappings, at QoS 1 on a persistent session; "
        "each message acknowledged once its readings are stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The batch's bounds."""
        parser.add_argument(
            "--batch",
            type=int,
            default=ingester.BATCH_MESSAGES,
            help=f"Messages stored together at most (default {ingester.BATCH_MESSAGES}).",
        )
        parser.add_argument(
            "--batch-seconds",
            type=float,
            default=ingester.BATCH_SECONDS,
            help=f"Seconds a batch waits after its first message (default {ingester.BATCH_SECONDS}).",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        """Run until a signal stops it; what is not stored then is not acknowledged."""
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        worker = ingester.Ingester(
            batch_messages=max(1, opts["batch"]), batch_seconds=max(0.0, opts["batch_seconds"]), stop=stop
        )
        self.stdout.write("MQTT ingester started")
        self.stdout.flush()
        worker.run()
        self.stdout.write("MQTT ingester stopped.")
