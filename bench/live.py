"""Latency of the live feed: readings POSTed to the API until WebSocket clients receive them.

Starts `manage.py run --no-beat` on a fresh PostgreSQL database (`--db`, default
ed_bench_live), registers `--sensors` sensors, connects `--clients` WebSocket clients to
daphne (each subscribed to everything), then posts `--rate` readings/s in batches of
`--batch` for `--seconds`. Each batch carries its sequence number in its values; clients note
when each batch arrives. Prints p50/p99 from POST to receipt, messages delivered/s, and
batches lost per client (clients that keep up must lose none). Targets: p99 < 100 ms,
nothing lost. Loopback only; bounded by --seconds.

Usage: python bench/live.py [--clients 100] [--rate 1000] [--batch 100] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import re
import secrets
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))
from harness import PG, fresh_database, running_product  # noqa: E402

FIRST_VALUE = re.compile(r'"value":\s*([0-9.]+)')


def produce(port: int, token: str, bodies: list[bytes], interval: float, results: Any) -> None:
    """POST the batches on schedule; put ({seq: wall time sent}, [ms each POST took])."""
    sent: dict[int, float] = {}
    answered: list[float] = []
    t0 = time.time()
    for seq, body in enumerate(bodies):
        delay = t0 + seq * interval - time.time()
        if delay > 0:
            time.sleep(delay)
        sent[seq] = time.time()
        post(port, token, body)
        answered.append((time.time() - sent[seq]) * 1000)
    results.put((sent, answered))


def post(port: int, token: str, body: bytes) -> None:
    """One batch to POST /api/v1/readings on a new connection (gunicorn's sync workers close it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/api/v1/readings",
        body=body,
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
    )
    conn.getresponse().read()
    conn.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="ed_bench_live")
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1000, help="readings per second")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--ws-workers", type=int, default=1, help="daphne processes (WS_CONCURRENCY)")
    args = parser.parse_args()

    database_url = fresh_database(args.db, args.pg)
    with running_product(
        "--no-beat", database_url=database_url, WS_CONCURRENCY=str(args.ws_workers)
    ) as product:
        port, ws_port = product.port, product.ws_port
        product.setup_django()
        import websockets
        from django.contrib.auth.models import User
        from rest_framework.authtoken.models import Token

        from sensors import services

        for i in range(args.sensors):
            services.sensor_register(sensor_id=f"live-{i:04d}", kind="power")
        user = User.objects.create_superuser("bench", password=secrets.token_urlsafe(12))
        token = Token.objects.create(user=user).key

        batches = int(args.seconds * args.rate / args.batch)
        interval = args.batch / args.rate
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        bodies = []
        for seq in range(batches):
            bodies.append(
                json.dumps(
                    {
                        "readings": [
                            {
                                "sensor_id": f"live-{(seq * args.batch + k) % args.sensors:04d}",
                                "metric": "power",
                                "timestamp": (
                                    start + timedelta(milliseconds=seq * args.batch + k)
                                ).isoformat(),
                                "value": float(seq),
                            }
                            for k in range(args.batch)
                        ]
                    }
                ).encode()
            )

        def warm_up() -> None:
            # Steady state, not start-up: each gunicorn worker's first requests import and
            # connect (they took 140 ms and made the p99). Readings an hour older than the run's.
            for n in range(40):
                body = json.dumps(
                    {
                        "readings": [
                            {
                                "sensor_id": f"live-{n % args.sensors:04d}",
                                "metric": "power",
                                "timestamp": (start - timedelta(hours=1, seconds=n)).isoformat(),
                                "value": 1.0,
                            }
                        ]
                    }
                ).encode()
                post(port, token, body)

        warm_up()
        sent_at: dict[int, float] = {}
        answered_ms: list[float] = []  # how long each POST itself took (ingest and commit)

        received: list[dict[int, float]] = [{} for _ in range(args.clients)]
        messages = [0]

        async def client(index: int, ready: asyncio.Event, connected: list[int], stop: asyncio.Event) -> None:
            async with websockets.connect(
                f"ws://127.0.0.1:{ws_port}/api/v1/ws",
                additional_headers={"Authorization": f"Token {token}"},
                max_size=None,
                open_timeout=60,
            ) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "subscribe", "all": True}))
                await ws.recv()
                connected[0] += 1
                if connected[0] == args.clients:
                    ready.set()
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
                    except TimeoutError:
                        continue
                    now = time.time()  # the producer's clock: it runs in another process
                    match = FIRST_VALUE.search(raw[:400] if isinstance(raw, str) else raw[:400].decode())
                    if match and '"reading"' in raw[:40]:
                        received[index].setdefault(int(float(match.group(1))), now)
                        messages[0] += 1

        async def run() -> float:
            ready, stop = asyncio.Event(), asyncio.Event()
            connected = [0]
            tasks = [asyncio.create_task(client(i, ready, connected, stop)) for i in range(args.clients)]
            await asyncio.wait_for(ready.wait(), timeout=120)
            t = time.perf_counter()
            # The producer in its own process: in this one it would wait for the GIL while
            # the clients decode, and count that wait as latency.
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            producer = context.Process(target=produce, args=(port, token, bodies, interval, results))
            producer.start()
            sent, answered = await asyncio.to_thread(results.get)
            producer.join()
            sent_at.update(sent)
            answered_ms.extend(answered)
            await asyncio.sleep(5)  # stragglers
            elapsed = time.perf_counter() - t
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            return elapsed

        elapsed = asyncio.run(run())
        latencies = [
            (at - sent_at[seq]) * 1000 for per in received for seq, at in per.items() if seq in sent_at
        ]
        lost = [batches - len(per) for per in received]
        print(
            f"{args.clients} clients, {args.rate} readings/s in batches of {args.batch}, {batches} batches "
            f"over {args.seconds:.0f} s, PostgreSQL, embedded Redis, {args.ws_workers} daphne process(es)\n"
        )
        if latencies:
            print(
                f"POST -> receipt: p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms,"
                f" max {max(latencies):.1f} ms"
            )
        if answered_ms:
            print(
                f"of which the POST itself: p50 {statistics.median(answered_ms):.1f} ms, "
                f"p99 {percentile(answered_ms, 0.99):.1f} ms"
            )
        print(f"messages delivered: {messages[0]:,} ({messages[0] / elapsed:,.0f}/s)")
        print(f"batches lost per client: max {max(lost)}, total {sum(lost)} of {batches * args.clients}")
        p99 = percentile(latencies, 0.99) if latencies else float("inf")
        print(
            f"\np99 < 100 ms: {'PASS' if p99 < 100 else 'BELOW TARGET'}; "
            f"nothing lost: {'PASS' if sum(lost) == 0 else 'BELOW TARGET'}"
        )


if __name__ == "__main__":
    threading.excepthook = lambda hook: print(f"producer failed: {hook.exc_value}", file=sys.stderr)
    main()
