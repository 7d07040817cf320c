"""SIGUSR1 restarts the restartable children (daphne) and leaves the others running."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from energy_dashboard.supervisor import Child, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _supervisor(tmp_path: Path) -> tuple[Supervisor, Child, Child]:
    supervisor = Supervisor(env=dict(os.environ), cwd=tmp_path)
    kept = Child("worker", SLEEPER, stop_timeout_s=5)
    restarted = Child("websockets", SLEEPER, stop_timeout_s=5, restartable=True)
    supervisor.start(kept)
    supervisor.start(restarted)
    return supervisor, kept, restarted


def test_restart_replaces_only_the_restartable_children(tmp_path: Path) -> None:
    supervisor, kept, restarted = _supervisor(tmp_path)
    try:
        kept_pid, old_pid = kept.pid, restarted.pid
        old = restarted.process
        supervisor.restart_restartable()
        assert old is not None and old.poll() is not None  # the old daphne is gone
        assert restarted.pid != old_pid and restarted.exited() is None
        assert kept.pid == kept_pid and kept.exited() is None
    finally:
        supervisor.stop_all()
    assert kept.exited() is not None and restarted.exited() is not None


def test_sigusr1_restarts_while_waiting_and_the_run_goes_on(tmp_path: Path) -> None:
    supervisor, kept, restarted = _supervisor(tmp_path)
    previous = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
    }
    supervisor.install_signal_handlers()
    old_pid = restarted.pid
    seen: list[int | None] = []

    def poke() -> None:
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 20
        while restarted.pid == old_pid and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(restarted.pid)
        supervisor.stop_requested = signal.SIGTERM  # end wait() as a stop signal would

    thread = threading.Thread(target=poke)
    try:
        thread.start()
        status = supervisor.wait()
        thread.join(30)
        assert status == 0  # the restart is not taken for a child's death
        assert seen and seen[0] != old_pid
        assert kept.exited() is None and restarted.exited() is None
    finally:
        supervisor.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
