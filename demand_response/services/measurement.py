"""Delivery measurement: which baseline method a programme's events are measured by, and the
measurement of an event's delivery against its baseline (demand_response/baselines.py) from
its devices' metered load (docs/demand-response.md, "Delivery measurement")."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from demand_response import baselines
from demand_response.models import DREvent, EventDevice
from demand_response.services._common import DRError, iso_z, or_now
from energy_dashboard.core.clock import building_tz
from sensors import services as sensors_services

QUARTER = timedelta(minutes=15)


def programme_baseline(programme: str) -> str:
    """The baseline method of a programme: DR_PROGRAMME_BASELINES names it per programme
    (the utility's rules differ: CAISO programmes use 10 of 10, PJM's High 4 of 5), else
    DR_DEFAULT_BASELINE."""
    method: str = settings.DR_PROGRAMME_BASELINES.get(programme, settings.DR_DEFAULT_BASELINE)
    return method


def _floor_quarter(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def _ceil_quarter(moment: datetime) -> datetime:
    floor = _floor_quarter(moment)
    return floor if floor == moment else floor + QUARTER


def _event_days(start: datetime, end: datetime, tz: ZoneInfo) -> set[date]:
    first, last = start.astimezone(tz).date(), (end - timedelta(microseconds=1)).astimezone(tz).date()
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


def event_measure(*, event: DREvent, now: datetime | None = None) -> DREvent:
    """Measure an event's delivery: baseline from the metered history of its dispatched devices'
    sensors (all its devices when none was shed), against their load during the event.

    Measured over the quarter-hours that cover the event. Days of other events that were
    activated (whatever their status now) are excluded from the baseline. Stores the report
    (or the reason there is none, such as "not enough data") in `performance`; repeatable,
    e.g. after late data arrived. An event out of bounds (a row written around the
    validation) is refused with DRError naming the fields.
    """
    if event.out_of_bounds:
        raise DRError.of(event.out_of_bounds, prefix=f"Event {event.pk} cannot be measured: ")
    now = or_now(now)
    tz = building_tz()
    rows = list(event.dispatches.select_related("device"))
    shed = [r for r in rows if r.status in (EventDevice.Status.SHED, EventDevice.Status.RESTORED)]
    sensor_ids = sorted({r.device.sensor_id for r in (shed or rows)})
    q_start, q_end = _floor_quarter(event.start), _ceil_quarter(event.end)
    request = baselines.BaselineRequest(
        # The model's field is text of BaselineMethod's choices; the request checks it is one.
        method=event.baseline_method,  # type: ignore[arg-type]
        event_start=q_start,
        event_end=q_end,
        tz=tz,
        excluded_days=frozenset(),
    )
    history_start = q_start - timedelta(days=request.lookback_days + 2)
    excluded: set[date] = set()
    # Every event that was activated shed load on its days, including one cancelled after it
    # started; one completed unseen (never activated) did not, and its day stays eligible.
    for start, end in (
        DREvent.objects.filter(
            activated_at__isnull=False,
            end__gt=history_start,
            start__lt=q_start,
        )
        .exclude(pk=event.pk)
        .values_list("start", "end")
    ):
        # Only the days the baseline looks at: another row's start far in the past (out of
        # bounds) must not walk the calendar off its end, nor stop this measurement.
        excluded |= _event_days(max(start, history_start), min(end, q_end), tz)
    excluded.discard(request.event_day)
    request = baselines.BaselineRequest(
        method=request.method, event_start=q_start, event_end=q_end, tz=tz, excluded_days=frozenset(excluded)
    )
    report: dict[str, Any] = {
        "method": event.baseline_method,
        "sensors": sensor_ids,
        "measured_from": iso_z(q_start),
        "measured_to": iso_z(q_end),
        "committed_kw": event.target_kw,
        "excluded_days": sorted(d.isoformat() for d in excluded),
    }
    measured_kw: float | None = None
    if not sensor_ids:
        report.update(ok=False, reason="not enough data: the event has no devices to measure")
    else:
        # The rollup job runs every few minutes: bring the event's days up to date first.
        sensors_services.rollups_backfill(
            since=q_start - timedelta(hours=5), until=q_end, sensor_ids=sensor_ids
        )
        series = sensors_services.load_kw_quarter_hours(sensor_ids=sensor_ids, start=history_start, end=q_end)
        load = _summed(series)
        baseline = baselines.compute_baseline(request, load)
        report.update(_baseline_json(baseline))
        if baseline.ok:
            actual = {moment: kw for moment, kw in load.items() if q_start <= moment < q_end}
            delivery = baselines.measure_delivery(baseline, actual, event.target_kw)
            report.update(_delivery_json(delivery))
            measured_kw = delivery.mean_delivered_kw
    DREvent.objects.filter(pk=event.pk).update(performance=report, measured_kw=measured_kw, measured_at=now)
    event.performance, event.measured_kw, event.measured_at = report, measured_kw, now
    return event


def _summed(series: dict[str, dict[datetime, float]]) -> dict[datetime, float]:
    """The devices' total per quarter-hour, only where every sensor has a value (a partial sum
    would look like a load reduction)."""
    if not series:
        return {}
    common = set.intersection(*(set(s) for s in series.values()))
    return {moment: math.fsum(s[moment] for s in series.values()) for moment in sorted(common)}


def _baseline_json(result: baselines.BaselineResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "reason": result.reason,
        "day_type": result.day_type,
        "days_used": [d.isoformat() for d in result.days_used],
        "days_skipped": [{"day": s.day.isoformat(), "reason": s.reason} for s in result.days_skipped],
        "adjustment_kind": result.adjustment_kind,
        "adjustment": result.adjustment,
        "adjustment_uncapped": result.adjustment_uncapped,
        "notes": list(result.notes),
    }


def _delivery_json(report: baselines.DeliveryReport) -> dict[str, Any]:
    return {
        "intervals": [
            {
                "start": iso_z(i.start),
                "baseline_kw": i.baseline_kw,
                "actual_kw": i.actual_kw,
                "delivered_kw": i.delivered_kw,
                "delivered_kwh": i.delivered_kwh,
            }
            for i in report.intervals
        ],
        "energy_delivered_kwh": report.energy_delivered_kwh,
        "mean_delivered_kw": report.mean_delivered_kw,
        "share_of_commitment": report.share_of_commitment,
        "intervals_missing": report.intervals_missing,
    }
