"""The overview page in a real browser under load: first render, POST -> repaint, JS size, heap.

Starts `manage.py run --no-beat` on a fresh PostgreSQL database (`--db`, default ed_bench_ui),
registers `--rooms` rooms with `--sensors` sensors among them (power meters mostly, and CO2,
temperature and humidity in each room), signs in in Debian's Chromium (Playwright, headless),
then:

- loads the overview `--loads` times: the first render with data is the page's own clock
  (performance.now(), from navigation start) when its chart holds a point and the power figure
  is shown; the first load is cold, the others warm (cached JS);
- sums the JavaScript the overview loads, gzipped (level 6, as a web server would send it);
- streams `--rate` readings/s to the API in batches of `--batch` for `--minutes` minutes from
  another process; each batch also carries a probe sensor's reading whose value is the batch's
  number. The page notes when each probe reading arrives (lib/live.js, `window.__edTrace`) and
  when its charts repaint (lib/charts.js, `window.__edRepaints`): POST -> repaint is the first
  repaint after the arrival, less the wall time the POST was sent (the page's clock offset
  from this process's is measured and taken off);
- reads the page's JS heap after a forced garbage collection (Chrome DevTools Protocol) after
  1 minute of streaming and at the end.

Prints each figure beside its target: first render < 1 s; POST -> repaint p99 < 250 ms; JS
< 350 KB gzipped; heap at the end within 20% of the heap after 1 minute. Loopback only;
bounded by --minutes (and the set-up's own timeouts).

With --profile, the page is CPU-profiled over the run's last 20 s or so and its busiest
functions printed (where the time goes when it falls behind).

Usage: python bench/ui.py [--minutes 10] [--rooms 200] [--sensors 2000] [--rate 1000]
       [--batch 100] [--loads 5] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))
from harness import PG, fresh_database, post_readings, running_product  # noqa: E402

PROBE = "ui-probe"
KINDS = ("co2", "temperature", "humidity")  # one of each per room; the rest are power meters
VALUES = {"power": 250.0, "co2": 450.0, "temperature": 21.0, "humidity": 45.0}
# Each of these kinds' default metric has the kind's name.
TARGET_FIRST_RENDER_MS = 1000.0
TARGET_P99_MS = 250.0
TARGET_JS_KB = 350.0
TARGET_HEAP_GROWTH = 0.20


def sensor_plan(rooms: int, sensors: int) -> list[tuple[str, str, str]]:
    """(sensor_id, kind, room) for `sensors` sensors spread over `rooms` rooms."""
    plan = []
    for i in range(sensors):
        room = i % rooms
        slot = i // rooms
        kind = KINDS[slot] if slot < len(KINDS) else "power"
        plan.append((f"ui-{i:05d}", kind, f"room-{room:03d}"))
    return plan


@dataclass(frozen=True)
class Stream:
    """What the producer posts: `rate` readings/s in batches of `batch` for `seconds`."""

    port: int
    token: str
    plan: list[tuple[str, str, str]]
    rate: int
    batch: int
    seconds: float
    profile: bool = False


def produce(stream: Stream, out: Any) -> None:
    """POST the stream, each batch with the probe's reading valued with the batch's number;
    two POSTs may be in flight (gunicorn has workers to spare). Put ({seq: wall time sent},
    [ms each POST took], failures)."""
    interval = stream.batch / stream.rate
    sent: dict[int, float] = {}
    took: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def post(body: bytes, at: float) -> None:
        status, answer = post_readings(stream.port, stream.token, body, timeout=30)
        with lock:
            took.append((time.time() - at) * 1000)
            if status not in (200, 201):
                failures[0] += 1
                if failures[0] <= 3:  # what was refused, and why
                    print(f"POST refused: {status} {answer[:300]!r}", flush=True)

    t0 = time.time()
    seq = 0
    cursor = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        while time.time() - t0 < stream.seconds:
            delay = t0 + seq * interval - time.time()
            if delay > 0:
                time.sleep(delay)
            stamp = datetime.now(UTC).isoformat()
            readings = []
            for _ in range(stream.batch - 1):
                sensor_id, kind, _room = stream.plan[cursor % len(stream.plan)]
                cursor += 1
                readings.append(
                    {
                        "sensor_id": sensor_id,
                        "metric": kind,
                        "timestamp": stamp,
                        "value": VALUES[kind] + cursor % 17,
                    }
                )
            readings.append({"sensor_id": PROBE, "metric": "power", "timestamp": stamp, "value": float(seq)})
            body = json.dumps({"readings": readings}).encode()
            at = time.time()
            sent[seq] = at
            pool.submit(post, body, at)
            seq += 1
    out.put((sent, took, failures[0]))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "BELOW TARGET"


def collect_static(folder: Path) -> None:
    """collectstatic into `folder`, as the Dockerfile does (production serves the manifest's
    hashed, pre-compressed files through whitenoise)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL") and k != "REDIS_URL"}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="build",
        REDIS_URL="redis://unused:6379/0",
        STATIC_ROOT=str(folder),
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=BASE,
        env=env,
        check=True,
        timeout=300,
    )


