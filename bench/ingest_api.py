"""Readings/s through POST /api/v1/readings on PostgreSQL, beside raw COPY and bulk_create.

Creates a fresh database (`--db`, default ed_bench on the local PostgreSQL), 1,000 sensors, and
`--readings` readings (default 1,000,000) in batches of `--batch` (5,000). Then, in one run:

1. the API: `manage.py run --no-worker --no-beat` (gunicorn as the product serves HTTP), two
   client threads posting pre-encoded batches (keep-alive off, as gunicorn sync workers do).
   Untimed first: two batches of 1,000 older readings per web worker, deleted again, so every
   worker has opened its database connections and run the COPY path once (a worker's first
   request costs 1.5-2x a later one); the figure is the sustained rate, as a server that has
   been up for more than a second sees it;
2. raw `COPY` of the same rows into the same (emptied) table;
3. Django `bulk_create(ignore_conflicts=True)` of the same rows into the emptied table.

Prints each rate and the ratios; targets: API >= 100,000 readings/s, >= 25% of COPY, >= 3x
bulk_create. Loopback only; every loop is bounded by --readings.

`--web-workers N` sets the product's gunicorn worker count (WEB_CONCURRENCY) for the run, to
compare server set-ups; by default the product's own default is used.

Usage: python bench/ingest_api.py [--readings 1000000] [--batch 5000] [--clients 2] [--web-workers N]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))
from harness import PG, fresh_database, post_readings, running_product  # noqa: E402


def warm_up(port: int, token: str, before: datetime, sensors: int, workers: int) -> None:
    """Two concurrent batches of 1,000 readings per web worker, older than the measured ones
    (the caller deletes them): gunicorn hands each to whichever worker is free."""
    bodies = [
        json.dumps(
            {
                "readings": [
                    {
                        "sensor_id": f"bench-{s % sensors:04d}",
                        "metric": "power",
                        "timestamp": (before - timedelta(days=1, minutes=n + s // sensors)).isoformat(),
                        "value": 1.0,
                    }
                    for s in range(1_000)
                ]
            }
        ).encode()
        for n in range(2 * workers)
    ]
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda b=body: answers.append(post_readings(port, token, b)[0]))
        for body in bodies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if answers.count(201) != len(bodies):
        raise SystemExit(f"warm-up answered {answers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="ed_bench")
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--sensors", type=int, default=1_000)
    parser.add_argument("--web-workers", type=int, default=None, help="gunicorn workers (WEB_CONCURRENCY)")
    args = parser.parse_args()

    database_url = fresh_database(args.db, args.pg)
    server = {"WEB_CONCURRENCY": str(args.web_workers)} if args.web_workers else {}
    with running_product("--no-worker", "--no-beat", database_url=database_url, **server) as product:
        port = product.port
        product.setup_django()
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.db import connections
        from rest_framework.authtoken.models import Token

        from sensors import services
        from sensors.models import Reading, Sensor

        for i in range(args.sensors):
            services.sensor_register(sensor_id=f"bench-{i:04d}", kind="power")
        user = User.objects.create_superuser("bench", password=secrets.token_urlsafe(12))
        token = Token.objects.create(user=user).key

        table = Reading._meta.db_table
        connection = connections["sensors"]
        pks = dict(Sensor.objects.filter(sensor_id__startswith="bench-").values_list("sensor_id", "pk"))

        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
        per_sensor = args.readings // args.sensors
        rows = [
            (f"bench-{s:04d}", start + timedelta(minutes=m), float((s * 7 + m) % 500))
            for m in range(per_sensor)
            for s in range(args.sensors)
        ]
        bodies = [
            json.dumps(
                {
                    "readings": [
                        {"sensor_id": sid, "metric": "power", "timestamp": ts.isoformat(), "value": v}
                        for sid, ts, v in rows[i : i + args.batch]
                    ]
                }
            ).encode()
            for i in range(0, len(rows), args.batch)
        ]
        print(
            f"{len(rows):,} readings, {args.sensors:,} sensors, {len(bodies)} batches of {args.batch:,}, "
            f"{args.clients} client threads, {args.web_workers or 'default'} web workers, "
            f"PostgreSQL database {args.db}\n"
        )

        warm_up(port, token, start, args.sensors, args.web_workers or settings.WEB_CONCURRENCY)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table}")

        queue = list(reversed(bodies))
        lock = threading.Lock()
        accepted = [0]
        errors: list[str] = []

        def client() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                status, answer = post_readings(port, token, body)
                payload = json.loads(answer)
                with lock:
                    if status != 201:
                        errors.append(f"{status}: {str(payload)[:200]}")
                    accepted[0] += payload.get("accepted", 0)

        t = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        api_s = time.perf_counter() - t
        if errors:
            raise SystemExit(f"API errors: {errors[:3]}")
        api_rate = accepted[0] / api_s
        stored = Reading.objects.filter(sensor__sensor_id__startswith="bench-").count()
        print(
            f"API  POST /api/v1/readings : {accepted[0]:,} accepted ({stored:,} stored) in {api_s:.2f} s"
            f" = {api_rate:,.0f} readings/s"
        )

        copy_rows = [(pks[sid], "power", ts, v, False) for sid, ts, v in rows]

        def truncate() -> None:
            with connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {table}")

        truncate()
        t = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} (sensor_id, metric, timestamp, value, estimated) FROM STDIN") as copy,
        ):
            for row in copy_rows:
                copy.write_row(row)
        copy_s = time.perf_counter() - t
        copy_rate = len(copy_rows) / copy_s
        print(
            f"raw COPY (same rows, table) : {len(copy_rows):,} in {copy_s:.2f} s = {copy_rate:,.0f} readings/s"
        )

        truncate()
        t = time.perf_counter()
        Reading.objects.bulk_create(
            [
                Reading(sensor_id=p, metric=m, timestamp=ts, value=v, estimated=e)
                for p, m, ts, v, e in copy_rows
            ],
            batch_size=args.batch,
            ignore_conflicts=True,
        )
        bulk_s = time.perf_counter() - t
        bulk_rate = len(copy_rows) / bulk_s
        print(
            f"Django bulk_create          : {len(copy_rows):,} in {bulk_s:.2f} s = {bulk_rate:,.0f} readings/s"
        )
        truncate()

        print()
        checks = [
            ("API readings/s >= 100,000", api_rate >= 100_000, f"{api_rate:,.0f}"),
            ("API / raw COPY >= 0.25", api_rate / copy_rate >= 0.25, f"{api_rate / copy_rate:.2f}"),
            ("API / bulk_create >= 3.0", api_rate / bulk_rate >= 3.0, f"{api_rate / bulk_rate:.2f}"),
        ]
        for name, ok, value in checks:
            print(f"{name:28} {value:>10}  {'PASS' if ok else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
