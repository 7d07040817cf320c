"""Readings/s through MQTT (`manage.py mqtt_ingest`) on PostgreSQL, beside a plain paho subscriber.

Creates a fresh database (`--db`, default ed_bench_mqtt), 1,000 sensors (`--sensors`), one
broker and one generic-JSON mapping (`readings/+`, the time in the payload), and starts its own
Mosquitto on a free loopback port. Each message is one device's report, as zigbee2mqtt and
Shelly devices send them: `--fields` readings (default 4: power, temperature, humidity, CO2;
1: power alone). One publisher process sends about 9,500 QoS 1 messages/s on this 2-core
machine, so with one reading a message the publisher, not the ingester, sets every rate. Then,
in one run:

1. the limit: a plain paho subscriber (QoS 1, acknowledging each message as paho does) that only
   counts, while one publisher process sends `--messages` (default 200,000) QoS 1 messages as
   fast as it can; its rate is messages from first to last received;
2. the ingester: `manage.py mqtt_ingest` as `manage.py run` starts it; the same publisher sends
   the same number of messages; its rate is readings stored (counted in the database) from the
   first message sent to the last reading committed;
3. latency: the publisher sends `--latency-rate` messages/s (default 5,000) for
   `--latency-seconds` (10); each payload's timestamp is its send time, and a poller reads
   what was committed every 20 ms: publish-to-stored latency is the poll's time minus the send
   time (the poll interval included, so at most 20 ms high).

Prints each figure beside its target: stored >= 50% of the plain subscriber and >= 20,000
readings/s; p99 < 1 s at 5,000 messages/s. The ingester's messages/s (readings/s divided by
`--fields`) is what is compared with the plain subscriber's messages/s. Loopback only; every loop is bounded by --messages or
--latency-seconds.

Usage: python bench/mqtt.py [--messages 200000] [--sensors 1000] [--fields 4] [--latency-rate 5000]
       [--latency-seconds 10] [--batch 2000]
"""

from __future__ import annotations

import argparse
import getpass
import multiprocessing
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))
from harness import PG, free_port, fresh_database, stop  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A Mosquitto on a free loopback port, persistence off (the benchmark restarts nothing)."""
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "max_queued_messages 10000000\nmax_inflight_messages 1000\nlog_type error\n"
    )
    broker = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return broker, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


# The readings of a message beyond power, in the mapping's order: (JSON key, metric, unit, value).
EXTRA_FIELDS = (
    ("temperature", "temperature", "°C", "21.5"),
    ("humidity", "humidity", "%", "45.0"),
    ("co2", "co2", "ppm", "612"),
)


def publish(  # noqa: PLR0917
    port: int, sensors: int, count: int, rate: float, first: float, done: Any, fields: int = 1
) -> None:
    """Send `count` QoS 1 messages (at `rate` a second, 0: as fast as possible), message n for
    sensor n % sensors, stamped `first` + n / sensors seconds, or its send time when `first` is 0."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    extra = "".join(f',"{key}":{value}' for key, _, _, value in EXTRA_FIELDS[: fields - 1])
    started = time.time()
    infos = []
    for n in range(count):
        sensor_id = f"bench-{n % sensors:04d}"
        if rate:
            ahead = started + n / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
        stamp = first + n // sensors if first else time.time()
        at = datetime.fromtimestamp(stamp, UTC).isoformat()
        body = f'{{"sensor_id":"{sensor_id}","timestamp":"{at}","power":{n % 5000}{extra}}}'
        infos.append(client.publish(f"readings/{sensor_id}", body, qos=1))
        if len(infos) >= 5000:
            infos.pop(0).wait_for_publish(60)
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    done.put(time.time() - started)


