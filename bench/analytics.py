"""Latency of /analytics/energy and /analytics/summary at 10 million readings, beside raw SQL.

For each scale (`--readings`, default 10,000,000, then `--small` 1,000,000), on a fresh
PostgreSQL database (`--db`; the small scale in `--small-db`, or the same database re-created):

1. N / 10,000 sensors (1,000 at 10 M, 100 at 1 M) in 20 rooms, half energy meters (`energy`,
   kWh per interval), half power sensors (`power`, W), each reporting every 777.6 s (about 13
   minutes) over the 90 days up to now: a smaller scale is a smaller building with the same
   series, so the endpoints answer the same number of points at both scales; staggered in
   ten phases, with a working-day curve; loaded time-major (as readings arrive) with raw COPY
   into the readings table, then VACUUM ANALYZE (what autovacuum does after a bulk load);
2. rollups and room metrics built by the product's own backfill (`services.rollups_backfill`,
   the code behind `manage.py backfill_rollups`), timed, then VACUUM ANALYZE;
3. over the product's HTTP server (`manage.py run --no-worker --no-beat`: gunicorn, production
   settings, token auth, a new connection per request), the median and p90 latency of
   GET /api/v1/analytics/energy for one room over 30 days hourly and for all rooms over one day
   hourly, and of GET /api/v1/analytics/summary; beside each, the median of the equivalent
   aggregate over raw readings in plain SQL on a psycopg connection (no Django).

The endpoint medians are what a dashboard sees: repeated questions are answered from the
product's analytics cache while their days' data is unchanged. Beside them, the median when
every request misses the cache (the computation itself) is printed too.

Targets per endpoint: under 50 ms, at least 10x faster than the raw aggregate, and latency at
10 M within 1.5x of latency at 1 M. `--reuse` keeps a database that already holds its scale's
readings (set up by an earlier run) and only measures. Loopback only; every loop is bounded
(--repeat requests per figure).

Usage: python bench/analytics.py [--readings 10000000] [--small 1000000] [--repeat 30]
       [--db ed_bench_analytics] [--small-db NAME] [--reuse]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

BASE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))
from harness import PG, fresh_database, running_product  # noqa: E402

SENSORS = 1_000  # at 10 M readings
# Readings per sensor over the 90 days (one every 777.6 s): the same at every scale, so that a
# smaller scale is a smaller building with the same series, and the endpoints answer the same
# number of points; the 10 M / 1 M ratio then shows how queries grow with the table.
PER_SENSOR = 10_000


def sensor_count(readings: int) -> int:
    """Sensors of a scale: 1,000 at 10 M, 100 at 1 M (at least two per room)."""
    return max(2 * ROOMS, readings // PER_SENSOR)


ROOMS = 20
DAYS = 90
PHASES = 10
USER = "bench"


def percentile(values: list[float], share: float) -> float:
    """The value at `share` of the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def timed(
    call: Callable[[], Any], repeat: int, warmup: int = 3, before: Callable[[], Any] | None = None
) -> tuple[float, float]:
    """Median and p90 in ms of `repeat` calls after `warmup` unmeasured ones; `before` runs
    untimed before each measured call."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        t = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), percentile(samples, 0.9)


def load(database_url: str, readings: int, end: datetime) -> dict[str, Any]:
    """Rooms, sensors and `readings` readings by COPY; returns what it made and how long it took."""
    from django.db import connections

    from sensors import services
    from sensors.models import Reading, Sensor

    for r in range(ROOMS):
        services.room_create(name=f"room-{r:02d}")
    count = sensor_count(readings)
    for i in range(count):
        services.sensor_register(
            sensor_id=f"s-{i:04d}",
            kind="energy_meter" if i // ROOMS % 2 == 0 else "power",
            room_name=f"room-{i % ROOMS:02d}",
            expected_interval_s=900,
        )
    pks = dict(Sensor.objects.values_list("sensor_id", "pk"))
    step = DAYS * 86_400 * count / readings
    per_sensor = readings // count
    start = end - timedelta(days=DAYS)
    sensors = [
        (pks[f"s-{i:04d}"], i // ROOMS % 2 == 0, 200.0 + (i * 37) % 800, i % PHASES) for i in range(count)
    ]
    connection = connections["sensors"]
    t = time.perf_counter()
    with (
        connection.cursor() as cursor,
        cursor.copy(
            f"COPY {Reading._meta.db_table} (sensor_id, metric, timestamp, value, estimated) FROM STDIN"
        ) as copy,
    ):
        for k in range(per_sensor):
            moments = [start + timedelta(seconds=(k + p / PHASES) * step) for p in range(PHASES)]
            stamps = [m.isoformat() for m in moments]
            # A working-day curve: most in office hours, a base load at night.
            curves = [1.0 + 0.8 * max(0.0, math.sin((m.hour - 7) / 12 * math.pi)) for m in moments]
            lines = []
            for pk, energy, base, phase in sensors:
                watts = base * curves[phase] * (1 + 0.1 * ((k * 7 + pk) % 11) / 11)
                if energy:
                    lines.append(f"{pk}\tenergy\t{stamps[phase]}\t{watts * step / 3.6e6:.5f}\tf\n")
                else:
                    lines.append(f"{pk}\tpower\t{stamps[phase]}\t{watts:.1f}\tf\n")
            copy.write("".join(lines))
    copy_s = time.perf_counter() - t
    t = time.perf_counter()
    vacuum(database_url, Reading._meta.db_table)
    return {"copied": per_sensor * count, "copy_s": copy_s, "vacuum_s": time.perf_counter() - t}


def live_power(readings: int) -> None:
    """If the newest power reading is older than the summary's "now" window (the setup took
    long, or the database is reused), what a live building sends: one reading per power sensor
    through the product's ingest, then the incremental aggregation job."""
    from django.utils import timezone

    from sensors import services
    from sensors.analytics import CURRENT_WINDOW
    from sensors.models import Reading, Sensor

    now = timezone.now().replace(microsecond=0)
    if Reading.objects.filter(metric="power", timestamp__gte=now - CURRENT_WINDOW / 2).exists():
        return
    items = [
        {
            "sensor_id": sensor_id,
            "metric": "power",
            "timestamp": (now - timedelta(seconds=30)).isoformat(),
            "value": 500.0,
        }
        for sensor_id in Sensor.objects.filter(kind="power").values_list("sensor_id", flat=True)
    ]
    accepted = services.readings_ingest(readings=items, source="bench")["accepted"]
    done = services.aggregates_compute()
    print(f"[{readings:,}] live power: {accepted} readings ingested, aggregated {done}", flush=True)