def build_building(port: int, rooms: int, sensors: int) -> tuple[list[tuple[str, str, str]], str, str]:
    """Rooms, sensors (one reading each, so that the first render has data), a user of the
    operators group; (plan, its password, an API token). Django is set up by then."""
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    from energy_dashboard.core import roles
    from sensors import services

    plan = sensor_plan(rooms, sensors - 1)
    for room in sorted({room for _, _, room in plan}):
        services.room_create(name=room)
    for sensor_id, kind, room in plan:
        services.sensor_register(sensor_id=sensor_id, kind=kind, room_name=room)
    services.sensor_register(sensor_id=PROBE, kind="power", room_name=plan[0][2])
    password = secrets.token_urlsafe(12)
    user = User.objects.create_user("bench-ui", password=password)
    user.groups.add(Group.objects.get(name=roles.OPERATORS))
    token = Token.objects.create(user=user).key
    stamp = datetime.now(UTC).isoformat()
    everything = [{"sensor_id": s, "metric": k, "timestamp": stamp, "value": VALUES[k]} for s, k, _ in plan]
    for i in range(0, len(everything), 1000):
        status, answer = post_readings(
            port, token, json.dumps({"readings": everything[i : i + 1000]}).encode()
        )
        if status != 201:
            raise SystemExit(f"the first readings were refused: {answer[:300]!r}")
    return plan, password, token


FIRST_RENDER = """() => {
  const el = document.querySelector('[data-chart="power-hour"]');
  const c = el && el.edChart;
  const figure = document.querySelector("[data-power-now]");
  if (!c || !figure || !figure.textContent.trim()) return false;
  const s = c.getOption().series;
  return s && s[0] && s[0].data && s[0].data.length ? performance.now() : false;
}"""


@dataclass
class Figures:
    renders: list[float] = field(default_factory=list)
    js_raw: int = 0
    js_gzip: int = 0
    js_sent: int = 0
    js_files: int = 0
    traced: list[tuple[float, float]] = field(default_factory=list)
    repaints: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)
    heap_start: int = 0
    heap_1min: int | None = None
    heap_end: int = 0
    sent: dict[int, float] = field(default_factory=dict)
    took: list[float] = field(default_factory=list)
    failures: int = 0
    profile: list[tuple[str, float]] = field(default_factory=list)


def first_renders(page: Any, loads: int, figures: Figures) -> None:
    """Load the overview `loads` times (the first with a cold cache) and note when each had
    data on screen, and the JavaScript the first load fetched."""
    scripts: dict[str, tuple[bytes, int]] = {}

    def keep(response: Any) -> None:
        if response.request.resource_type == "script" and response.ok:
            with contextlib.suppress(Exception):  # a body already gone: the sizes still count
                scripts[response.url] = (response.body(), int(response.request.sizes()["responseBodySize"]))

    for n in range(max(1, loads)):
        if n == 0:
            page.on("response", keep)
        page.goto("/", wait_until="commit")
        rendered = page.wait_for_function(FIRST_RENDER, polling="raf", timeout=30000)
        figures.renders.append(float(rendered.json_value()))
        if n == 0:
            page.wait_for_load_state("networkidle")
            page.remove_listener("response", keep)
    figures.js_files = len(scripts)
    figures.js_raw = sum(len(body) for body, _ in scripts.values())
    figures.js_gzip = sum(len(gzip.compress(body, compresslevel=6)) for body, _ in scripts.values())
    figures.js_sent = sum(sent for _, sent in scripts.values())


