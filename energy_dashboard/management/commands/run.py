"""Run the whole platform: Redis (embedded when none is configured), web, worker and beat."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, transaction

from energy_dashboard.core import roles
from energy_dashboard.supervisor import (
    Child,
    EmbeddedRedis,
    PortInUse,
    Supervisor,
    listen,
    python_module,
)
from ingestion import services as ingestion_services
from sensors import services as sensors_services

if TYPE_CHECKING:
    from datetime import datetime

logger = logging.getLogger(__name__)


# A live client's message is at most 65,536 characters (the consumer refuses more): 256 KiB
# covers that in UTF-8; autobahn refuses anything bigger before it is read into memory.
WS_MAX_MESSAGE_BYTES = 256 * 1024


def _daphne_limits() -> list[str]:
    """daphne's frame and message limits, and proxy headers only behind a trusted proxy
    (daphne would take the client's address from any peer's X-Forwarded-For)."""
    limits = [
        "--websocket-max-message-size",
        str(WS_MAX_MESSAGE_BYTES),
        "--websocket-max-frame-size",
        str(WS_MAX_MESSAGE_BYTES),
    ]
    return [*limits, "--proxy-headers"] if settings.TRUSTED_PROXIES else limits


class Command(BaseCommand):
    help = (
        "Start Energy Dashboard: an embedded Redis when REDIS_URL is unset, migrations of every "
        "database, then gunicorn (HTTP), daphne (WebSockets), a Celery worker and beat, and the MQTT "
        "ingester when a broker is enabled. "
        "Ctrl-C or SIGTERM stops them all; SIGUSR1 restarts daphne alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--demo", action="store_true", help="Load the demo building and the operator user."
        )
        parser.add_argument("--host", default=settings.HOST, help="Address to listen on (HOST).")
        parser.add_argument("--port", type=int, default=settings.PORT, help="HTTP port (PORT).")
        parser.add_argument(
            "--ws-port", type=int, default=None, help="WebSocket port (WS_PORT; default PORT+1)."
        )
        parser.add_argument(
            "--web-workers",
            type=int,
            default=settings.WEB_CONCURRENCY,
            help="gunicorn worker processes (WEB_CONCURRENCY).",
        )
        parser.add_argument(
            "--ws-workers",
            type=int,
            default=settings.WS_CONCURRENCY,
            help="daphne processes sharing the WebSocket port (WS_CONCURRENCY).",
        )
        parser.add_argument("--worker-concurrency", type=int, default=2, help="Celery worker processes.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")
        parser.add_argument("--no-beat", action="store_true", help="Do not start Celery beat.")

    def handle(self, *args: Any, **opts: Any) -> None:
        host: str = opts["host"]
        port: int = opts["port"]
        ws_port: int = opts["ws_port"] or (settings.WS_PORT if port == settings.PORT else port + 1)
        base_dir = Path(settings.BASE_DIR)

        # Claim the ports before anything else: a second `run` stops here, having changed nothing.
        try:
            http_sock = listen(host, port)
            ws_sock = listen(host, ws_port)
        except PortInUse as exc:
            raise CommandError(str(exc)) from None

        # The children announce these (e.g. the WebSocket URL in the service description).
        env = dict(
            os.environ,
            REDIS_URL=settings.REDIS_URL,
            PYTHONUNBUFFERED="1",
            HOST=host,
            PORT=str(port),
            WS_PORT=str(ws_port),
        )
        env.setdefault("DJANGO_SETTINGS_MODULE", "energy_dashboard.settings")
        supervisor = Supervisor(env=env, cwd=base_dir)
        supervisor.install_signal_handlers()
        try:
            if settings.REDIS_EMBEDDED:
                try:
                    redis_child = EmbeddedRedis(Path(settings.EMBEDDED_REDIS_SOCKET)).start(env, base_dir)
                except PortInUse as exc:
                    raise CommandError(str(exc)) from None
                supervisor.adopt(redis_child)
                self.stdout.write(f"Embedded Redis on {settings.REDIS_URL}")

            call_command("migrate_all", verbosity=0)
            if opts["demo"]:
                self._load_demo()
            opts["mqtt"] = ingestion_services.mqtt_brokers_enabled()
            # The children open their own connections; do not hand them ours.
            connections.close_all()

            self._start_children(supervisor, opts, http_sock, ws_sock)
            http_sock.close()
            # The WebSocket socket stays open here: daphne is restarted on it on SIGUSR1
            # (see energy_dashboard.supervisor); the supervisor never accepts on it.

            shown = f"[{host}]" if ":" in host else host
            self.stdout.write(
                self.style.SUCCESS(f"Energy Dashboard is running at http://{shown}:{port}/")
                + f"\n  API        http://{shown}:{port}/api/v1/"
                + f"\n  API docs   http://{shown}:{port}/api/v1/docs/"
                + f"\n  admin      http://{shown}:{port}/admin/"
                + f"\n  live feed  ws://{shown}:{ws_port}/api/v1/ws"
                + "\nPress Ctrl-C to stop."
            )
            self.stdout.flush()
            status = supervisor.wait()
        finally:
            supervisor.stop_all()
            ws_sock.close()
            self.stdout.write("Stopped.")
        if status:
            raise CommandError("A process of the platform died; everything was stopped.")

    def _start_children(
        self, supervisor: Supervisor, opts: dict[str, Any], http_sock: Any, ws_sock: Any
    ) -> None:
        log_level = "info" if opts["verbosity"] >= 1 else "warning"
        if not opts["no_beat"]:
            supervisor.start(
                Child(
                    "beat",
                    python_module(
                        "celery",
                        "-A",
                        "energy_dashboard",
                        "beat",
                        "--loglevel",
                        log_level,
                        "--schedule",
                        str(Path(settings.VAR_DIR) / "celerybeat-schedule"),
                    ),
                )
            )
        if opts["demo"]:
            # The demo building's sensors, live: a day of history, then a batch every 10 s.
            supervisor.start(
                Child(
                    "simulator",
                    [
                        sys.executable,
                        "manage.py",
                        "simulate_sensors",
                        "--interval",
                        "10",
                        "--backfill-hours",
                        "24",
                        "--verbosity",
                        "0",
                    ],
                )
            )
        if not opts["no_worker"]:
            supervisor.start(
                Child(
                    "worker",
                    python_module(
                        "celery",
                        "-A",
                        "energy_dashboard",
                        "worker",
                        "--loglevel",
                        log_level,
                        "--concurrency",
                        str(opts["worker_concurrency"]),
                        "--hostname",
                        f"worker-{os.getpid()}@%h",
                    ),
                    stop_timeout_s=30.0,
                )
            )
        # Several daphne processes may accept on the one listening socket (the kernel spreads
        # the connections); live messages reach each process once over Redis pub/sub.
        for n in range(max(1, opts["ws_workers"])):
            supervisor.start(
                Child(
                    "websockets" if opts["ws_workers"] <= 1 else f"websockets-{n + 1}",
                    python_module(
                        "daphne",
                        "--fd",
                        str(ws_sock.fileno()),
                        *_daphne_limits(),
                        "energy_dashboard.asgi:application",
                    ),
                    pass_fds=(ws_sock.fileno(),),
                    restartable=True,
                )
            )
        if opts.get("mqtt"):
            # The MQTT ingester (docs/mqtt.md): started when a broker is enabled at start; it
            # follows later changes to brokers and mappings on its own.
            supervisor.start(Child("mqtt", [sys.executable, "manage.py", "mqtt_ingest"], stop_timeout_s=15.0))
        if settings.OPENADR_VTN_URL:
            # The OpenADR VEN talks to the utility's VTN in its own process.
            supervisor.start(Child("openadr-ven", [sys.executable, "manage.py", "openadr_ven"]))
        web = python_module(
            "gunicorn",
            "energy_dashboard.wsgi:application",
            "--bind",
            f"fd://{http_sock.fileno()}",
            "--workers",
            str(opts["web_workers"]),
            # Sync workers: measured faster here than gthread (docs/adr/0002).
            "--worker-class",
            "sync",
            "--log-level",
            log_level,
        )
        if opts["verbosity"] >= 2:
            web += ["--access-logfile", "-"]
        supervisor.start(Child("web", web, pass_fds=(http_sock.fileno(),)))

    def _load_demo(self, now: datetime | None = None) -> None:
        # Each module's demo through its own services, in dependency order: the utility's meter
        # files; the building's sensors; its demand response, which replays a past event over
        # the history it writes; the rest of the history. Idempotent: a second run adds
        # only what time added since. (Imported here: only --demo needs the other modules.)
        import time

        from django.utils import timezone

        from demand_response import services as dr_services
        from ingestion import services as ingestion_services

        started = time.monotonic()
        now = now or timezone.now()
        # The files first: the history's aggregation then rolls their readings up too (and the
        # count of sensors includes the meter the import registers).
        files = ingestion_services.demo_load(now=now)
        counts = sensors_services.demo_load()
        dr = dr_services.demo_load(now=now)
        history = sensors_services.demo_history(now=now)
        self.stdout.write(
            f"Demo building: {counts['rooms']} rooms, {counts['sensors']} sensors, "
            f"{dr['devices']} flexible devices, {files['imported']} meter files imported and "
            f"{files['rejected']} rejected; {dr['readings'] + history['readings']} readings added "
            f"({time.monotonic() - started:.1f} s)"
        )
        user_model = get_user_model()
        password = settings.DEMO_PASSWORD
        with transaction.atomic(using="default"):
            user, created = user_model.objects.get_or_create(
                username="operator", defaults={"is_staff": True, "email": ""}
            )
            user.groups.add(Group.objects.get(name=roles.OPERATORS))
            if created or password:
                shown = password or secrets.token_urlsafe(12)
                user.set_password(shown)
                user.is_staff = True
                user.save()
                if password:
                    self.stdout.write("User 'operator' (operators group): password from DEMO_PASSWORD")
                else:
                    # Printed this once only; the hash is all that is kept.
                    self.stdout.write(f"User 'operator' (operators group), password: {shown}")
            else:
                self.stdout.write(
                    "User 'operator' exists; password unchanged (set DEMO_PASSWORD to reset it)"
                )
