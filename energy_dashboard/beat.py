"""The beat scheduler: django-celery-beat's database schedule, plus a heartbeat for /health."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from energy_dashboard.core import heartbeats

logger = logging.getLogger(__name__)


class HeartbeatDatabaseScheduler(DatabaseScheduler):
    """Operators edit the schedule in the admin; each tick also records that beat is alive."""

    _last_heartbeat = 0.0

    def setup_schedule(self) -> None:
        # The schedule declared in code is written to the database by migrate
        # (energy_dashboard.schedule), creating missing entries without undoing an operator's
        # edits. DatabaseScheduler.setup_schedule would overwrite them from beat_schedule on
        # every start, so only the defaults Celery itself installs are kept.
        self.install_default_entries(self.schedule)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last_heartbeat >= settings.HEARTBEAT_INTERVAL_S:
            try:
                heartbeats.beat_beat(os.getpid())
                self._last_heartbeat = now
            except Exception:  # Redis down: /health says so; beat keeps its schedule.
                logger.warning("beat heartbeat not written", exc_info=True)
        # Wake up at least once per heartbeat interval even when nothing is due for longer.
        return min(interval, float(settings.HEARTBEAT_INTERVAL_S))