def plain_subscriber(port: int, count: int, ready: Any, results: Any) -> None:
    """Count `count` messages at QoS 1 (paho acknowledges each as it arrives); put the seconds
    from the first to the last."""
    import paho.mqtt.client as mqtt

    seen = [0, 0.0, 0.0]
    finished = threading.Event()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        if seen[0] == 0:
            seen[1] = time.time()
        seen[0] += 1
        if seen[0] >= count:
            seen[2] = time.time()
            finished.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-plain", protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *args: ready.put(True)
    client.on_connect = lambda c, *args: c.subscribe("readings/+", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    finished.wait(600)
    client.disconnect()
    client.loop_stop()
    results.put((seen[0], seen[2] - seen[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="ed_bench_mqtt")
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--sensors", type=int, default=1_000)
    parser.add_argument("--fields", type=int, default=4, choices=range(1, len(EXTRA_FIELDS) + 2))
    parser.add_argument("--latency-rate", type=float, default=5_000)
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=2_000)
    args = parser.parse_args()
    spawn = multiprocessing.get_context("spawn")

    work = Path(tempfile.mkdtemp(prefix="ed-bench-mqtt-"))
    database_url = fresh_database(args.db, args.pg)
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url,
        REDIS_URL=args.redis,
        VAR_DIR=str(work / "var"),
        LOG_LEVEL="WARNING",
        INGESTION_ALLOWED_NETWORKS="127.0.0.0/8",
    )
    subprocess.run([sys.executable, "manage.py", "migrate_all", "-v", "0"], cwd=BASE, env=env, check=True)
    os.environ.update(env, DJANGO_SETTINGS_MODULE="energy_dashboard.settings")
    import django

    django.setup()
    import psycopg
    from django.db import connections

    from ingestion.mqtt import services as mqtt_services
    from ingestion.mqtt.models import Broker
    from sensors import services as sensors

    mosquitto, port = start_mosquitto(work)
    ingester = None
    try:
        for n in range(args.sensors):
            sensors.sensor_register(sensor_id=f"bench-{n:04d}", kind="power")
        # 1. the limit: a plain subscriber.
        ready, results, done = spawn.Queue(), spawn.Queue(), spawn.Queue()
        plain = spawn.Process(target=plain_subscriber, args=(port, args.messages, ready, results))
        plain.start()
        ready.get(timeout=30)
        first = (datetime.now(UTC) - timedelta(days=2)).timestamp()
        sender = spawn.Process(
            target=publish, args=(port, args.sensors, args.messages, 0, first, done, args.fields)
        )
        sender.start()
        received, seconds = results.get(timeout=900)
        plain.join(30)
        sender.join(60)
        publish_s = done.get(timeout=10)
        plain_rate = received / seconds
        print(
            f"publisher alone: {args.messages:,} QoS 1 messages in {publish_s:.1f} s = {args.messages / publish_s:,.0f}/s"
        )
        print(
            f"plain paho subscriber: {received:,} messages in {seconds:.2f} s = {plain_rate:,.0f}/s (the limit)"
        )

        # 2. the ingester.
        broker = Broker.objects.create(name="bench", host="127.0.0.1", port=port)
        mqtt_services.mapping_create(
            broker=broker,
            name="bench",
            preset="json",
            topic="readings/+",
            fields=[
                {"path": "power", "metric": "power", "unit": "W"},
                *(
                    {"path": key, "metric": metric, "unit": unit}
                    for key, metric, unit, _ in EXTRA_FIELDS[: args.fields - 1]
                ),
            ],
        )
        connections.close_all()
        with (work / "ingester.log").open("wb") as out:
            ingester = subprocess.Popen(
                [sys.executable, "manage.py", "mqtt_ingest", "--batch", str(args.batch)],
                cwd=BASE,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not ((s := mqtt_services.live_state(broker)) and s["connected"]):
            if time.monotonic() > deadline:
                raise SystemExit(
                    "the ingester did not connect:\n" + (work / "ingester.log").read_text()[-2000:]
                )
            time.sleep(0.2)
        time.sleep(1)  # its subscription answered
        pg = psycopg.connect(database_url, autocommit=True)

        def count() -> int:
            row = pg.execute("SELECT count(*) FROM sensors_reading").fetchone()
            assert row is not None
            return int(row[0])

        started = time.time()
        first = (datetime.now(UTC) - timedelta(days=1)).timestamp()
        sender = spawn.Process(
            target=publish, args=(port, args.sensors, args.messages, 0, first, done, args.fields)
        )
        sender.start()
        deadline = time.monotonic() + 900
        wanted = args.messages * args.fields
        while (stored := count()) < wanted and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.time() - started
        sender.join(60)
        done.get(timeout=10)
        ingest_rate = stored / elapsed
        message_rate = ingest_rate / args.fields
        print(
            f"ingester: {stored:,} readings ({args.fields} a message) stored in {elapsed:.2f} s = "
            f"{ingest_rate:,.0f} readings/s, {message_rate:,.0f} messages/s"
        )

        # 3. latency at a steady rate, each payload stamped with its send time.
        pg.execute("DELETE FROM sensors_reading")
        latency_count = int(args.latency_rate * args.latency_seconds)
        watermark = datetime.now(UTC)
        sender = spawn.Process(
            target=publish, args=(port, args.sensors, latency_count, args.latency_rate, 0, done, args.fields)
        )
        sender.start()
        latencies: list[float] = []
        seen: set[tuple[int, datetime]] = set()
        deadline = time.monotonic() + args.latency_seconds + 60
        while len(latencies) < latency_count and time.monotonic() < deadline:
            now = time.time()
            rows = pg.execute(
                # One row a message: its power reading (the message's last to be committed is
                # in the same batch, one transaction).
                "SELECT sensor_id, timestamp FROM sensors_reading WHERE timestamp >= %s AND metric = 'power'",
                [watermark],
            ).fetchall()
            for key in rows:
                if key not in seen:
                    seen.add(key)
                    latencies.append(now - key[1].timestamp())
            if rows:
                watermark = max(r[1] for r in rows) - timedelta(seconds=2)
                seen = {k for k in seen if k[1] >= watermark}
            time.sleep(0.02)
        sender.join(60)
        sent_s = done.get(timeout=10)
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(
            f"latency at {args.latency_rate:,.0f} messages/s: {len(latencies):,} of {latency_count:,} stored, "
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (the publisher reached {latency_count / sent_s:,.0f}/s; "
            "below the rate asked, its own queue is in the latency)"
        )
        print()
        ratio = message_rate / plain_rate
        print(
            f"messages/s stored vs plain subscriber: {message_rate:,.0f} / {plain_rate:,.0f} = {ratio:.2f} "
            "(target >= 0.50)"
        )
        print(
            f"stored/s: {ingest_rate:,.0f} (target >= 20,000) -> {'ok' if ingest_rate >= 20_000 else 'MISSED'}"
        )
        print(
            f"p99 at {args.latency_rate:,.0f}/s: {p99:.0f} ms (target < 1,000 ms) -> {'ok' if p99 < 1000 else 'MISSED'}"
        )
        pg.close()
    finally:
        if ingester is not None:
            stop(ingester)
        stop(mosquitto)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
