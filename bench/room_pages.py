"""Latency of the room page's series and of the sensors page at 2,000 sensors.

On a fresh PostgreSQL database (`--db`), with the product as `manage.py run --no-worker
--no-beat` serves it (gunicorn, production settings):

1. 200 rooms with 10 sensors each (2,000; two of each kind the room page charts), 100 of them
   stale and 20 faulty, registered through `sensors.services`;
2. one room's five sensors (power, energy, CO2, temperature, humidity) with a year of
   15-minute readings up to now (175,200 readings, `services.readings_import`), and its
   rollups and room metrics built by `services.rollups_backfill`;
3. over HTTP (a new connection per request, a signed-in session for the pages, a token for
   the API), the median and p90 of: GET /api/v1/rooms/{name}/series for the page's ranges at
   the resolution `auto` chooses (a year: 1d; a month: 1h; a week: 15m; a day: 5m; six hours:
   raw) and the month's carpet (energy, 1h); the room page; the sensors page's first page,
   its last, and a filtered one.

Target: each under 250 ms at the median (what the page waits for before it draws). Loopback
only; every loop is bounded (`--repeat` requests per figure).

Usage: python bench/room_pages.py [--repeat 15] [--db ed_bench_room_pages]
"""

from __future__ import annotations

import argparse
import http.client
import http.cookiejar
import re
import statistics
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))
from harness import fresh_database, running_product  # noqa: E402

ROOMS = 200
PER_ROOM = 10
KINDS = ["power", "energy_meter", "co2", "temperature", "humidity"]
METRIC = {
    "power": "power",
    "energy_meter": "energy",
    "co2": "co2",
    "temperature": "temperature",
    "humidity": "humidity",
}
TARGET_MS = 250.0
PASSWORD = "bench-room-pages-1"


def _value(kind: str, moment: datetime) -> float:
    hour = moment.hour + moment.minute / 60
    working = 1.0 if 8 <= hour < 18 and moment.weekday() < 5 else 0.0
    return {
        "power": 400 + 1000 * working,
        "energy_meter": (400 + 1000 * working) / 4000,
        "co2": 420 + 450 * working,
        "temperature": 19 + 3 * working,
        "humidity": 45 + 5 * working,
    }[kind]


def load(end: datetime) -> dict[str, float]:
    from django.db import connections

    from sensors import services
    from sensors.models import Sensor

    started = time.perf_counter()
    for r in range(ROOMS):
        room = f"room-{r:03d}"
        services.room_create(name=room)
        for n in range(PER_ROOM):
            kind = KINDS[n % len(KINDS)]
            services.sensor_register(sensor_id=f"{room}-{kind}-{n // len(KINDS)}", kind=kind, room_name=room)
    ids = list(Sensor.objects.order_by("sensor_id").values_list("sensor_id", flat=True))
    Sensor.objects.filter(sensor_id__in=ids[5:105]).update(status="stale")
    Sensor.objects.filter(sensor_id__in=ids[105:125]).update(status="fault")
    registry_s = time.perf_counter() - started

    started = time.perf_counter()
    first = end - timedelta(days=365)
    steps = int((end - first) / timedelta(minutes=15))
    rows = []
    count = 0
    for kind in KINDS:
        sensor_id = f"room-000-{kind}-0"
        for i in range(steps):
            moment = first + timedelta(minutes=15 * i)
            rows.append((sensor_id, METRIC[kind], moment, _value(kind, moment), False))
            if len(rows) == 20_000:
                count += services.readings_import(rows=rows)["accepted"]
                rows = []
    if rows:
        count += services.readings_import(rows=rows)["accepted"]
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    services.rollups_backfill(since=first - timedelta(days=1), until=end + timedelta(minutes=1))
    backfill_s = time.perf_counter() - started
    with connections["sensors"].cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"readings": count, "registry_s": registry_s, "import_s": import_s, "backfill_s": backfill_s}


