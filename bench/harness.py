"""What every benchmark needs: the product running as `manage.py run` serves it, with
production settings in a throw-away folder, on loopback ports; a fresh PostgreSQL database;
and Django set up in the benchmark's own process against the same databases."""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BASE = Path(__file__).resolve().parents[1]
PG = "postgres://postgres@127.0.0.1:5432"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, ok: tuple[int, ...] = (200,)) -> None:
    """Wait until `url` answers with one of `ok`; SystemExit after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # loopback only
                if r.status in ok:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def post_readings(port: int, token: str, body: bytes, timeout: float = 120) -> tuple[int, bytes]:
    """POST one JSON batch to /api/v1/readings on a new connection (gunicorn's sync workers
    close it after each request); the status and body of the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/api/v1/readings",
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def fresh_database(name: str, pg: str = PG) -> str:
    """Drop and create a PostgreSQL database; return its URL."""
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"{pg}/{name}"


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process's group, SIGKILL it after 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@dataclass
class Product:
    """A running `manage.py run` and where it listens."""

    var: Path
    env: dict[str, str]
    port: int
    ws_port: int
    log: Path

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start another process beside it (same settings and Redis), logging to the same file."""
        env = dict(self.env, REDIS_URL=f"unix://{self.var / 'redis' / 'redis.sock'}")
        with self.log.open("ab") as out:
            return subprocess.Popen(
                argv, cwd=BASE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def setup_django(self) -> None:
        """Set Django up in this process against the product's databases and Redis."""
        import django

        os.environ.update(self.env, REDIS_URL=f"unix://{self.var / 'redis' / 'redis.sock'}")
        os.environ["DJANGO_SETTINGS_MODULE"] = "energy_dashboard.settings"
        django.setup()


@contextmanager
def running_product(
    *run_args: str, database_url: str | None = None, ready_path: str = "/", **settings: str
) -> Iterator[Product]:
    """`manage.py run RUN_ARGS` with production settings (DEBUG off, plain HTTP on loopback),
    SQLite or `database_url`, and an embedded Redis; stopped, with its folder removed, on exit.
    The server log's tail is printed if the benchmark fails."""
    var = Path(tempfile.mkdtemp(prefix="ed-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL") and k != "REDIS_URL"}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        VAR_DIR=str(var),
        LOG_LEVEL="WARNING",
        **({"DATABASE_URL": database_url} if database_url else {}),
        **settings,
    )
    product = Product(var, env, free_port(), free_port(), var / "run.log")
    argv = [
        sys.executable,
        "manage.py",
        "run",
        "-v",
        "0",
        "--port",
        str(product.port),
        "--ws-port",
        str(product.ws_port),
        *run_args,
    ]
    with product.log.open("wb") as out:
        server = subprocess.Popen(
            argv, cwd=BASE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(f"http://127.0.0.1:{product.port}{ready_path}", 120)
        yield product
    except BaseException:
        print("server log (tail):\n" + product.log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        stop(server)
        shutil.rmtree(var, ignore_errors=True)
