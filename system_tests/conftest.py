"""Tests against the product as `manage.py run --demo` serves it (gunicorn, daphne, a Celery worker and beat,
its own embedded Redis or the machine's), and Debian's Chromium driven by Playwright.

One `run` for the whole session, in a folder of its own; each test gets a fresh browser
context (its own cookies) and makes the data it checks through the API, under names of its
own, beside the demo building.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize, sync_playwright

BASE = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Chromium as root in a container, headless, with nothing reaching out to the network
# (this machine's network is closed: background requests would only fail, many at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]
OPERATOR_PASSWORD = "browser-tests-operator-1"
VIEWER_PASSWORD = "browser-tests-viewer-1"
TIME_ZONE = "Europe/Lisbon"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Product:
    """A running `manage.py run` and how to reach it."""

    url: str
    ws_port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)

    def manage(self, *args: str, timeout: float = 60) -> str:
        """Run a management command against the product's databases; its stdout."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def token(self, username: str) -> str:
        if username not in self.tokens:
            self.tokens[username] = self.manage("create_token", username).strip().split()[-1]
        return self.tokens[username]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str = "operator",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """An API call as `user` (by token); (status, JSON body)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Token {self.token(user)}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            text = exc.read()
            try:
                return exc.code, json.loads(text)
            except ValueError:
                return exc.code, text.decode(errors="replace")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def restart_websockets(self) -> None:
        """Restart daphne alone, as a deploy would: `run`'s supervisor restarts its
        restartable children on SIGUSR1 (energy_dashboard/supervisor.py)."""
        os.kill(self.process.pid, signal.SIGUSR1)

    def reverse(self, *names: tuple[str, ...] | str) -> dict[str, str | None]:
        """The paths of URL names in the product's URL conf (None for a name it does not
        have); a name with arguments is given as a tuple (name, arg, ...)."""
        wanted = [[n] if isinstance(n, str) else list(n) for n in names]
        code = (
            "import json, sys\n"
            "from django.urls import NoReverseMatch, reverse\n"
            "out = {}\n"
            f"for name, *args in {wanted!r}:\n"
            "    try:\n"
            "        out[name] = reverse(name, args=args)\n"
            "    except NoReverseMatch:\n"
            "        out[name] = None\n"
            "sys.stdout.write('URLS' + json.dumps(out))\n"
        )
        printed = self.manage("shell", "-c", code)
        return dict(json.loads(printed.split("URLS", 1)[1]))


def _wait_healthy(product: Product, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if product.process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(product.url + "/health", timeout=3) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the product did not become healthy:\n{product.output()[-4000:]}")


@contextmanager
def running_product(folder: Path) -> Iterator[Product]:
    """`manage.py run --demo` on free loopback ports with its data under `folder`, healthy;
    stopped (its whole process group) on exit. The browser tests' `product` and
    tools/screenshots.py both use it."""
    port, ws_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env.update(
        DEBUG="true",
        VAR_DIR=str(folder / "var"),
        DEMO_PASSWORD=OPERATOR_PASSWORD,
        HEARTBEAT_INTERVAL="1",
        FTP_SKIP_INITIAL_SCAN="true",
        TIME_ZONE=TIME_ZONE,
        PYTHONUNBUFFERED="1",
    )
    # With DATABASE_URL / REDIS_URL set (make test-postgres style), the product uses them.
    if os.environ.get("BROWSER_DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["BROWSER_DATABASE_URL"]
    log = folder / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
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
                "2",
                "--worker-concurrency",
                "1",
            ],
            cwd=BASE,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Product(f"http://127.0.0.1:{port}", ws_port, env, log, process)
    try:
        _wait_healthy(running, 120)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    with running_product(tmp_path_factory.mktemp("product")) as running:
        running.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import Group, User; "
            f"u = User.objects.create_user('viewer', password='{VIEWER_PASSWORD}'); "
            "u.groups.add(Group.objects.get(name='viewers'))",
        )
        yield running


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, as the browser tests run it."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


@dataclass
class Session:
    """A browser context of one user, with what its pages said to the console."""

    context: BrowserContext
    page: Page
    errors: list[str]
    csp_violations: list[str]


def _new_session(
    browser: Browser,
    product: Product,
    *,
    color_scheme: Literal["light", "dark"] = "light",
    viewport: ViewportSize | None = None,
    theme: str | None = None,
    bypass_csp: bool = False,
) -> Session:
    """A fresh context; `theme` sets the theme cookie (light/dark) as the theme button does;
    `bypass_csp` lets a test inject a script of its own (axe-core) into the pages."""
    context = browser.new_context(
        base_url=product.url,
        viewport=viewport or {"width": 1366, "height": 900},
        color_scheme=color_scheme,
        timezone_id=TIME_ZONE,
        locale="en-GB",
        bypass_csp=bypass_csp,
    )
    if theme:
        context.add_cookies([{"name": "theme", "value": theme, "url": product.url}])
    page = context.new_page()
    errors: list[str] = []
    violations: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    # The Content-Security-Policy's refusals surface as console errors too; also keep them apart.
    page.on(
        "console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    return Session(context, page, errors, violations)


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


@pytest.fixture
def anonymous(browser: Browser, product: Product) -> Iterator[Session]:
    session = _new_session(browser, product)
    yield session
    session.context.close()


@pytest.fixture
def anonymous_with(browser: Browser, product: Product) -> Iterator[Callable[..., Session]]:
    """Make an anonymous browser session with options: `anonymous_with(theme="dark")`."""
    sessions: list[Session] = []

    def make(**options: Any) -> Session:
        session = _new_session(browser, product, **options)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.context.close()


@pytest.fixture
def signed_in(browser: Browser, product: Product) -> Iterator[Callable[..., Session]]:
    """Make a signed-in browser session: `signed_in("viewer")`, `signed_in(color_scheme="dark")`."""
    sessions: list[Session] = []

    def make(username: str = "operator", **options: Any) -> Session:
        session = _new_session(browser, product, **options)
        sign_in(session.page, username, OPERATOR_PASSWORD if username == "operator" else VIEWER_PASSWORD)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.context.close()


# For tools/screenshots.py: a browser context as the tests make them.
new_session = _new_session