def top_functions(profile: dict[str, Any], count: int = 12) -> list[tuple[str, float]]:
    """The page's functions by self time in a CPU profile (DevTools protocol), ms each."""
    by_id = {node["id"]: node for node in profile["nodes"]}
    samples, deltas = profile.get("samples", []), profile.get("timeDeltas", [])
    self_ms: dict[str, float] = {}
    for sample, delta in zip(samples, deltas, strict=False):
        frame = by_id[sample]["callFrame"]
        where = frame["url"].rsplit("/", 1)[-1] or "(native)"
        name = f"{frame['functionName'] or '(anonymous)'} {where}:{frame['lineNumber'] + 1}"
        self_ms[name] = self_ms.get(name, 0.0) + delta / 1000
    return sorted(self_ms.items(), key=lambda item: -item[1])[:count]


def streaming(page: Any, context: Any, stream: Stream, figures: Figures) -> None:
    """Follow the stream on the overview; probe arrivals, repaints and the heap."""
    page.add_init_script(f"window.__edRepaints = []; window.__edTrace = {json.dumps(PROBE)};")
    page.goto("/")
    page.wait_for_selector('[data-live-status][data-state="live"]', timeout=30000)
    cdp = context.new_cdp_session(page)

    def heap() -> int:
        cdp.send("HeapProfiler.collectGarbage")
        return int(cdp.send("Runtime.getHeapUsage")["usedSize"])

    def clock_offset() -> float:
        """The page's wall clock minus this process's, in ms (the midpoint of a round trip)."""
        before = time.time()
        theirs = float(page.evaluate("performance.timeOrigin + performance.now()"))
        after = time.time()
        return theirs - (before + after) / 2 * 1000

    def drain() -> None:
        got = page.evaluate(
            "() => [(window.__edTraced || []).splice(0), (window.__edRepaints || []).splice(0)]"
        )
        figures.traced.extend((float(v), float(at)) for v, at in got[0])
        figures.repaints.extend(float(at) for at in got[1])

    figures.heap_start = heap()
    figures.offsets.append(clock_offset())
    profiling = False
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    producer = mp.Process(target=produce, args=(stream, out))
    started = time.monotonic()
    producer.start()
    while (left := stream.seconds - (time.monotonic() - started)) > 0:
        time.sleep(min(10.0, max(0.1, left)))
        drain()  # keeps the page's notes short, so that they do not weigh on its heap
        if figures.heap_1min is None and time.monotonic() - started >= 60:
            figures.heap_1min = heap()
            print(f"heap after 1 minute: {figures.heap_1min / 1e6:.1f} MB", flush=True)
        # The profile covers the run's last 20 s or so, when the page holds the most points.
        elapsed = time.monotonic() - started
        if (
            stream.profile
            and not profiling
            and not figures.profile
            and elapsed >= max(60, stream.seconds - 25)
        ):
            cdp.send("Profiler.enable")
            cdp.send("Profiler.start")
            profiling = True
    if profiling:
        figures.profile = top_functions(cdp.send("Profiler.stop")["profile"])
    figures.sent, figures.took, figures.failures = out.get(timeout=120)
    producer.join(30)
    time.sleep(2)  # the last batches' repaints
    drain()
    figures.heap_end = heap()
    figures.offsets.append(clock_offset())


