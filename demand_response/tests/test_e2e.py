"""End to end: a real Celery worker answers an invitation by the policy, then starts and
completes its event when `scheduler_tick` runs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from demand_response import services
from demand_response.models import DispatchCommand, DREvent, Invitation
from demand_response.tests.conftest import power
from demand_response.tests.helpers import permissive_policy
from energy_dashboard.celery import app
from energy_dashboard.testing import WORKER_ARGS, subprocess_env
from sensors import services as sensors_services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases="__all__")]


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def test_a_worker_accepts_activates_and_completes_an_event(start_process: Any) -> None:
    sensors_services.room_create(name="plant")
    sensors_services.sensor_register(sensor_id="ahu-power", kind="power", room_name="plant")
    services.device_create(name="ahu", sensor_id="ahu-power", max_shed_kw=30, priority=1)
    power("ahu-power", 40, timezone.now() - timedelta(seconds=30))
    permissive_policy()
    worker = start_process("worker", *WORKER_ARGS, env=subprocess_env())
    worker.wait_for(lambda out: "ready." in out, timeout=60, what="the worker starting")

    start = timezone.now() + timedelta(seconds=6)
    # The policy's hours are local and whole days; an event across local midnight is refused,
    # so keep it short.
    invitation = services.invitation_create(
        reduction_kw=20, start=start, end=start + timedelta(seconds=4), response_deadline=start
    )
    app.send_task("demand_response.tasks.auto_response_tick")
    until(lambda: Invitation.objects.get(pk=invitation.pk).status == "accepted", 30, "the policy accepting")
    event = DREvent.objects.get(invitation_id=invitation.pk)
    assert event.status == "scheduled"

    until(lambda: timezone.now() >= start, 15, "the event's start")
    app.send_task("demand_response.tasks.scheduler_tick")
    until(lambda: DREvent.objects.get(pk=event.pk).status == "active", 30, "the worker activating the event")
    assert list(DispatchCommand.objects.values_list("action", "kw")) == [("shed", 20.0)]

    until(lambda: timezone.now() >= event.end, 15, "the event's end")
    app.send_task("demand_response.tasks.scheduler_tick")
    until(
        lambda: DREvent.objects.get(pk=event.pk).status == "completed", 30, "the worker completing the event"
    )
    until(lambda: DREvent.objects.get(pk=event.pk).measured_at is not None, 30, "the measurement")
    event.refresh_from_db()
    assert event.performance is not None
    assert event.performance["reason"].startswith("not enough data")
    assert sorted(DispatchCommand.objects.values_list("action", flat=True)) == ["restore", "shed"]
    worker.wait_for(
        lambda out: len(re.findall(r"demand_response\.tasks\.scheduler_tick\[[^\]]+\] succeeded", out)) >= 2,
        timeout=30,
        what="the scheduler task succeeding twice",
    )
