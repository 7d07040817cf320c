"""Meter files through the ingestion pipeline on PostgreSQL, beside raw COPY of the same rows.

Creates a fresh database (`--db`, default ed_bench_files), writes two SLG v2 files with the
project's writer (`--small` readings, default 500,000, and `--large`, default 2,000,000; 200
meters each, different meters so every reading is new), and imports each with
`manage.py ingest_file --json` in its own process (the whole pipeline: ledger, hash, parser,
meter registration, validation, one transaction). Prints for each: readings/s over the
processing time the ledger records and over the command's wall time, and the process's peak
RSS. Then it empties the readings table and COPYs the large file's rows (already resolved to
sensor keys, as binary-ready text) into the same table with the same indexes, and prints that
rate and the ratio. Targets: pipeline >= 40% of raw COPY; peak RSS about the same for both
sizes (flat memory).

Usage: python bench/ingest_files.py [--small 500000] [--large 2000000] [--meters 200]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

BASE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))
from harness import PG, fresh_database  # noqa: E402

from ingestion import slg  # noqa: E402  (pure: no Django needed to write files)

TZ = ZoneInfo("Europe/Lisbon")
FIRST = datetime(2025, 1, 6, tzinfo=UTC)


def meter(prefix: str, n: int) -> str:
    return f"PT{prefix}{n:06d}"


def write_file(path: Path, prefix: str, meters: int, readings: int) -> None:
    """One file, meter after meter, `readings // meters` quarter hours each."""
    per_meter = readings // meters
    records = (
        (meter(prefix, m), FIRST + timedelta(minutes=15 * q), 50 + (q * 7 + m) % 400, q % 97 == 0)
        for m in range(meters)
        for q in range(per_meter)
    )
    with path.open("wb") as out:
        out.writelines(slg.write_slg(records, tz=TZ, file_date=FIRST.date()))


def run_import(path: Path, env: dict[str, str]) -> tuple[dict[str, object], float, int]:
    """`manage.py ingest_file --json PATH` in its own process: (its JSON, wall seconds, peak RSS kB)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "ingest_file", "--json", str(path)],
            cwd=BASE,
            env=env,
            stdout=out,
            stderr=err,
        )
        # wait4, not wait: the peak RSS of this one child.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise SystemExit(f"ingest_file failed ({status}):\n{err.read().decode(errors='replace')[-3000:]}")
        return json.loads(out.read().decode().splitlines()[-1]), wall, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="ed_bench_files")
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/8", help="for the live feed's pushes")
    parser.add_argument("--small", type=int, default=500_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--meters", type=int, default=200)
    args = parser.parse_args()

    database_url = fresh_database(args.db, args.pg)
    work = Path(tempfile.mkdtemp(prefix="ed-bench-files-"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url,
        REDIS_URL=args.redis,
        VAR_DIR=str(work / "var"),
        LOG_LEVEL="WARNING",
    )
    subprocess.run([sys.executable, "manage.py", "migrate_all", "-v", "0"], cwd=BASE, env=env, check=True)

    results = {}
    for label, prefix, count in (("small", "1", args.small), ("large", "2", args.large)):
        path = work / f"{label}.slg_v2"
        t = time.perf_counter()
        write_file(path, prefix, args.meters, count)
        print(
            f"{label}: wrote {count:,} readings ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s"
        )
        summary, wall, rss_kb = run_import(path, env)
        if summary["status"] != "imported" or summary["inserted"] != count:
            raise SystemExit(f"{label}: unexpected outcome {summary}")
        results[label] = (count, wall, rss_kb)

    # The processing time the ledger recorded (download excluded: these are local files).
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        process_ms: dict[str, int] = dict(
            conn.execute("SELECT name, process_ms FROM ingestion_ingestedfile").fetchall()
        )
        print()
        for label, (count, wall, rss_kb) in results.items():
            seconds = process_ms[f"{label}.slg_v2"] / 1000
            print(
                f"pipeline {label:5s}: {count:>9,} readings, processing {seconds:6.1f} s = {count / seconds:>8,.0f}/s; "
                f"command wall {wall:6.1f} s = {count / wall:>8,.0f}/s; peak RSS {rss_kb / 1024:6.0f} MB"
            )

        # Raw COPY of the large file's rows into the same (emptied) table, same indexes.
        sensors: dict[str, int] = dict(
            conn.execute(
                "SELECT external_id, id FROM sensors_sensor WHERE external_id LIKE 'PT2%'"
            ).fetchall()
        )
        conn.execute("DELETE FROM sensors_reading")
        conn.execute("VACUUM ANALYZE sensors_reading")
        buffer = io.StringIO()
        with (work / "large.slg_v2").open("rb") as stream:
            for record in slg.SlgReader(stream, tz=TZ):
                estimated = "t" if record.estimated else "f"
                buffer.write(
                    f"{sensors[record.cpe]}\tenergy\t{record.end.isoformat()}\t{record.centi_kwh / 100!r}\t{estimated}\n"
                )
        data = buffer.getvalue()
        del buffer
        t = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(
                "COPY sensors_reading (sensor_id, metric, timestamp, value, estimated) FROM STDIN"
            ) as copy,
        ):
            copy.write(data)
        copy_s = time.perf_counter() - t

    count, _, _ = results["large"]
    pipeline_rate = count / (process_ms["large.slg_v2"] / 1000)
    copy_rate = count / copy_s
    ratio = pipeline_rate / copy_rate
    small_rss, large_rss = results["small"][2], results["large"][2]
    print(f"raw COPY      : {count:>9,} readings in {copy_s:6.1f} s = {copy_rate:>8,.0f}/s")
    print(
        f"\npipeline / raw COPY: {ratio:.2f} (target >= 0.40: {'PASS' if ratio >= 0.40 else 'BELOW TARGET'})"
        f"\npeak RSS large / small: {large_rss / small_rss:.2f} "
        f"(flat memory, target <= 1.25: {'PASS' if large_rss / small_rss <= 1.25 else 'BELOW TARGET'})"
    )


if __name__ == "__main__":
    main()
