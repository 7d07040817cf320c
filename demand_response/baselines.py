"""Customer baseline load (CBL) methods and delivery measurement for demand-response events.

Pure: no Django, no database, no settings. The caller passes the load history, the time
zone and the event; see docs/dr-baselines.md for the rules and the sources behind them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

Method = Literal["caiso_10of10", "high_4of5"]
DayType = Literal["weekday", "weekend_holiday"]
AdjustmentKind = Literal["ratio", "additive", "none"]

METHOD_DEFAULT: Final = "method default"
"""Marker for `BaselineRequest.adjustment_cap`: use the cap the method's source prescribes."""

DEFAULT_ADJUSTMENT_WINDOW: Final = (timedelta(hours=4), timedelta(hours=1))
"""Same-day adjustment window, as (start, end) before the event start: hours -4..-2,
skipping the hour just before the event (CAISO's and PJM's rule; see docs/dr-baselines.md)."""


@dataclass(frozen=True)
class MethodRules:
    """How many days a method looks for, averages and needs, for one day type."""

    wanted: int  # the "Y": most recent eligible days looked for
    used: int  # the "X": of those, how many are averaged (highest event-window load first)
    minimum: int  # fewest eligible days that still give a baseline


RULES: Final[dict[tuple[Method, DayType], MethodRules]] = {
    # CAISO 10 in 10 (weekdays), falling back to no fewer than 5 days.
    ("caiso_10of10", "weekday"): MethodRules(wanted=10, used=10, minimum=5),
    # CAISO 4 in 4 (weekends and holidays), falling back to no fewer than 2 days.
    ("caiso_10of10", "weekend_holiday"): MethodRules(wanted=4, used=4, minimum=2),
    # PJM High 4 of 5 (weekdays): no fallback, five eligible days or no baseline.
    ("high_4of5", "weekday"): MethodRules(wanted=5, used=4, minimum=5),
    # PJM High 2 of 3 (weekends and holidays): no fallback.
    ("high_4of5", "weekend_holiday"): MethodRules(wanted=3, used=2, minimum=3),
}

_ADJUSTMENT_KIND: Final[dict[Method, Literal["ratio", "additive"]]] = {
    "caiso_10of10": "ratio",
    "high_4of5": "additive",
}
# CAISO caps its load-point adjustment at +/-20 %; PJM's symmetric additive adjustment is uncapped.
_DEFAULT_CAP: Final[dict[Method, float | None]] = {"caiso_10of10": 0.20, "high_4of5": None}


