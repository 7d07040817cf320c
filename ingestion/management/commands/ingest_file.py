"""Backfill from local meter files through the same pipeline as files from a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingestion import services


class Command(BaseCommand):
    help = (
        "Import local SLG v2 files through the ingestion pipeline (ledger, duplicate check, "
        "all-or-nothing import, errors with line numbers). Exit status 1 if any file was "
        "rejected or failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="One JSON object per file on stdout: file, status, records, inserted, duplicates, "
            "conflicts, errors [{line, message}].",
        )

    def handle(self, *args: Any, paths: list[Path], as_json: bool = False, **opts: Any) -> None:
        bad = 0
        for path in paths:
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
            row = services.file_import_path(path=path)
            bad += row.status in ("rejected", "failed")
            if as_json:
                self.stdout.write(
                    json.dumps(
                        {
                            "file": str(path),
                            "status": row.status,
                            "records": row.records,
                            "inserted": row.inserted,
                            "duplicates": row.already_present,
                            "conflicts": row.conflicts,
                            "errors": [{"line": e["line"], "message": e["message"]} for e in row.errors],
                        }
                    )
                )
            else:
                self.stdout.write(f"{path}: {row.status}: {row.message}")
                for error in row.errors[:20]:
                    self.stdout.write(f"  line {error['line']}: {error['message']}")
                if row.error_count > 20:
                    self.stdout.write(f"  ... {row.error_count - 20} more (see the ledger, file {row.pk})")
        if bad:
            raise SystemExit(1)
