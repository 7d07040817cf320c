"""Latency of the live feed: readings POSTed to the API until WebSocket clients receive them.

Starts `manage.py run --no-beat` on a fresh PostgreSQL database (`--db`, default
ed_bench_live), registers `--sensors` sensors, connects `--clients` WebSocket clients to
daphne (each subscribed to everything), then posts `--rate` readings/s in batches of
`--batch` for `--seconds` from a separate process. Each batch carries its sequence number in
its values; clients (in `--client-processes` processes, 2 by default) note when each batch
arrives. Prints p50/p99 from POST to receipt, messages delivered/s, and
batches lost per client (clients that keep up must lose none). Targets: p99 < 100 ms,
nothing lost. Loopback only; bounded by --seconds.

Usage: python bench/live.py [--clients 100] [--rate 1000] [--batch 100] [--seconds 20]
       [--ws-workers 1] [--client-processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
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
from harness import PG, fresh_database, post_readings, running_product  # noqa: E402


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
        post_readings(port, token, body, timeout=30)
        answered.append((time.time() - sent[seq]) * 1000)
    results.put((sent, answered))


FIRST_VALUE_BYTES = re.compile(rb'"value":\s*([0-9.]+)')


def listen(ws_port: int, token: str, count: int, queues: tuple[Any, Any, Any]) -> None:
    """`count` WebSocket clients following everything, in this process; put ("ready", count)
    once all are subscribed, and at the end ([{seq: wall time received}], messages)."""
    asyncio.run(_listen(ws_port, token, count, queues))


async def _listen(ws_port: int, token: str, count: int, queues: tuple[Any, Any, Any]) -> None:
    import websockets

    ready, stop, results = queues

    received: list[dict[int, float]] = [{} for _ in range(count)]
    messages = [0]
    connected = [0]
    sockets: list[Any] = []

    async def client(index: int) -> None:
        async with websockets.connect(
            f"ws://127.0.0.1:{ws_port}/api/v1/ws",
            additional_headers={"Authorization": f"Token {token}"},
            max_size=None,
            open_timeout=60,
        ) as ws:
            sockets.append(ws)
            await ws.recv()
            await ws.send(json.dumps({"type": "subscribe", "all": True}))
            await ws.recv()
            connected[0] += 1
            if connected[0] == count:
                ready.put(("ready", count))
            seen = received[index]
            try:
                while True:
                    # Bytes, not str: a client needs only the batch number, found in the first
                    # 400 bytes (the clients share this process's core, and decoding every
                    # frame would count the harness's work as the feed's latency).
                    raw = await ws.recv(decode=False)
                    now = time.time()  # the producer's clock: it runs in another process
                    if raw.startswith(b'{"type":"reading"'):
                        match = FIRST_VALUE_BYTES.search(raw, 0, 400)
                        if match:
                            seen.setdefault(int(float(match.group(1))), now)
                            messages[0] += 1
            except websockets.ConnectionClosed:
                return

    tasks = [asyncio.ensure_future(client(i)) for i in range(count)]
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put((received, messages[0]))


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
    parser.add_argument("--client-processes", type=int, default=2, help="processes the clients run in")
    args = parser.parse_args()

    database_url = fresh_database(args.db, args.pg)
    with running_product(
        "--no-beat", database_url=database_url, WS_CONCURRENCY=str(args.ws_workers)
    ) as product:
        port, ws_port = product.port, product.ws_port
        product.setup_django()
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
                post_readings(port, token, body, timeout=30)

        warm_up()
        sent_at: dict[int, float] = {}
        answered_ms: list[float] = []  # how long each POST itself took (ingest and commit)

        # The clients in --client-processes processes (browsers are not one process): in one,
        # 500 clients' frames queue behind each other on a single core of the harness.
        context = multiprocessing.get_context("spawn")
        ready, results, stop = context.Queue(), context.Queue(), context.Event()
        shares = [args.clients // args.client_processes] * args.client_processes
        shares[0] += args.clients - sum(shares)
        listeners = [
            context.Process(target=listen, args=(ws_port, token, share, (ready, stop, results)))
            for share in shares
            if share
        ]
        for listener in listeners:
            listener.start()
        for _ in listeners:
            ready.get(timeout=180)
        t = time.perf_counter()
        producer_results = context.Queue()
        producer = context.Process(target=produce, args=(port, token, bodies, interval, producer_results))
        producer.start()
        sent, answered = producer_results.get(timeout=args.seconds * 10 + 60)
        producer.join()
        sent_at.update(sent)
        answered_ms.extend(answered)
        time.sleep(5)  # stragglers
        elapsed = time.perf_counter() - t
        stop.set()
        received: list[dict[int, float]] = []
        messages = [0]
        for _ in listeners:
            part, count = results.get(timeout=120)
            received.extend(part)
            messages[0] += count
        for listener in listeners:
            listener.join(30)
        latencies = [
            (at - sent_at[seq]) * 1000 for per in received for seq, at in per.items() if seq in sent_at
        ]
        lost = [batches - len(per) for per in received]
        print(
            f"{args.clients} clients, {args.rate} readings/s in batches of {args.batch}, {batches} batches "
            f"over {args.seconds:.0f} s, PostgreSQL, embedded Redis, {args.ws_workers} daphne process(es), "
            f"clients in {len(listeners)} process(es)\n"
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