def report(args: argparse.Namespace, minutes: float, figures: Figures) -> None:
    offset = statistics.mean(figures.offsets)
    latencies = []
    in_page = []  # arrival over the WebSocket -> repaint: the page's own share
    for value, arrived in figures.traced:
        seq = int(value)
        i = bisect_left(figures.repaints, arrived)
        if seq in figures.sent and i < len(figures.repaints):
            latencies.append(figures.repaints[i] - offset - figures.sent[seq] * 1000)
            in_page.append(figures.repaints[i] - arrived)
    posted = len(figures.sent) * args.batch
    print(
        f"\n{args.rooms} rooms, {args.sensors} sensors; {posted:,} readings posted over {minutes:g} min "
        f"({posted / (minutes * 60):,.0f}/s of {args.rate}/s asked, batches of {args.batch}, "
        f"{figures.failures} refused); Chromium headless 1440x900; PostgreSQL, embedded Redis\n"
    )
    first, warm = figures.renders[0], figures.renders[1:]
    print(
        f"overview first render with data: {first:.0f} ms cold"
        + (f", warm median {statistics.median(warm):.0f} ms (max {max(warm):.0f})" if warm else "")
        + f"   target < {TARGET_FIRST_RENDER_MS:.0f} ms: {verdict(max(figures.renders) < TARGET_FIRST_RENDER_MS)}"
    )
    if latencies:
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        print(
            f"POST -> chart repaint: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(latencies):.0f} ms "
            f"({len(latencies)} batches)   target p99 < {TARGET_P99_MS:.0f} ms: {verdict(p99 < TARGET_P99_MS)}"
        )
    else:
        print("POST -> chart repaint: no probe batch reached a repaint   target p99 < 250 ms: BELOW TARGET")
    if figures.took:
        print(
            f"  of which the POST itself: p50 {statistics.median(figures.took):.0f} ms, "
            f"p99 {percentile(figures.took, 0.99):.0f} ms"
        )
    if in_page:
        print(
            f"  and WebSocket arrival -> repaint (lib/charts.js coalesces repaints): p50 "
            f"{statistics.median(in_page):.0f} ms, p99 {percentile(in_page, 0.99):.0f} ms"
        )
    print(
        f"JS for the overview: {figures.js_gzip / 1024:.0f} KB gzipped ({figures.js_raw / 1024:.0f} KB raw, "
        f"{figures.js_sent / 1024:.0f} KB on the wire, {figures.js_files} files)"
        f"   target < {TARGET_JS_KB:.0f} KB: {verdict(figures.js_gzip / 1024 < TARGET_JS_KB)}"
    )
    if figures.profile:
        print("\nthe page's busiest functions (self time at the run's end; minified names):")
        for name, ms in figures.profile:
            print(f"  {ms:8.0f} ms  {name}")
    if figures.heap_1min:
        growth = figures.heap_end / figures.heap_1min - 1
        print(
            f"JS heap: {figures.heap_start / 1e6:.1f} MB before streaming, {figures.heap_1min / 1e6:.1f} MB "
            f"after 1 min, {figures.heap_end / 1e6:.1f} MB after {minutes:g} min ({growth:+.0%})   target "
            f"within {TARGET_HEAP_GROWTH:.0%}: {verdict(abs(growth) <= TARGET_HEAP_GROWTH)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="ed_bench_ui")
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--sensors", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=1000, help="readings per second")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0, help="streaming time (at least 1)")
    parser.add_argument("--loads", type=int, default=5, help="overview loads for the first render")
    parser.add_argument(
        "--profile", action="store_true", help="CPU-profile the page over the run's last 20 s or so"
    )
    args = parser.parse_args()
    minutes = max(1.0, args.minutes)

    from playwright.sync_api import sync_playwright

    from system_tests.conftest import launch_chromium

    figures = Figures()
    database_url = fresh_database(args.db, args.pg)
    with tempfile.TemporaryDirectory(prefix="ed-bench-static-") as static:
        collect_static(Path(static))
        with running_product(
            "--no-beat",
            database_url=database_url,
            STATIC_ROOT=static,
            # Plain HTTP on loopback: the browser must keep the session cookie.
            SESSION_COOKIE_SECURE="false",
            CSRF_COOKIE_SECURE="false",
        ) as product:
            product.setup_django()
            t = time.perf_counter()
            plan, password, token = build_building(product.port, args.rooms, args.sensors)
            print(
                f"{args.rooms} rooms, {args.sensors} sensors made in {time.perf_counter() - t:.0f} s",
                flush=True,
            )
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                url = f"http://127.0.0.1:{product.port}"
                context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=url)
                page = context.new_page()
                page.goto("/accounts/login/")
                page.get_by_label("User name").fill("bench-ui")
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(lambda u: "/accounts/login/" not in u)
                # The same session in a fresh context: its cache is cold for the first load.
                state = context.storage_state()
                context.close()
                context = browser.new_context(
                    viewport={"width": 1440, "height": 900}, base_url=url, storage_state=state
                )
                page = context.new_page()
                first_renders(page, args.loads, figures)
                stream = Stream(product.port, token, plan, args.rate, args.batch, minutes * 60, args.profile)
                streaming(page, context, stream, figures)
                browser.close()
            if figures.failures:  # the server's first traceback says why
                log = product.log.read_text(errors="replace")
                at = log.find("Traceback")
                print(
                    f"server log, first traceback:\n{log[at : at + 3000]}"
                    if at >= 0
                    else "no traceback logged"
                )
    report(args, minutes, figures)


if __name__ == "__main__":
    main()