@dataclass(frozen=True)
class BaselineRequest:
    """What to compute a baseline for: the method, the event and the calendar around it."""

    method: Method
    event_start: datetime  # aware
    event_end: datetime  # aware, exclusive
    tz: ZoneInfo  # the building's zone: day types and clock times are local
    interval: timedelta = timedelta(minutes=15)
    # Local dates skipped, never counted: other event days, outages, anything unrepresentative.
    excluded_days: frozenset[date] = frozenset()
    # Local dates treated like weekend days: skipped for a weekday event, eligible for a
    # weekend/holiday event; an event on one of them uses the weekend/holiday rule.
    holidays: frozenset[date] = frozenset()
    lookback_days: int = 45
    # Fraction (0.20 = +/-20 %) of the baseline days' adjustment-window load; None = uncapped.
    adjustment_cap: float | Literal["method default"] | None = METHOD_DEFAULT
    # (start, end) before the event start; None = no same-day adjustment.
    adjustment_window: tuple[timedelta, timedelta] | None = DEFAULT_ADJUSTMENT_WINDOW
    min_days: int | None = None  # None = the method's minimum for the event's day type

    def __post_init__(self) -> None:
        """Reject requests that no load data could answer."""
        if self.method not in _ADJUSTMENT_KIND:
            raise ValueError(f"unknown baseline method {self.method!r}")
        for name in ("event_start", "event_end"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")
        if self.interval <= timedelta(0):
            raise ValueError("interval must be positive")
        if self.event_end <= self.event_start:
            raise ValueError("event_end must be after event_start")
        if (self.event_end - self.event_start) % self.interval:
            raise ValueError("the event must last a whole number of intervals")
        if self.lookback_days < 1:
            raise ValueError("lookback_days must be at least 1")
        if self.min_days is not None and self.min_days < 1:
            raise ValueError("min_days must be at least 1")
        cap = self.adjustment_cap
        if cap != METHOD_DEFAULT and cap is not None and not (isinstance(cap, float | int) and cap >= 0):
            raise ValueError("adjustment_cap must be a non-negative fraction, None or METHOD_DEFAULT")
        if self.adjustment_window is not None:
            start, end = self.adjustment_window
            if end < timedelta(0) or start <= end:
                raise ValueError("adjustment_window is (start, end) before the event, start > end >= 0")
            if (start - end) % self.interval:
                raise ValueError("the adjustment window must last a whole number of intervals")

    @property
    def event_day(self) -> date:
        """The event's local date."""
        return self.event_start.astimezone(self.tz).date()

    @property
    def day_type(self) -> DayType:
        """Weekday, or weekend/holiday, of the event day."""
        return _day_type(self.event_day, self.holidays)

    @property
    def rules(self) -> MethodRules:
        """The method's day counts for this event, with `min_days` applied."""
        rules = RULES[(self.method, self.day_type)]
        if self.min_days is None:
            return rules
        return MethodRules(rules.wanted, rules.used, min(self.min_days, rules.wanted))

    @property
    def cap(self) -> float | None:
        """The adjustment cap in force: the request's, or the method's default."""
        if self.adjustment_cap == METHOD_DEFAULT:
            return _DEFAULT_CAP[self.method]
        return None if self.adjustment_cap is None else float(self.adjustment_cap)


@dataclass(frozen=True)
class SkippedDay:
    """A day of the right type inside the look-back that was not counted, and why."""

    day: date
    reason: str


@dataclass(frozen=True)
class BaselineInterval:
    """The baseline for one event interval, in average kW."""

    start: datetime  # UTC
    unadjusted_kw: float
    adjusted_kw: float


@dataclass(frozen=True)
class BaselineResult:
    """A computed baseline, or the reason there is none (`ok` False: no numbers at all)."""

    ok: bool
    reason: str | None
    method: Method
    day_type: DayType
    interval: timedelta
    candidate_days: tuple[date, ...]  # the eligible days found (the "Y"), most recent first
    days_used: tuple[date, ...]  # the days averaged (the "X"), most recent first
    days_skipped: tuple[SkippedDay, ...]
    # "ratio": adjusted = unadjusted * adjustment; "additive": adjusted = unadjusted + adjustment
    # (kW); "none": no same-day adjustment. `adjustment_uncapped` is the value before the cap.
    adjustment_kind: AdjustmentKind
    adjustment: float | None
    adjustment_uncapped: float | None
    intervals: tuple[BaselineInterval, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeliveryInterval:
    """Baseline against metered load for one event interval; None where the meter has no data."""

    start: datetime  # UTC
    baseline_kw: float
    actual_kw: float | None
    delivered_kw: float | None  # baseline - actual; negative when the load went up
    delivered_kwh: float | None


@dataclass(frozen=True)
class DeliveryReport:
    """What an event delivered, interval by interval and in total, against the commitment."""

    committed_kw: float
    intervals: tuple[DeliveryInterval, ...]
    energy_delivered_kwh: float  # over the intervals with data
    mean_delivered_kw: float | None  # over the intervals with data; None when there are none
    share_of_commitment: float | None  # mean delivered / committed; None if either is missing or 0
    intervals_missing: int


@dataclass(frozen=True)
class _Slot:
    """One interval of the event day: its UTC start and the local clock time it stands for."""

    utc: datetime
    day_offset: int  # local date of the slot minus the event day (windows may cross midnight)
    wall: time  # local clock time, fold dropped: both passes of a repeated hour share it


@dataclass(frozen=True)
class _Day:
    """An eligible baseline day with its load at the event's and the window's clock times."""

    day: date
    event_kw: tuple[float, ...]
    window_kw: tuple[float, ...]


def compute_baseline(request: BaselineRequest, load: Mapping[datetime, float]) -> BaselineResult:
    """Compute the request's baseline from `load` (aware interval start -> average kW in it)."""
    by_utc = _normalise(load)
    rules = request.rules
    event_slots = _slots(request.event_start, request.event_end, request)
    window_slots: tuple[_Slot, ...] = ()
    if request.adjustment_window is not None:
        before_start, before_end = request.adjustment_window
        window_slots = _slots(request.event_start - before_start, request.event_start - before_end, request)
    candidates, skipped = _find_days(request, event_slots, window_slots, by_utc)
    outcome = BaselineResult(
        ok=False,
        reason=None,
        method=request.method,
        day_type=request.day_type,
        interval=request.interval,
        candidate_days=tuple(c.day for c in candidates),
        days_used=(),
        days_skipped=tuple(skipped),
        adjustment_kind=_kind(request),
        adjustment=None,
        adjustment_uncapped=None,
        intervals=(),
    )

    day_word = "weekdays" if request.day_type == "weekday" else "weekend/holiday days"
    if len(candidates) < rules.minimum:
        fallback = f", at least {rules.minimum}" if rules.minimum < rules.wanted else ""
        return replace(
            outcome,
            reason=f"not enough data: {len(candidates)} eligible {day_word} of the {rules.wanted} needed"
            f"{fallback} in the {request.lookback_days} days before {request.event_day.isoformat()}",
        )
    notes: list[str] = []
    if len(candidates) < rules.wanted:
        notes.append(f"fell back to {len(candidates)} eligible {day_word} of the {rules.wanted} wanted")
    used = _select(candidates, min(rules.used, len(candidates)))
    unadjusted = [math.fsum(d.event_kw[i] for d in used) / len(used) for i in range(len(event_slots))]

    adjusted = list(unadjusted)
    adjustment: float | None = None
    uncapped: float | None = None
    if outcome.adjustment_kind != "none":
        found = _adjustment(request, window_slots, used, by_utc)
        if isinstance(found, str):
            return replace(outcome, reason=found)
        adjustment, uncapped = found
        if outcome.adjustment_kind == "ratio":
            adjusted = [kw * adjustment for kw in unadjusted]
        else:
            adjusted = [kw + adjustment for kw in unadjusted]
        if adjustment != uncapped:
            notes.append(f"adjustment capped from {uncapped:.4g} to {adjustment:.4g}")

    return replace(
        outcome,
        ok=True,
        days_used=tuple(d.day for d in used),
        adjustment=adjustment,
        adjustment_uncapped=uncapped,
        intervals=tuple(
            BaselineInterval(slot.utc, unadj, adj)
            for slot, unadj, adj in zip(event_slots, unadjusted, adjusted, strict=True)
        ),
        notes=tuple(notes),
    )


def measure_delivery(
    baseline: BaselineResult, actual: Mapping[datetime, float], committed_kw: float
) -> DeliveryReport:
    """Compare an event's metered load (aware interval start -> average kW) with its baseline."""
    if not baseline.ok:
        raise ValueError(f"cannot measure delivery without a baseline: {baseline.reason}")
    if committed_kw < 0:
        raise ValueError("committed_kw must not be negative")
    by_utc = _normalise(actual)
    hours = baseline.interval / timedelta(hours=1)
    rows: list[DeliveryInterval] = []
    for interval in baseline.intervals:
        kw = by_utc.get(interval.start)
        delivered = None if kw is None else interval.adjusted_kw - kw
        rows.append(
            DeliveryInterval(
                start=interval.start,
                baseline_kw=interval.adjusted_kw,
                actual_kw=kw,
                delivered_kw=delivered,
                delivered_kwh=None if delivered is None else delivered * hours,
            )
        )
    measured = [r.delivered_kw for r in rows if r.delivered_kw is not None]
    mean_kw = math.fsum(measured) / len(measured) if measured else None
    return DeliveryReport(
        committed_kw=committed_kw,
        intervals=tuple(rows),
        energy_delivered_kwh=math.fsum(r.delivered_kwh for r in rows if r.delivered_kwh is not None),
        mean_delivered_kw=mean_kw,
        share_of_commitment=None if mean_kw is None or committed_kw == 0 else mean_kw / committed_kw,
        intervals_missing=len(rows) - len(measured),
    )


def _kind(request: BaselineRequest) -> AdjustmentKind:
    """The adjustment the request gets: its method's, or none without a window."""
    return "none" if request.adjustment_window is None else _ADJUSTMENT_KIND[request.method]


def _day_type(day: date, holidays: frozenset[date]) -> DayType:
    """Weekday, or weekend/holiday, of a local date."""
    return "weekend_holiday" if day.weekday() >= 5 or day in holidays else "weekday"


def _normalise(load: Mapping[datetime, float]) -> dict[datetime, float]:
    """Key the series by UTC instants, so any aware zone the caller used matches."""
    by_utc: dict[datetime, float] = {}
    for at, kw in load.items():
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"load timestamps must be timezone-aware, got {at!r}")
        by_utc[at.astimezone(UTC)] = float(kw)
    return by_utc


def _slots(start: datetime, end: datetime, request: BaselineRequest) -> tuple[_Slot, ...]:
    """The intervals from start to end on the event day, with the clock time each stands for."""
    slots: list[_Slot] = []
    at = start.astimezone(UTC)
    stop = end.astimezone(UTC)
    event_day = request.event_day
    while at < stop:
        local = at.astimezone(request.tz)
        slots.append(_Slot(at, (local.date() - event_day).days, local.time().replace(fold=0)))
        at += request.interval
    return tuple(slots)


def _instants(day: date, wall: time, tz: ZoneInfo) -> list[datetime]:
    """UTC instants at which `day` shows `wall`: none in a spring-forward gap, two in a repeated hour."""
    naive = datetime.combine(day, wall)
    found: list[datetime] = []
    for fold in (0, 1):
        at = naive.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        # zoneinfo resolves a nonexistent time to some instant; only a round trip proves it exists.
        if at.astimezone(tz).replace(tzinfo=None) == naive and at not in found:
            found.append(at)
    return found


def _day_values(
    day: date, slots: tuple[_Slot, ...], by_utc: Mapping[datetime, float], tz: ZoneInfo
) -> tuple[tuple[float, ...], str | None]:
    """A baseline day's load at each slot's clock time, or why the day cannot give it."""
    values: list[float] = []
    missing = 0
    for slot in slots:
        instants = _instants(day + timedelta(days=slot.day_offset), slot.wall, tz)
        if not instants:
            return (), f"clock time {slot.wall:%H:%M} does not exist on this day (daylight-saving change)"
        found = [by_utc[at] for at in instants if at in by_utc]
        if len(found) < len(instants):
            missing += 1
            continue
        # A repeated hour (fall-back day) happened twice; both passes are real load at that
        # clock time, so the mean represents it without favouring either.
        values.append(math.fsum(found) / len(found))
    if slots and missing == len(slots):
        return (), "no data"
    if missing:
        return (), f"incomplete data ({missing} of {len(slots)} intervals missing)"
    return tuple(values), None


def _find_days(
    request: BaselineRequest,
    event_slots: tuple[_Slot, ...],
    window_slots: tuple[_Slot, ...],
    by_utc: Mapping[datetime, float],
) -> tuple[list[_Day], list[SkippedDay]]:
    """The most recent eligible days of the event's day type, newest first, and the ones skipped."""
    wanted = request.rules.wanted
    candidates: list[_Day] = []
    skipped: list[SkippedDay] = []
    for back in range(1, request.lookback_days + 1):
        if len(candidates) == wanted:
            break
        day = request.event_day - timedelta(days=back)
        if _day_type(day, request.holidays) != request.day_type:
            if request.day_type == "weekday" and day.weekday() < 5:
                skipped.append(SkippedDay(day, "holiday"))
            continue
        if day in request.excluded_days:
            skipped.append(SkippedDay(day, "excluded (event day or other exclusion)"))
            continue
        event_kw, problem = _day_values(day, event_slots, by_utc, request.tz)
        window_kw: tuple[float, ...] = ()
        if problem is None:
            window_kw, problem = _day_values(day, window_slots, by_utc, request.tz)
        if problem is not None:
            skipped.append(SkippedDay(day, problem))
            continue
        candidates.append(_Day(day, event_kw, window_kw))
    return candidates, skipped


def _adjustment(
    request: BaselineRequest,
    window_slots: tuple[_Slot, ...],
    used: list[_Day],
    by_utc: Mapping[datetime, float],
) -> tuple[float, float] | str:
    """The same-day adjustment (capped, uncapped): a ratio or a kW offset; or why there is none."""
    event_window = [by_utc.get(slot.utc) for slot in window_slots]
    present = [v for v in event_window if v is not None]
    if len(present) < len(event_window):
        local = [slot.utc.astimezone(request.tz) for slot in window_slots]
        span = f"{local[0]:%H:%M}-{(local[-1] + request.interval):%H:%M}"
        return (
            f"not enough data: the event day has {len(present)} of the {len(event_window)} "
            f"intervals of the adjustment window ({span} local)"
        )
    event_mean = math.fsum(present) / len(present)
    baseline_mean = math.fsum(v for d in used for v in d.window_kw) / (len(used) * len(window_slots))
    cap = request.cap
    if _kind(request) == "ratio":
        if baseline_mean <= 0:
            return (
                "ratio adjustment undefined: the baseline days' mean load in the adjustment "
                f"window is {baseline_mean:g} kW"
            )
        ratio = event_mean / baseline_mean
        return (ratio if cap is None else min(max(ratio, 1 - cap), 1 + cap)), ratio
    # The additive cap is the same fraction, of the baseline days' window load in kW.
    offset = event_mean - baseline_mean
    if cap is None:
        return offset, offset
    bound = cap * abs(baseline_mean)
    return min(max(offset, -bound), bound), offset


def _select(candidates: list[_Day], count: int) -> list[_Day]:
    """The `count` days with the highest event-window load (ties: the more recent), newest first."""
    if count >= len(candidates):
        return list(candidates)
    ranked = sorted(candidates, key=lambda d: (math.fsum(d.event_kw), d.day), reverse=True)
    return sorted(ranked[:count], key=lambda d: d.day, reverse=True)
