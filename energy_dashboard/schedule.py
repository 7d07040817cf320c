"""The periodic jobs of the design, declared in code and kept in django-celery-beat's tables.

`sync_schedule` runs after every `migrate` of the default database. It creates missing
entries and brings an entry up to date with the code only while it still holds the value the
code last wrote (recorded in its description): once an operator changes an entry in the
admin, the operator's value wins.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

_MARKER = re.compile(r"\[code default: (?P<value>[^\]]+)\]")


@dataclass(frozen=True)
class Job:
    """One periodic job: a Celery task on an interval (seconds) or a daily time."""

    name: str
    task: str
    description: str
    every_s: int | None = None
    daily_at: tuple[int, int] | None = None  # (hour, minute) in settings.TIME_ZONE
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def default(self) -> str:
        """A text that identifies the schedule this code declares."""
        if self.every_s is not None:
            return f"every {self.every_s}s"
        assert self.daily_at is not None
        return f"daily at {self.daily_at[0]:02d}:{self.daily_at[1]:02d}"

    @property
    def expires_s(self) -> int | None:
        # A run that waited longer than its period is stale: the next one is already queued.
        period = self.every_s if self.every_s is not None else 24 * 3600
        return max(period - 5, 1)


def jobs() -> list[Job]:
    """The periodic jobs (docs/architecture.md, "Processes"; the README lists them)."""
    return [
        Job(
            name="sensors: room metrics",
            task="sensors.tasks.room_metrics_compute",
            description="Rolls readings up into 5-minute room metrics and sensor rollups.",
            every_s=300,
        ),
        Job(
            name="sensors: retention cleanup",
            task="sensors.tasks.readings_cleanup",
            description="Deletes raw readings older than READINGS_RETENTION_DAYS; rollups stay.",
            daily_at=(3, 15),
        ),
        Job(
            name="sensors: stale sensors",
            task="sensors.tasks.sensors_mark_stale",
            description="Marks sensors stale after SENSOR_STALE_FACTOR expected intervals of silence.",
            every_s=60,
        ),
        Job(
            name="demand_response: event scheduler",
            task="demand_response.tasks.scheduler_tick",
            description="Starts, dispatches and completes demand-response events.",
            every_s=60,
        ),
        Job(
            name="demand_response: auto-response",
            task="demand_response.tasks.auto_response_tick",
            description="Answers pending grid invitations by the auto-response policy.",
            every_s=30,
        ),
        Job(
            name="ingestion: FTP scan",
            task="ingestion.tasks.ftp_scan_all",
            # Each source has its own interval (FTP_CHECK_INTERVAL unless set): the job only
            # checks every minute which sources are due, so a short interval is honoured.
            description="Scans each enabled remote source whose interval (FTP_CHECK_INTERVAL unless "
            "the source sets one) has passed.",
            every_s=60,
        ),
        Job(
            name="ingestion: kept files retention",
            task="ingestion.tasks.files_retention",
            description="Deletes the kept content of meter files older than INGESTION_FILES_RETENTION_DAYS "
            "(rejected and failed ones: INGESTION_REJECTED_FILES_RETENTION_DAYS); the ledger rows stay.",
            daily_at=(3, 45),
        ),
    ]


def _apply(task: Any, job: Job) -> None:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    if job.every_s is not None:
        task.interval, _ = IntervalSchedule.objects.get_or_create(
            every=job.every_s, period=IntervalSchedule.SECONDS
        )
        task.crontab = None
    else:
        assert job.daily_at is not None
        hour, minute = job.daily_at
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=str(minute),
            hour=str(hour),
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        task.interval = None
    task.task = job.task
    task.kwargs = json.dumps(job.kwargs)
    task.expire_seconds = job.expires_s
    task.description = f"{job.description} [code default: {job.default}]"


def _current(task: Any) -> str | None:
    if task.interval is not None and task.interval.period == "seconds":
        return f"every {task.interval.every}s"
    if task.crontab is not None and task.crontab.day_of_week == "*":
        try:
            return f"daily at {int(task.crontab.hour):02d}:{int(task.crontab.minute):02d}"
        except ValueError:
            return None
    return None


def sync_schedule(*, using: str = "default") -> dict[str, str]:
    """Create or update the periodic tasks declared in code; returns what was done per job."""
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    done: dict[str, str] = {}
    with transaction.atomic(using=using):
        for job in jobs():
            task = PeriodicTask.objects.filter(name=job.name).first()
            if task is None:
                task = PeriodicTask(name=job.name, enabled=True)
                _apply(task, job)
                task.save()
                done[job.name] = "created"
                continue
            marker = _MARKER.search(task.description or "")
            untouched = marker is not None and _current(task) == marker.group("value")
            if untouched and marker is not None and marker.group("value") != job.default:
                _apply(task, job)
                task.save()
                done[job.name] = "updated"
            else:
                done[job.name] = "kept" if untouched else "kept (operator's)"
        # Tell a running beat to reload.
        PeriodicTasks.update_changed()
    logger.debug("schedule sync: %s", done)
    return done