def vacuum(database_url: str, *tables: str) -> None:
    """VACUUM ANALYZE (outside a transaction, so on its own autocommit connection)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"VACUUM ANALYZE {table}")


def raw_queries(now: datetime) -> dict[str, tuple[str, list[Any]]]:
    """The endpoints' figures as aggregates over raw readings: plain SQL, no rollups."""
    from sensors.analytics import CURRENT_WINDOW
    from sensors.models import Reading, Room, Sensor

    reading, sensor, room = Reading._meta.db_table, Sensor._meta.db_table, Room._meta.db_table
    windows = endpoint_windows(now)
    hourly = (
        f"SELECT m.name, date_trunc('hour', r.timestamp) AS hour, sum(r.value) FROM {reading} r "
        f"JOIN {sensor} s ON s.id = r.sensor_id JOIN {room} m ON m.id = s.room_id "
        "WHERE m.name = ANY(%s) AND r.metric = 'energy' AND r.timestamp >= %s AND r.timestamp < %s "
        "GROUP BY m.name, hour ORDER BY m.name, hour"
    )
    day, week, month = windows["summary"]
    energy = (
        "SELECT s.sensor_id, s.kind, m.name, "
        "sum(CASE WHEN r.timestamp >= %s THEN r.value END), "
        "sum(CASE WHEN r.timestamp >= %s THEN r.value END), "
        "sum(CASE WHEN r.timestamp >= %s THEN r.value END) "
        f"FROM {reading} r JOIN {sensor} s ON s.id = r.sensor_id LEFT JOIN {room} m ON m.id = s.room_id "
        "WHERE r.metric = 'energy' AND r.timestamp >= %s AND r.timestamp <= %s "
        "GROUP BY s.sensor_id, s.kind, m.name"
    )
    power = (
        "SELECT DISTINCT ON (r.sensor_id) r.sensor_id, m.name, r.value "
        f"FROM {reading} r JOIN {sensor} s ON s.id = r.sensor_id LEFT JOIN {room} m ON m.id = s.room_id "
        "WHERE r.metric = 'power' AND r.timestamp >= %s AND r.timestamp <= %s "
        "ORDER BY r.sensor_id, r.timestamp DESC"
    )
    comfort = (
        f"SELECT m.name, avg(r.value) FROM {reading} r JOIN {sensor} s ON s.id = r.sensor_id "
        f"JOIN {room} m ON m.id = s.room_id WHERE r.metric IN ('co2', 'temperature', 'humidity') "
        "AND r.timestamp >= %s GROUP BY m.name, r.metric"
    )
    summary_sql = ";\n".join([power, energy, comfort])
    summary_params = [
        now - CURRENT_WINDOW,
        now,
        day,
        week,
        month,
        min(week, month),
        now,
        now - timedelta(minutes=5),
    ]
    return {
        "energy_room_30d": (hourly, [[windows["room"]], *windows["room_30d"]]),
        "energy_all_rooms_1d": (hourly, [windows["rooms"], *windows["all_rooms_1d"]]),
        "summary": (summary_sql, summary_params),
    }


