"""Groups and their permissions; the periodic schedule declared in code and kept in the database."""

from __future__ import annotations

import dataclasses
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from energy_dashboard.core import roles
from energy_dashboard.schedule import jobs, sync_schedule

pytestmark = pytest.mark.django_db(databases="__all__")


def test_groups_exist_with_their_permissions() -> None:
    operators = set(Group.objects.get(name="operators").permissions.values_list("codename", flat=True))
    viewers = set(Group.objects.get(name="viewers").permissions.values_list("codename", flat=True))
    assert {"view_sensor", "change_sensor", "add_room", "delete_room", "change_periodictask"} <= operators
    assert {"view_sensor", "view_room", "view_periodictask"} <= viewers
    assert all(codename.startswith("view_") for codename in viewers)


def test_roles_decide_read_and_write(make_user: Any) -> None:
    operator = make_user("o", roles.OPERATORS)
    viewer = make_user("v", roles.VIEWERS)
    nobody = make_user("n")
    admin = make_user("a", is_superuser=True)
    assert roles.can_operate(operator) and roles.can_view(operator)
    assert roles.can_view(viewer) and not roles.can_operate(viewer)
    assert not roles.can_view(nobody)
    assert roles.can_operate(admin)


def test_operators_may_change_viewers_may_not(api: Any, make_user: Any) -> None:
    # The token endpoint's POST is open; overview GET is for readers. A write to a read-only
    # view answers 405 to operators (allowed past the permission check) and 403 to viewers.
    api.force_authenticate(make_user("v", roles.VIEWERS))
    assert api.post("/api/v1/overview", {}, format="json").status_code == 403
    api.force_authenticate(make_user("o", roles.OPERATORS))
    assert api.post("/api/v1/overview", {}, format="json").status_code == 405


def test_schedule_of_the_design_is_in_the_database(settings: Any) -> None:
    tasks = {t.name: t for t in PeriodicTask.objects.select_related("interval", "crontab")}
    assert tasks["sensors: room metrics"].interval.every == 300
    assert tasks["demand_response: event scheduler"].interval.every == 60
    assert tasks["demand_response: auto-response"].interval.every == 30
    # Checks every minute which sources are due (each by its interval, FTP_CHECK_INTERVAL by default).
    assert tasks["ingestion: FTP scan"].interval.every == 60
    cleanup = tasks["sensors: retention cleanup"].crontab
    assert (cleanup.hour, cleanup.minute, str(cleanup.timezone)) == ("3", "15", settings.TIME_ZONE)
    # Each run expires just before the next one is due.
    assert tasks["demand_response: auto-response"].expire_seconds == 25


def test_schedule_follows_the_code_until_an_operator_edits_it(settings: Any) -> None:
    from energy_dashboard import schedule

    changed = [
        dataclasses.replace(job, every_s=45) if job.name == "ingestion: FTP scan" else job
        for job in schedule.jobs()
    ]
    with mock.patch.object(schedule, "jobs", return_value=changed):
        assert sync_schedule()["ingestion: FTP scan"] == "updated"
    interval = PeriodicTask.objects.get(name="ingestion: FTP scan").interval
    assert interval is not None and interval.every == 45

    # An operator retimes room metrics in the admin; a later sync keeps the operator's value.
    task = PeriodicTask.objects.get(name="sensors: room metrics")
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=120, period="seconds")
    task.save()
    assert sync_schedule()["sensors: room metrics"] == "kept (operator's)"
    interval = PeriodicTask.objects.get(name="sensors: room metrics").interval
    assert interval is not None and interval.every == 120


def test_deleted_job_is_recreated_by_migrate() -> None:
    PeriodicTask.objects.filter(name="demand_response: auto-response").delete()
    call_command("migrate", database="default", verbosity=0)
    assert PeriodicTask.objects.filter(name="demand_response: auto-response").exists()


def test_every_scheduled_task_is_registered_with_celery() -> None:
    from energy_dashboard.celery import app

    app.loader.import_default_modules()
    for job in jobs():
        assert job.task in app.tasks, job.task


def test_crontab_reused_not_duplicated() -> None:
    before = CrontabSchedule.objects.count()
    sync_schedule()
    sync_schedule()
    assert CrontabSchedule.objects.count() == before
