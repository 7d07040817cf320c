"""Import history from CSV through readings_ingest (the same validation as the API)."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sensors import services

BATCH = 5000
REQUIRED = {"sensor_id", "metric", "timestamp", "value"}


class Command(BaseCommand):
    help = (
        "Import readings from CSV files with the columns sensor_id, metric, timestamp, value "
        "and optionally unit and quality; original timestamps are kept. Rejected rows are "
        "reported with their line numbers; nothing else is lost."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="One JSON summary per file on stdout."
        )

    def handle(self, *args: Any, paths: list[Path], as_json: bool = False, **opts: Any) -> None:
        failed = False
        for path in paths:
            summary = self._import(path)
            failed |= bool(summary["rejected"])
            if as_json:
                self.stdout.write(json.dumps(summary))
            else:
                self.stdout.write(
                    f"{path}: {summary['accepted']} accepted, {summary['duplicates']} duplicates, "
                    f"{summary['conflicts']} conflicts, {len(summary['rejected'])} rejected"
                )
                for rejection in summary["rejected"][:50]:
                    self.stdout.write(f"  line {rejection['line']}: {rejection['reason']}")
        services.aggregates_compute()
        if failed:
            raise CommandError("Some rows were rejected (see above).")

    def _import(self, path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        totals: dict[str, Any] = {
            "file": str(path),
            "accepted": 0,
            "duplicates": 0,
            "conflicts": 0,
            "rejected": [],
        }
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = REQUIRED - set(reader.fieldnames or [])
            if missing:
                raise CommandError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            batch: list[dict[str, Any]] = []
            lines: list[int] = []
            for row in reader:
                batch.append(_item(row))
                lines.append(reader.line_num)
                if len(batch) == BATCH:
                    self._flush(batch, lines, totals)
                    batch, lines = [], []
            self._flush(batch, lines, totals)
        return totals

    def _flush(self, batch: list[dict[str, Any]], lines: list[int], totals: dict[str, Any]) -> None:
        if not batch:
            return
        result = services.readings_ingest(readings=batch, source="import")
        for key in ("accepted", "duplicates", "conflicts"):
            totals[key] += result[key]
        totals["rejected"] += [{"line": lines[r["index"]], "reason": r["reason"]} for r in result["rejected"]]


def _item(row: dict[str, str]) -> dict[str, Any]:
    value: Any = row.get("value", "")
    # A value that is not a number is passed on as text: readings_ingest rejects it, with its reason.
    with contextlib.suppress(ValueError):
        value = float(value)
    timestamp: Any = row.get("timestamp", "").strip()
    if timestamp.replace(".", "", 1).isdigit():
        timestamp = float(timestamp)
    item = {
        "sensor_id": row.get("sensor_id", "").strip(),
        "metric": row.get("metric", "").strip(),
        "timestamp": timestamp,
        "value": value,
    }
    if row.get("unit"):
        item["unit"] = row["unit"].strip()
    if row.get("quality"):
        item["quality"] = row["quality"].strip()
    return item
