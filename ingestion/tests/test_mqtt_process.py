"""The MQTT ingester as a process (`manage.py mqtt_ingest`, as `manage.py run` starts it) against
a real Mosquitto: killed with SIGKILL while 10,000 messages are published and started again, it
stores each exactly once; a broker restart mid-stream loses and doubles nothing; `run` starts it
beside the others when a broker is enabled, /health shows it, and SIGTERM stops it with them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from energy_dashboard.supervisor import descendants
from energy_dashboard.testing import free_port, subprocess_env
from ingestion.mqtt import services as mqtt_services
from ingestion.mqtt.models import Broker
from ingestion.tests import helpers
from ingestion.tests.test_mqtt_broker import Mosquitto, client, mosquitto_fixture  # noqa: F401 (a fixture)
from sensors import services as sensors

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases="__all__")]

BASE = Path(__file__).resolve().parents[2]
SENSORS = 100


def stored_values(metric: str = "power") -> list[float]:
    """Every stored value of the test's sensors (each message's value is its number)."""
    rows = sensors.data_query(
        sensor_ids=[f"m{n:03d}" for n in range(SENSORS)],
        rooms=[],
        metrics=[metric],
        start=datetime(2000, 1, 1, tzinfo=UTC),
        end=datetime(2100, 1, 1, tzinfo=UTC),
        aggregation="raw",
        interval="",
        limit=10_000_000,
    )
    return [row["value"] for row in rows]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """The shared poll, with the longer wait of tests that start processes."""
    return helpers.wait_until(check, what, timeout=timeout, interval=0.1)


def register_sensors() -> None:
    for n in range(SENSORS):
        sensors.sensor_register(sensor_id=f"m{n:03d}", kind="power")


class Publisher(threading.Thread):
    """A real paho publisher sending `count` QoS 1 messages at about `rate` a second; each
    message's value is its number. `payload(n)` makes the message."""

    def __init__(
        self, server: Mosquitto, count: int, rate: float, payload: Callable[[int], tuple[str, str]]
    ) -> None:
        super().__init__(daemon=True)
        self.server, self.count, self.rate, self.payload = server, count, rate, payload
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            publisher = client(self.server, client_id="e2e-publisher")
            sent: list[tuple[Any, tuple[str, str]]] = []
            started = time.monotonic()
            for n in range(self.count):
                message = self.payload(n)
                sent.append((self._publish(publisher, message), message))
                self.sent = n + 1
                ahead = started + (n + 1) / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            # At least once, as a device does: what the broker did not acknowledge (it was
            # restarted meanwhile) is sent again.
            for first_try, message in sent:
                info = first_try
                for _ in range(20):
                    try:
                        info.wait_for_publish(10)
                    except (RuntimeError, ValueError):
                        info = self._publish(publisher, message)
                        continue
                    if info.is_published():
                        break
                    info = self._publish(publisher, message)
            publisher.disconnect()
            publisher.loop_stop()
        except BaseException as exc:
            self.error = exc

    @staticmethod
    def _publish(publisher: Any, message: tuple[str, str]) -> Any:
        deadline = time.monotonic() + 30
        while not publisher.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        return publisher.publish(*message, qos=1)


def ingester_env() -> dict[str, str]:
    return subprocess_env(SQLITE_BUSY_TIMEOUT="60")


def test_an_ingester_killed_mid_stream_then_restarted_stores_each_message_exactly_once(
    mosquitto: Mosquitto, start_process: Any
) -> None:
    # Plain numbers stamped with their arrival: the hardest case (no time in the payload makes
    # a redelivered message a duplicate by itself).
    broker = Broker.objects.create(name="site", host="127.0.0.1", port=mosquitto.port)
    mqtt_services.mapping_create(
        broker=broker,
        name="meters",
        preset="number",
        topic="meters/+",
        fields=[{"path": "", "metric": "power"}],
    )
    register_sensors()
    doomed = start_process("mqtt-a", "manage.py", "mqtt_ingest", env=ingester_env())
    wait_until(
        lambda: (state := mqtt_services.live_state(broker)) and state["connected"],
        "connected",
    )
    time.sleep(0.5)  # the subscription answered

    total = 10_000
    publisher = Publisher(
        mosquitto, total, rate=2_500, payload=lambda n: (f"meters/m{n % SENSORS:03d}", str(n))
    )
    publisher.start()
    wait_until(lambda: len(stored_values()) >= 1_500, "some readings stored before the kill")
    os.killpg(doomed.popen.pid, signal.SIGKILL)
    doomed.popen.wait(10)
    at_kill = len(stored_values())
    assert publisher.sent < total, "the publisher finished before the kill: not mid-stream"

    heir = start_process("mqtt-b", "manage.py", "mqtt_ingest", env=ingester_env())
    publisher.join(120)
    assert publisher.error is None, publisher.error
    wait_until(lambda: len(stored_values()) >= total, "every message stored", timeout=120)
    time.sleep(2)  # anything redelivered late would show now
    got = stored_values()
    heir.stop()
    assert at_kill < total
    assert len(got) == total, f"{len(got)} readings for {total} messages"
    assert sorted(got) == [float(n) for n in range(total)]


