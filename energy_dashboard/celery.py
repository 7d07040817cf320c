"""The Celery application: worker and beat of the modules' background jobs."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energy_dashboard.settings")

logger = logging.getLogger(__name__)

app = Celery("energy_dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Writes this worker's heartbeat to Redis on a timer, for /health and the overview."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        from django.conf import settings

        self._beat(worker)
        self.tref = worker.timer.call_repeatedly(
            settings.HEARTBEAT_INTERVAL_S, self._beat, (worker,), priority=10
        )

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def _beat(self, worker: Any) -> None:
        from energy_dashboard.core import heartbeats

        try:
            heartbeats.worker_beat(worker.hostname, os.getpid())
        except Exception:  # Redis down: /health will say so; the worker carries on.
            logger.warning("worker heartbeat not written", exc_info=True)


app.steps["worker"].add(WorkerHeartbeat)


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    logger.info("worker ready: %s", getattr(sender, "hostname", "?"))
