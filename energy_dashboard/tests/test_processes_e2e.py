"""Real processes: a Celery worker and beat against Redis, and `manage.py run` as a whole."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from energy_dashboard.core import heartbeats
from energy_dashboard.supervisor import descendants
from energy_dashboard.testing import WORKER_ARGS, free_port, subprocess_env

BASE = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_beat_schedules_a_periodic_task_that_a_real_worker_runs(
    start_process: Any, tmp_path: Path, redis_clean: Any
) -> None:
    # Operators retime jobs in the admin; do the same: room metrics every second.
    task = PeriodicTask.objects.get(name="sensors: room metrics")
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    task.save()

    env = subprocess_env(HEARTBEAT_INTERVAL="1")
    worker = start_process(
        "worker",
        *WORKER_ARGS,
        "--hostname",
        "e2e@%h",
        env=env,
    )
    start_process(
        "beat",
        "-m",
        "celery",
        "-A",
        "energy_dashboard",
        "beat",
        "--loglevel",
        "INFO",
        "--schedule",
        str(tmp_path / "beat-schedule"),
        env=env,
    )
    # The line of that task's success: other tasks (the first FTP scan at worker start) succeed too.
    log = worker.wait_for(
        lambda out: re.search(r"sensors\.tasks\.room_metrics_compute\[[^\]]+\] succeeded", out) is not None,
        timeout=90,
        what="a periodic room-metrics run",
    )
    assert "room metrics" in log
    # Both processes report in for /health.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (heartbeats.live_workers() and heartbeats.beat_last_tick()):
        time.sleep(0.2)
    assert [w["name"] for w in heartbeats.live_workers()] == [f"e2e@{socket.gethostname()}"]
    assert heartbeats.beat_last_tick() is not None


def _run_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env.update(
        VAR_DIR=str(tmp_path / "var"),
        HEARTBEAT_INTERVAL="1",
        DEMO_PASSWORD="demo-secret-1",
        PYTHONUNBUFFERED="1",
    )
    # The embedded-Redis path of `run` when the suite itself runs on an embedded Redis.
    if os.environ.get("ED_TEST_EMBEDDED_REDIS"):
        env.pop("REDIS_URL", None)
    return env


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (the state follows the parenthesised name)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_run_starts_everything_and_sigterm_leaves_no_orphans(tmp_path: Path) -> None:
    port, ws_port = free_port(), free_port()
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run",
            "--demo",
            "--port",
            str(port),
            "--ws-port",
            str(ws_port),
            "--web-workers",
            "1",
            "--worker-concurrency",
            "1",
        ],
        cwd=BASE,
        # A VTN that is not there: the VEN starts and keeps retrying; two daphne processes.
        env=_run_env(tmp_path)
        | {"OPENADR_VTN_URL": f"http://127.0.0.1:{free_port()}/OpenADR2/Simple/2.0b", "WS_CONCURRENCY": "2"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        status, body = 0, dict[str, Any]()
        while time.monotonic() < deadline and run.poll() is None:
            try:
                status, body = _get_json(f"http://127.0.0.1:{port}/health")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        output = (tmp_path / "run.log").read_text()
        assert status == 200, f"{body}\n{output[-3000:]}"
        assert f"running at http://127.0.0.1:{port}/" in output
        assert "User 'operator' (operators group): password from DEMO_PASSWORD" in output

        # The demo operator can log in; the announced WebSocket port is the one daphne serves.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/auth/token/",
            data=json.dumps({"username": "operator", "password": "demo-secret-1"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            token = json.loads(response.read())["token"]
        status, overview = _get_json(
            f"http://127.0.0.1:{port}/api/v1/overview", {"Authorization": f"Token {token}"}
        )
        assert status == 200 and overview["modules"]["sensors"]["rooms"] == 5
        assert _get_json(f"http://127.0.0.1:{port}/")[1]["websocket"] == f"ws://127.0.0.1:{ws_port}/api/v1/ws"
        with socket.create_connection(("127.0.0.1", ws_port), timeout=5):
            pass

        # A second run on the same port fails at once, clearly, and leaves the first alone.
        second = subprocess.run(
            [sys.executable, "manage.py", "run", "--port", str(port), "--ws-port", str(free_port())],
            cwd=BASE,
            env=_run_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert f"127.0.0.1:{port} is already in use" in second.stderr
        assert _get_json(f"http://127.0.0.1:{port}/health")[0] == 200

        tree = descendants(run.pid)
        names = {
            Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            for p in tree
            if Path(f"/proc/{p}").exists()
        }
        assert any("gunicorn" in n for n in names) and any("daphne" in n for n in names)
        assert any("worker" in n for n in names) and any("beat" in n for n in names)
        assert any("openadr_ven" in n for n in names), names
        daphnes = [
            p
            for p in tree
            if Path(f"/proc/{p}").exists() and b"daphne" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert len(daphnes) == 2, names
        if os.environ.get("ED_TEST_EMBEDDED_REDIS"):
            assert any("redis-server" in n for n in names)

        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0
        time.sleep(0.5)
        alive = {p for p in tree if _running(p)}
        assert not alive, f"orphans left: {alive}"
        assert "Stopped." in (tmp_path / "run.log").read_text()
    finally:
        if run.poll() is None:
            run.kill()
        log.close()


def test_run_refuses_a_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "run", "--port", str(port), "--ws-port", str(free_port())],
            cwd=BASE,
            env=_run_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "is already in use (is another `manage.py run` running?)" in result.stderr
    assert not (tmp_path / "var" / "redis" / "redis.sock").exists()
