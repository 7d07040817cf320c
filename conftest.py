"""Fixtures shared by every module's tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.test import APIClient

from energy_dashboard.core import roles
from energy_dashboard.core.redis import redis_client


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    # The production hasher costs ~0.3 s a password by design; tests make many users.
    from django.test.utils import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _fresh_analytics_cache() -> None:
    # Each test's database starts empty (or rolls back); answers cached by an earlier test
    # under the same versions would be served as this one's.
    from sensors import analytics_cache

    analytics_cache.clear()


@pytest.fixture
def make_user(django_db_blocker: Any) -> Callable[..., User]:
    """Create a user in a group ("operators", "viewers" or None)."""

    def make(username: str = "someone", group: str | None = None, **extra: Any) -> User:
        user = User.objects.create_user(username=username, password="pw-for-tests-1", **extra)
        if group:
            user.groups.add(Group.objects.get(name=group))
        return user

    return make


@pytest.fixture
def operator(make_user: Callable[..., User]) -> User:
    return make_user("op", roles.OPERATORS, is_staff=True)


@pytest.fixture
def viewer(make_user: Callable[..., User]) -> User:
    return make_user("viewer", roles.VIEWERS)


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def operator_api(api: APIClient, operator: User) -> APIClient:
    api.force_authenticate(operator)
    return api


@pytest.fixture
def viewer_api(api: APIClient, viewer: User) -> APIClient:
    api.force_authenticate(viewer)
    return api


@pytest.fixture
def operator_client(operator: User) -> Client:
    """A browser session signed in as an operator (the admin, the pages)."""
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(viewer: User) -> Client:
    """A browser session signed in as a viewer."""
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture
def redis_clean() -> Iterator[Any]:
    """The test Redis with no heartbeats before and after the test."""
    client = redis_client()

    def clear() -> None:
        for key in client.scan_iter(match="ed:heartbeat:*"):
            client.delete(key)

    clear()
    yield client
    clear()


class Process:
    """A process a test started, with its output in a file the test can wait on."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if predicate(text):
                return text
            if self.popen.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{what} did not happen within {timeout}s; output:\n{self.output()[-4000:]}")

    def stop(self, timeout: float = 20) -> None:
        import os
        import signal

        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        self._out.close()


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start `python -m ...` processes that are stopped (their whole group) after the test."""
    started: list[Process] = []
    base = Path(__file__).resolve().parent

    def start(name: str, *args: str, env: dict[str, str]) -> Process:
        process = Process([sys.executable, *args], env, tmp_path / f"{name}.log", base)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Close every connection before the test databases are dropped.

    Connections are kept between requests (CONN_MAX_AGE); on PostgreSQL the module aliases
    are separate sessions on one test database, which cannot be dropped while they are open.
    """
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        connections.close_all()