def _session(port: int, username: str) -> str:
    """Sign in through the sign-in form; the session cookie's header value."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    url = f"http://127.0.0.1:{port}/accounts/login/"
    page = opener.open(url, timeout=30).read().decode()  # loopback only
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "no CSRF token on the sign-in page"
    body = urllib.parse.urlencode(
        {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
    ).encode()
    request = urllib.request.Request(url, data=body, headers={"Referer": url})
    opener.open(request, timeout=30).read()
    cookies = {c.name: c.value for c in jar}
    assert "sessionid" in cookies, "sign-in failed"
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def _timed(port: int, path: str, headers: dict[str, str], repeat: int) -> tuple[float, float, int]:
    """Median and p90 in ms of `repeat` GETs (after one warm-up), and the answer's size."""
    times = []
    size = 0
    for attempt in range(repeat + 1):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        conn.close()
        assert response.status == 200, (path, response.status, data[:300])
        size = len(data)
        if attempt:
            times.append(elapsed)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.9))], size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--db", default="ed_bench_room_pages")
    args = parser.parse_args()
    repeat = max(1, min(args.repeat, 200))
    database_url = fresh_database(args.db)
    # Plain HTTP on loopback: the session and CSRF cookies may not be Secure-only here.
    insecure = {"SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false"}
    with running_product("--no-worker", "--no-beat", database_url=database_url, **insecure) as product:
        product.setup_django()
        from django.contrib.auth.models import Group, User
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        # Production settings render pages from collected, hashed static files (whitenoise's
        # manifest): collected into the product's own folder before any page is asked for.
        call_command("collectstatic", "--noinput", verbosity=0)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        loaded = load(end)
        print(
            f"loaded: {ROOMS * PER_ROOM:,} sensors in {ROOMS} rooms ({loaded['registry_s']:.1f} s), "
            f"{loaded['readings']:,} readings ({loaded['import_s']:.1f} s), rollups and room metrics "
            f"({loaded['backfill_s']:.1f} s)",
            flush=True,
        )
        user = User.objects.create_user("bench-viewer", password=PASSWORD)
        user.groups.add(Group.objects.get(name="viewers"))
        token = Token.objects.create(user=user).key
        api = {"Authorization": f"Token {token}", "Accept": "application/json"}
        page = {"Cookie": _session(product.port, "bench-viewer"), "Accept": "text/html"}

        def span(days: float) -> str:
            return urllib.parse.urlencode(
                {"start": (end - timedelta(days=days)).isoformat(), "end": end.isoformat()}
            )

        series = "/api/v1/rooms/room-000/series"
        checks = [
            ("series, a year (auto: 1d)", f"{series}?{span(365)}", api),
            ("series, a month (auto: 1h)", f"{series}?{span(31)}", api),
            ("series, a week (auto: 15m)", f"{series}?{span(7)}", api),
            ("series, a day (auto: 5m)", f"{series}?{span(1)}", api),
            ("series, six hours (auto: raw)", f"{series}?{span(0.25)}", api),
            ("carpet, a month of hourly energy", f"{series}?{span(31)}&resolution=1h&metrics=energy", api),
            ("room page (HTML)", "/rooms/room-000/", page),
            ("sensors page, first of 40", "/sensors/", page),
            ("sensors page, last of 40", "/sensors/?page=40", page),
            ("sensors page, CO2 and stale", "/sensors/?kind=co2&status=stale", page),
        ]
        failed = 0
        print(f"{'request':<36} {'median':>9} {'p90':>9} {'size':>10}   target: median < {TARGET_MS:.0f} ms")
        for label, path, headers in checks:
            median, p90, size = _timed(product.port, path, headers, repeat)
            ok = median < TARGET_MS
            failed += not ok
            print(
                f"{label:<36} {median:7.1f} ms {p90:7.1f} ms {size / 1024:8.1f} KB   {'ok' if ok else 'OVER'}"
            )
        if failed:
            raise SystemExit(f"{failed} figure(s) over the target")


if __name__ == "__main__":
    main()
