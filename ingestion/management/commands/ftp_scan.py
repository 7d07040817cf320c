"""Scan remote sources for new meter files now."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingestion import services, tasks
from ingestion.models import RemoteSource


class Command(BaseCommand):
    help = (
        "Scan SOURCE (by name), or every enabled source. Without --now the scans are queued for "
        "the workers; with --now they run here, new files downloaded and imported in this process."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", nargs="?", help="a source's name; default: every enabled source")
        parser.add_argument("--now", action="store_true", help="scan and import here, not in a worker")

    def handle(self, *args: Any, source: str | None = None, now: bool = False, **opts: Any) -> None:
        services.default_source_sync()
        if source:
            sources = list(RemoteSource.objects.filter(name=source))
            if not sources:
                names = ", ".join(RemoteSource.objects.values_list("name", flat=True)) or "none"
                raise CommandError(f"no source named {source!r} (sources: {names})")
        else:
            sources = list(RemoteSource.objects.filter(enabled=True))
            if not sources:
                raise CommandError("no enabled sources (set FTP_SA4CPS_HOST or add one in the admin or API)")
        failed = False
        for item in sources:
            if not now:
                tasks.source_scan.delay(item.pk)
                self.stdout.write(f"{item.name}: scan queued")
                continue
            processed: list[int] = []
            result = services.source_scan(source=item, on_file=processed.append)
            summary = result.as_dict()
            files = [services.file_run(file_id=pk) for pk in processed]
            summary["files"] = [
                {"id": f.pk, "name": f.name, "status": f.status} for f in files if f is not None
            ]
            self.stdout.write(json.dumps(summary, default=str))
            failed |= not result.ok
        if failed:
            raise SystemExit(1)