def endpoint_windows(now: datetime) -> dict[str, Any]:
    """The periods asked for: the last 30 whole local days, yesterday, the summary's starts."""
    from sensors.aggregation import building_tz, local_day_bounds

    today = now.astimezone(building_tz()).date()
    yesterday = local_day_bounds(today - timedelta(days=1))
    return {
        "room": "room-03",
        "rooms": [f"room-{r:02d}" for r in range(ROOMS)],
        "room_30d": (local_day_bounds(today - timedelta(days=30))[0], local_day_bounds(today)[0]),
        "all_rooms_1d": yesterday,
        "summary": (
            local_day_bounds(today)[0],
            local_day_bounds(today - timedelta(days=today.weekday()))[0],
            local_day_bounds(today.replace(day=1))[0],
        ),
    }


def phase(args: argparse.Namespace) -> dict[str, Any]:
    """One scale: set up (or reuse) the database, build rollups, measure; returns the figures."""
    import psycopg

    database_url = f"{args.pg}/{args.db}"
    reuse = args.reuse and has_readings(args.pg, args.db, args.readings)
    if not reuse:
        fresh_database(args.db, args.pg)
    result: dict[str, Any] = {"readings": args.readings, "db": args.db, "reused": reuse}
    with running_product("--no-worker", "--no-beat", database_url=database_url) as product:
        product.setup_django()
        from django.contrib.auth.models import User
        from rest_framework.authtoken.models import Token

        from sensors import analytics_cache, services
        from sensors.models import Reading, Rollup, RoomMetrics

        end = datetime.now(UTC).replace(second=0, microsecond=0)
        if reuse:
            end = Reading.objects.order_by("-timestamp").values_list("timestamp", flat=True).first()
            assert end is not None
        else:
            result.update(load(database_url, args.readings, end))
            print(
                f"[{args.readings:,}] COPY {result['copied']:,} readings in {result['copy_s']:.1f} s, "
                f"VACUUM ANALYZE {result['vacuum_s']:.1f} s",
                flush=True,
            )
        if args.rebuild or not Rollup.objects.exists():
            Rollup.objects.all()._raw_delete("sensors")
            RoomMetrics.objects.all()._raw_delete("sensors")
            t = time.perf_counter()
            done = services.rollups_backfill(
                since=end - timedelta(days=DAYS + 1), until=end + timedelta(minutes=1)
            )
            result["backfill_s"] = time.perf_counter() - t
            vacuum(database_url, Rollup._meta.db_table, RoomMetrics._meta.db_table)
            print(
                f"[{args.readings:,}] backfill (services.rollups_backfill): {done['days']} days, "
                f"{done['rooms']} rooms in {result['backfill_s']:.1f} s = "
                f"{args.readings / result['backfill_s']:,.0f} readings/s",
                flush=True,
            )
        live_power(args.readings)
        result["rollups"] = Rollup.objects.count()
        result["room_metrics"] = RoomMetrics.objects.count()
        user = User.objects.filter(username=USER).first() or User.objects.create_superuser(
            USER, password=secrets.token_urlsafe(12)
        )
        token = Token.objects.get_or_create(user=user)[0].key
        # "now" for the summary is the server's clock; the data ends at `end` (now, when fresh).
        now = datetime.now(UTC)
        windows = endpoint_windows(now)

        def get(path: str, params: dict[str, str] | None = None) -> Callable[[], Any]:
            url = path + ("?" + urlencode(params) if params else "")

            def call() -> Any:
                conn = http.client.HTTPConnection("127.0.0.1", product.port, timeout=60)
                conn.request(
                    "GET", url, headers={"Authorization": f"Token {token}", "Accept": "application/json"}
                )
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status != 200:
                    raise SystemExit(f"GET {url}: {response.status} {body[:300]!r}")
                return json.loads(body)

            return call

        def span(pair: tuple[datetime, datetime]) -> dict[str, str]:
            return {"start": pair[0].isoformat(), "end": pair[1].isoformat()}

        endpoints = {
            "energy_room_30d": get(
                "/api/v1/analytics/energy",
                {"rooms": windows["room"], "interval": "1h", **span(windows["room_30d"])},
            ),
            "energy_all_rooms_1d": get(
                "/api/v1/analytics/energy",
                {"rooms": ",".join(windows["rooms"]), "interval": "1h", **span(windows["all_rooms_1d"])},
            ),
            "summary": get("/api/v1/analytics/summary"),
        }
        raw = raw_queries(now)
        with psycopg.connect(database_url, autocommit=True) as conn:
            for name, call in endpoints.items():
                body = call()
                sql, params = raw[name]

                def run_raw(sql: str = sql, params: list[Any] = params) -> None:
                    with conn.cursor() as cursor:
                        for statement, args_of in split_statements(sql, params):
                            cursor.execute(statement, args_of)
                            cursor.fetchall()

                endpoint_ms = timed(call, args.repeat)
                # Every request a cache miss: the analytics cache (sensors/analytics_cache.py)
                # told before each that the registry changed, as a sensor edit would.
                cold_ms = timed(call, args.repeat, warmup=0, before=analytics_cache.registry_changed)
                raw_ms = timed(run_raw, max(5, args.repeat // 3), warmup=1)
                result[name] = {
                    "endpoint": endpoint_ms,
                    "cold": cold_ms,
                    "raw": raw_ms,
                    "check": check_of(name, body),
                }
                print(
                    f"[{args.readings:,}] {name:20} endpoint median {endpoint_ms[0]:7.1f} ms "
                    f"p90 {endpoint_ms[1]:7.1f} ms (every request a cache miss: median "
                    f"{cold_ms[0]:6.1f} ms) | raw SQL median {raw_ms[0]:8.1f} ms "
                    f"p90 {raw_ms[1]:8.1f} ms | {result[name]['check']}",
                    flush=True,
                )
    return result


def split_statements(sql: str, params: list[Any]) -> list[tuple[str, list[Any]]]:
    """Statements joined with ';\\n' and their parameters in order."""
    out = []
    for statement in sql.split(";\n"):
        n = statement.count("%s")
        out.append((statement, params[:n]))
        params = params[n:]
    return out


def check_of(name: str, body: dict[str, Any]) -> str:
    """A line saying the answer is not empty (a fast empty answer would prove nothing)."""
    if name == "summary":
        return (
            f"power {body['current_power_w']:,.0f} W, month {body['energy_kwh']['month']:,.0f} kWh, "
            f"{len(body['top_consumers_week_kwh'])} top"
        )
    points = sum(len(s["points"]) for s in body["series"])
    total = sum(s["total_kwh"] for s in body["series"])
    return f"{len(body['series'])} series, {points} points, {total:,.1f} kWh"


def has_readings(pg: str, db: str, readings: int) -> bool:
    """Whether `db` exists and holds this scale's readings (and at most a few live ones)."""
    import psycopg

    try:
        with psycopg.connect(f"{pg}/{db}", autocommit=True) as conn:
            (count,) = conn.execute("SELECT count(*) FROM sensors_reading").fetchone() or (0,)
    except psycopg.Error:
        return False
    # At least: a measuring run adds live power readings (see live_power).
    expected = readings // sensor_count(readings) * sensor_count(readings)
    return bool(expected <= count <= expected + expected // 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="ed_bench_analytics")
    parser.add_argument("--small-db", default=None, help="Database of the small scale (default: --db).")
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=1_000_000, help="Second scale; 0 to skip it.")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="Keep a database that holds the readings.")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the rollups even if present.")
    parser.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print("RESULT " + json.dumps(phase(args)), flush=True)
        return

    results = []
    scales = [(args.readings, args.db), *([(args.small, args.small_db or args.db)] if args.small else [])]
    for readings, db in scales:
        # Each scale in its own process: Django is set up once per process, against one database.
        argv = [sys.executable, __file__, "--phase", "--readings", str(readings), "--db", db]
        argv += ["--pg", args.pg, "--repeat", str(args.repeat), *(["--reuse"] if args.reuse else [])]
        argv += ["--rebuild"] if args.rebuild else []
        found = None
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith("RESULT "):
                    found = json.loads(line[7:])
                else:
                    print(line, end="", flush=True)
        if child.returncode or found is None:
            raise SystemExit(f"scale {readings:,} failed ({child.returncode})")
        results.append(found)

    print()
    big = results[0]
    checks = []
    for name in ("energy_room_30d", "energy_all_rooms_1d", "summary"):
        endpoint, raw = big[name]["endpoint"][0], big[name]["raw"][0]
        checks.append((f"{name} < 50 ms", endpoint < 50, f"{endpoint:.1f} ms"))
        checks.append((f"{name} raw/endpoint >= 10", raw / endpoint >= 10, f"{raw / endpoint:.1f}x"))
        cold = big[name]["cold"][0]
        print(f"  ({name}: every request a cache miss {cold:.1f} ms, raw/miss {raw / cold:.1f}x)")
        if len(results) > 1:
            ratio = endpoint / results[1][name]["endpoint"][0]
            checks.append(
                (
                    f"{name} {big['readings'] // 10**6}M/{results[1]['readings'] // 10**6}M <= 1.5",
                    ratio <= 1.5,
                    f"{ratio:.2f}",
                )
            )
    for name, ok, value in checks:
        print(f"{name:40} {value:>10}  {'PASS' if ok else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
