"""`manage.py openadr_ven`: run the OpenADR 2.0b VEN as its own process (started by `manage.py run`
when OPENADR_VTN_URL is set)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from demand_response import openadr


class Command(BaseCommand):
    """Connect to the VTN in OPENADR_VTN_URL and serve until SIGTERM / SIGINT."""

    help = "Run the OpenADR 2.0b VEN: events from the VTN become invitations; answers and load go back."

    def add_arguments(self, parser: CommandParser) -> None:
        """Overrides of the OPENADR_* settings and of the VEN's timings."""
        parser.add_argument("--vtn-url", help="The VTN's URL (default: OPENADR_VTN_URL).")
        parser.add_argument("--ven-name", help="This VEN's name (default: OPENADR_VEN_NAME).")
        parser.add_argument("--ven-id", help="This VEN's id from the VTN (default: OPENADR_VEN_ID).")
        parser.add_argument(
            "--answer-wait",
            type=float,
            help="Seconds an event waits for an answer before it is relayed later (default 5).",
        )
        parser.add_argument(
            "--relay-interval", type=float, help="Seconds between relays of later answers (default 5)."
        )
        parser.add_argument(
            "--no-policy",
            action="store_true",
            help="Do not run the auto-response policy on arrival (leave it to the beat).",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        """Run the VEN until a signal stops it."""
        config = openadr.VenConfig.from_settings(
            vtn_url=opts["vtn_url"],
            ven_name=opts["ven_name"],
            ven_id=opts["ven_id"],
            answer_wait=opts["answer_wait"],
            relay_interval=opts["relay_interval"],
            run_policy=False if opts["no_policy"] else None,
        )
        if not config.vtn_url:
            raise CommandError("Set OPENADR_VTN_URL (or pass --vtn-url) to the VTN's OpenADR 2.0b URL.")
        self.stdout.write(f"OpenADR VEN {config.ven_name!r} connecting to {config.vtn_url}")
        self.stdout.flush()
        asyncio.run(self._serve(config))
        self.stdout.write("OpenADR VEN stopped.")

    async def _serve(self, config: openadr.VenConfig) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await openadr.Ven(config).serve(stop)