def test_a_broker_restart_mid_stream_loses_and_doubles_nothing(
    mosquitto: Mosquitto, start_process: Any
) -> None:
    broker = Broker.objects.create(name="site", host="127.0.0.1", port=mosquitto.port)
    mqtt_services.mapping_create(broker=broker, name="readings", preset="json", topic="readings/+")
    register_sensors()
    ingester = start_process("mqtt", "manage.py", "mqtt_ingest", env=ingester_env())
    wait_until(
        lambda: (state := mqtt_services.live_state(broker)) and state["connected"],
        "connected",
    )
    time.sleep(0.5)

    first = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    def payload(n: int) -> tuple[str, str]:
        sensor_id = f"m{n % SENSORS:03d}"
        at = first + timedelta(seconds=n // SENSORS)
        return f"readings/{sensor_id}", json.dumps(
            {"sensor_id": sensor_id, "timestamp": at.isoformat(), "power": n}
        )

    total = 4_000
    publisher = Publisher(mosquitto, total, rate=1_000, payload=payload)
    publisher.start()
    wait_until(lambda: len(stored_values()) >= 800, "some readings stored before the restart")
    before = len(stored_values())
    mosquitto.restart()
    assert before < total, "the publisher finished before the restart: not mid-stream"
    publisher.join(120)
    assert publisher.error is None, publisher.error
    wait_until(lambda: len(stored_values()) >= total, "every message stored", timeout=120)
    time.sleep(1)
    got = stored_values()
    state = mqtt_services.live_state(broker)
    ingester.stop()
    assert sorted(got) == [float(n) for n in range(total)]
    assert state is not None and state["connected"]


def _get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_run_starts_the_ingester_when_a_broker_is_enabled_and_stops_it_with_the_rest(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env |= {"VAR_DIR": str(tmp_path / "var"), "HEARTBEAT_INTERVAL": "1", "PYTHONUNBUFFERED": "1"}
    if os.environ.get("ED_TEST_EMBEDDED_REDIS"):
        env.pop("REDIS_URL", None)
    # run's own databases (under VAR_DIR): migrated, with one enabled broker.
    subprocess.run([sys.executable, "manage.py", "migrate_all"], cwd=BASE, env=env, check=True, timeout=300)
    make = (
        "from ingestion.mqtt.models import Broker; from ingestion.mqtt import services; "
        f"b = Broker.objects.create(name='site', host='127.0.0.1', port={mosquitto.port}); "
        "services.mapping_create(broker=b, name='plugs', preset='tasmota', register_unknown=True)"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", make], cwd=BASE, env=env, check=True, timeout=120
    )
    port = free_port()
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run",
            "--port",
            str(port),
            "--ws-port",
            str(free_port()),
            "--web-workers",
            "1",
            "--no-worker",
            "--no-beat",
        ],
        cwd=BASE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        body: Any = {}

        def connected() -> bool:
            nonlocal body
            try:
                _, body = _get_json(f"http://127.0.0.1:{port}/health")
            except OSError:
                return False
            return bool(body.get("mqtt", {}).get("brokers", {}).get("site", {}).get("connected"))

        wait_until(connected, "/health to show the broker connected", timeout=90)
        site = body["mqtt"]["brokers"]["site"]
        assert body["mqtt"]["running"] is True and site["error"] == ""
        tree = descendants(run.pid)
        names = [Path(f"/proc/{p}/cmdline").read_bytes() for p in tree if Path(f"/proc/{p}").exists()]
        assert any(b"mqtt_ingest" in n for n in names), names
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0
        time.sleep(0.5)
        assert not [
            p
            for p in tree
            if Path(f"/proc/{p}").exists() and b"mqtt_ingest" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
    finally:
        if run.poll() is None:
            run.kill()
        log.close()
