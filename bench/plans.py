"""EXPLAIN (ANALYZE, BUFFERS) of the SQL the services run, on the 10 M database of bench/analytics.py.

Runs, with the analytics cache bypassed: energy per hour of all 20 rooms over the last local
day, energy per hour of one room over the last 30 local days, one batch of the daily retention
job, and the summary. Captures each statement with CaptureQueriesContext, then prints it with
its plan as Markdown, for docs/readings-store.md. The retention batch runs, and its statements
are explained, in transactions that are rolled back, so the database is left as it was.

Usage: python bench/plans.py [--db ed_bench_analytics] > plans.md
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))
from harness import PG  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="ed_bench_analytics")
    parser.add_argument("--pg", default=PG)
    args = parser.parse_args()

    os.environ.update(
        DJANGO_SETTINGS_MODULE="energy_dashboard.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"{args.pg}/{args.db}",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.db import connections, transaction
    from django.test import override_settings
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from sensors import analytics, services
    from sensors.aggregation import building_tz, local_day_bounds
    from sensors.models import Room

    connection = connections["sensors"]
    today = timezone.now().astimezone(building_tz()).date()
    end = local_day_bounds(today)[0]
    rooms = list(Room.objects.order_by("name").values_list("name", flat=True))

    def explain(title: str, run: Callable[[], Any], *, writes: bool = False) -> None:
        print(f"#### {title}\n")
        # A service that writes runs in a transaction that is rolled back, and its statements
        # are explained in another: each plan is of the statement as the service ran it.
        with transaction.atomic(using="sensors"):
            with CaptureQueriesContext(connection) as queries:
                run()
            transaction.set_rollback(writes, using="sensors")
        statements = [
            q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
        ]
        with transaction.atomic(using="sensors"), connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
                print(f"```sql\n{sql}\n```\n\n```\n{plan}\n```\n")
            transaction.set_rollback(writes, using="sensors")

    def energy(selected: list[str], days: int) -> Callable[[], Any]:
        start = end - timedelta(days=days)
        return lambda: analytics.energy_report(
            rooms=selected, sensor_ids=[], start=start, end=end, interval="1h"
        )

    explain(
        f"Energy per hour of all {len(rooms)} rooms over one day "
        f"(GET /analytics/energy?rooms={rooms[0]},...,{rooms[-1]}&interval=1h)",
        energy(rooms, 1),
    )
    explain(
        f"Energy per hour of one room over 30 days (GET /analytics/energy?rooms={rooms[3]}&interval=1h)",
        energy([rooms[3]], 30),
    )
    # The database's oldest readings are just past the default 90 days; 89 makes a full batch.
    with override_settings(READINGS_RETENTION_DAYS=89):
        explain(
            "Retention: one batch of the daily job (READINGS_RETENTION_DAYS=89, so the batch is "
            "full; explained in a transaction that is rolled back)",
            lambda: services.readings_cleanup(batch_size=10_000, max_batches=1),
            writes=True,
        )
    explain("Summary (GET /analytics/summary)", analytics.analytics_summary)


if __name__ == "__main__":
    main()
