"""The suite's own clock (energy_dashboard.testing): `pytest --clock=INSTANT` runs every test as if
now were INSTANT, `@pytest.mark.clock(INSTANT)` one test; the processes a test starts share it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from energy_dashboard.testing import CLOCK_SHIFT_VARIABLE, CLOCK_SITE_DIR, clock_instant

LISBON = ZoneInfo("Europe/Lisbon")
BASE = Path(__file__).resolve().parents[2]
# The second 01:30 of 25 October 2026 in Lisbon, when the clocks have gone back.
PINNED = "2026-10-25T01:30:00+00:00"


def near(instant: datetime, moment: datetime) -> bool:
    # The clock ticks from the instant: a test reads it a little later, never before.
    return instant <= moment < instant + timedelta(minutes=10)


def test_a_local_time_is_the_buildings_and_an_offset_is_kept() -> None:
    assert clock_instant("2026-12-02T23:59", LISBON) == datetime(2026, 12, 2, 23, 59, tzinfo=UTC)
    assert clock_instant("2026-07-01T00:00", LISBON) == datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
    assert clock_instant("2026-03-29T02:30", LISBON) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert clock_instant("2026-10-25T01:30+01:00", LISBON) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert clock_instant("2026-10-25T01:30Z", LISBON) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-03-29T01:30", "clocks skip that time"),
        ("2026-10-25T01:30", r"happens twice .* 2026-10-25T01:30:00\+01:00 .* 2026-10-25T01:30:00\+00:00"),
        ("tomorrow", "not an ISO 8601"),
    ],
)
def test_a_local_time_that_names_no_single_instant_is_refused(text: str, message: str) -> None:
    with pytest.raises(pytest.UsageError, match=message):
        clock_instant(text, LISBON)


@pytest.mark.clock(PINNED)
def test_a_pinned_test_starts_at_its_instant_and_the_clock_ticks() -> None:
    start = timezone.now()
    assert near(datetime.fromisoformat(PINNED), start)
    time.sleep(0.01)
    assert timezone.now() > start
    assert timezone.localtime(start).utcoffset() == timedelta(0)  # winter time again


@pytest.mark.clock(PINNED)
def test_a_process_the_test_starts_and_its_forked_child_read_the_same_clock() -> None:
    # What a Celery prefork worker or a gunicorn worker is: a started process, then a fork.
    code = (
        "import os, time\n"
        "print(time.time_ns(), flush=True)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print(time.time_ns(), flush=True)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    before = time.time_ns()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    after = time.time_ns()
    started, forked = (int(line) for line in done.stdout.split())
    assert before <= started <= forked <= after, done.stderr


NESTED = """
import os
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

EXPECTED = os.environ["EXPECT_CLOCK"]


def at(instant):
    now = datetime.now(UTC)
    assert instant <= now < instant + timedelta(minutes=10), now
    assert os.environ["{shift}"]


def as_the_run_says():
    if EXPECTED:
        at(datetime.fromisoformat(EXPECTED))
    else:
        assert not time_machine.escape_hatch.is_travelling()
        assert "{shift}" not in os.environ and "{site}" not in os.environ.get("PYTHONPATH", "")


def test_first():
    as_the_run_says()


@pytest.mark.clock("2026-12-01T12:00:00+00:00")
def test_pinned():
    at(datetime(2026, 12, 1, 12, tzinfo=UTC))


def test_after_the_pinned_one():
    as_the_run_says()
"""


@pytest.mark.parametrize(
    ("option", "expected"),
    [("--clock=2026-03-29T00:30", "2026-03-29T00:30:00+00:00"), (None, "")],
    ids=["clock", "real-clock"],
)
def test_each_test_runs_at_the_runs_instant_or_its_own(
    tmp_path: Path, option: str | None, expected: str
) -> None:
    (tmp_path / "test_nested.py").write_text(NESTED.format(shift=CLOCK_SHIFT_VARIABLE, site=CLOCK_SITE_DIR))
    # The nested run starts from the real clock, even when this one runs shifted.
    env = {k: v for k, v in os.environ.items() if k != CLOCK_SHIFT_VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(CLOCK_SITE_DIR)
    )
    env["EXPECT_CLOCK"] = expected
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(BASE / "pytest.ini"),
            "--rootdir",
            str(BASE),
            str(tmp_path / "test_nested.py"),
            *([option] if option else []),
        ],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout
