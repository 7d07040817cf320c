"""Hand-computed cases for the CBL methods; the numbers match docs/dr-baselines.md."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demand_response.baselines import (
    BaselineRequest,
    SkippedDay,
    compute_baseline,
    measure_delivery,
)

LISBON = ZoneInfo("Europe/Lisbon")
Q = timedelta(minutes=15)
Profile = float | Callable[[datetime], float]

# The worked example: Friday 14 June 2024, event 14:00-16:00 Lisbon time (WEST, UTC+1).
EVENT_DAY = date(2024, 6, 14)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """An aware Lisbon datetime."""
    return datetime.combine(day, time(hour, minute), tzinfo=LISBON)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """An aware UTC datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def day_series(day: date, profile: Profile) -> dict[datetime, float]:
    """Every 15-minute interval of one local day (23 or 25 hours on DST days), keyed by UTC start."""
    series: dict[datetime, float] = {}
    moment = datetime.combine(day, time(), tzinfo=LISBON).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=LISBON).astimezone(UTC)
    while moment < end:
        series[moment] = profile(moment.astimezone(LISBON)) if callable(profile) else profile
        moment += Q
    return series


def build(profiles: dict[date, Profile]) -> dict[datetime, float]:
    """A load history from one profile per local day."""
    load: dict[datetime, float] = {}
    for day, profile in profiles.items():
        load.update(day_series(day, profile))
    return load


def weekdays_before(day: date, count: int) -> list[date]:
    """The `count` weekdays before `day`, most recent first."""
    found: list[date] = []
    while len(found) < count:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            found.append(day)
    return found


def weekend_days_before(day: date, count: int) -> list[date]:
    """The `count` Saturdays and Sundays before `day`, most recent first."""
    found: list[date] = []
    while len(found) < count:
        day -= timedelta(days=1)
        if day.weekday() >= 5:
            found.append(day)
    return found


# 14 June 2024 back: 13, 12, 11, 10, 7, 6, 5, 4, 3 June, 31 May (the ten), 30 May (the eleventh).
WEEKDAYS = weekdays_before(EVENT_DAY, 11)
WEEKENDS = [date(2024, 6, 9), date(2024, 6, 8), date(2024, 6, 2), date(2024, 6, 1)]


def example_history(event_window_kw: float | None = None) -> dict[datetime, float]:
    """Weekdays at constant 100..109 kW (newest first), the 11th at 110, weekends at 999 kW."""
    profiles: dict[date, Profile] = {day: 100.0 + i for i, day in enumerate(WEEKDAYS)}
    profiles.update(dict.fromkeys(WEEKENDS, 999.0))
    if event_window_kw is not None:
        profiles[EVENT_DAY] = event_window_kw
    return build(profiles)


def caiso(**overrides: object) -> BaselineRequest:
    """The worked example's 10 of 10 request."""
    fields: dict[str, object] = {
        "method": "caiso_10of10",
        "event_start": at(EVENT_DAY, 14),
        "event_end": at(EVENT_DAY, 16),
        "tz": LISBON,
    } | overrides
    # Overrides may be of any type: the tests give the request wrong ones on purpose.
    return BaselineRequest(**fields)  # type: ignore[arg-type]


# --- CAISO 10 of 10 ------------------------------------------------------------------------


def test_10of10_averages_the_ten_most_recent_weekdays_and_skips_weekends() -> None:
    result = compute_baseline(caiso(adjustment_window=None), example_history())

    assert result.ok
    assert result.reason is None
    assert result.day_type == "weekday"
    assert result.days_used == tuple(WEEKDAYS[:10])
    assert not set(WEEKENDS) & set(result.days_used)
    assert result.adjustment_kind == "none"
    assert result.adjustment is None
    # (100 + 101 + ... + 109) / 10 = 104.5 kW in each of the 8 intervals, 13:00-15:00 UTC.
    assert [i.start for i in result.intervals] == [utc(2024, 6, 14, 13) + k * Q for k in range(8)]
    assert all(i.unadjusted_kw == pytest.approx(104.5) for i in result.intervals)
    assert all(i.adjusted_kw == pytest.approx(104.5) for i in result.intervals)


def test_10of10_same_day_adjustment_is_the_ratio_of_the_window_loads() -> None:
    # Event day 10:00-13:00 at 114.95 kW, the baseline days' window at 104.5: x1.10.
    result = compute_baseline(caiso(), example_history(event_window_kw=114.95))

    assert result.ok
    assert result.adjustment_kind == "ratio"
    assert result.adjustment == pytest.approx(1.10)
    assert result.adjustment_uncapped == pytest.approx(1.10)
    assert all(i.adjusted_kw == pytest.approx(114.95) for i in result.intervals)
    assert result.notes == ()


def test_10of10_adjustment_is_capped_at_20_percent_both_ways() -> None:
    up = compute_baseline(caiso(), example_history(event_window_kw=135.85))  # 30 % higher
    down = compute_baseline(caiso(), example_history(event_window_kw=52.25))  # 50 % lower

    assert up.adjustment_uncapped == pytest.approx(1.30)
    assert up.adjustment == pytest.approx(1.20)
    assert all(i.adjusted_kw == pytest.approx(125.4) for i in up.intervals)
    assert all(i.unadjusted_kw == pytest.approx(104.5) for i in up.intervals)
    assert up.notes == ("adjustment capped from 1.3 to 1.2",)
    assert down.adjustment_uncapped == pytest.approx(0.5)
    assert down.adjustment == pytest.approx(0.8)
    assert all(i.adjusted_kw == pytest.approx(83.6) for i in down.intervals)


def test_10of10_cap_can_be_lifted_per_programme() -> None:
    result = compute_baseline(caiso(adjustment_cap=None), example_history(event_window_kw=135.85))

    assert result.adjustment == pytest.approx(1.30)
    assert all(i.adjusted_kw == pytest.approx(135.85) for i in result.intervals)


def test_excluded_event_day_is_skipped_and_the_eleventh_day_used() -> None:
    excluded = WEEKDAYS[1]  # 12 June, another event day
    result = compute_baseline(
        caiso(adjustment_window=None, excluded_days=frozenset({excluded})), example_history()
    )

    assert result.ok
    assert excluded not in result.days_used
    assert result.days_used == (WEEKDAYS[0], *WEEKDAYS[2:11])
    assert SkippedDay(excluded, "excluded (event day or other exclusion)") in result.days_skipped
    # (100 + 102 + 103 + ... + 110) / 10 = 1054 / 10
    assert all(i.unadjusted_kw == pytest.approx(105.4) for i in result.intervals)


def test_weekday_holiday_is_skipped_for_a_weekday_event() -> None:
    holiday = WEEKDAYS[0]  # 13 June (Santo Antonio, a Lisbon holiday)
    result = compute_baseline(caiso(adjustment_window=None, holidays=frozenset({holiday})), example_history())

    assert result.days_used == tuple(WEEKDAYS[1:11])
    assert SkippedDay(holiday, "holiday") in result.days_skipped
    assert all(i.unadjusted_kw == pytest.approx(105.5) for i in result.intervals)


def test_event_on_a_holiday_uses_the_weekend_rule_4_in_4() -> None:
    holiday = date(2024, 6, 13)
    request = BaselineRequest(
        "caiso_10of10",
        at(holiday, 14),
        at(holiday, 16),
        LISBON,
        holidays=frozenset({holiday}),
        adjustment_window=None,
    )
    result = compute_baseline(request, example_history())

    assert result.day_type == "weekend_holiday"
    assert result.days_used == tuple(WEEKENDS)
    assert all(i.unadjusted_kw == pytest.approx(999.0) for i in result.intervals)


def test_too_little_history_gives_a_reason_and_no_number() -> None:
    load = build(dict.fromkeys(WEEKDAYS[:3], 100.0))
    result = compute_baseline(caiso(), load)

    assert not result.ok
    assert result.reason == (
        "not enough data: 3 eligible weekdays of the 10 needed, at least 5 in the 45 days before 2024-06-14"
    )
    assert result.intervals == ()
    assert result.days_used == ()
    assert result.adjustment is None
    assert result.candidate_days == tuple(WEEKDAYS[:3])


def test_10of10_falls_back_to_fewer_days_down_to_five() -> None:
    load = build({day: 100.0 + i for i, day in enumerate(WEEKDAYS[:7])})
    result = compute_baseline(caiso(adjustment_window=None), load)

    assert result.ok
    assert result.days_used == tuple(WEEKDAYS[:7])
    assert result.notes == ("fell back to 7 eligible weekdays of the 10 wanted",)
    assert all(i.unadjusted_kw == pytest.approx(103.0) for i in result.intervals)


def test_a_programme_can_refuse_the_fallback() -> None:
    load = build({day: 100.0 + i for i, day in enumerate(WEEKDAYS[:7])})
    result = compute_baseline(caiso(adjustment_window=None, min_days=10), load)

    assert not result.ok
    assert (
        result.reason
        == "not enough data: 7 eligible weekdays of the 10 needed in the 45 days before 2024-06-14"
    )


def test_a_day_with_a_missing_interval_is_skipped() -> None:
    load = example_history()
    gap_day = WEEKDAYS[2]  # 11 June
    del load[at(gap_day, 15, 30).astimezone(UTC)]
    result = compute_baseline(caiso(adjustment_window=None), load)

    assert gap_day not in result.days_used
    assert SkippedDay(gap_day, "incomplete data (1 of 8 intervals missing)") in result.days_skipped
    assert result.days_used[-1] == WEEKDAYS[10]


def test_event_day_without_adjustment_window_data_is_not_enough_data() -> None:
    result = compute_baseline(caiso(), example_history())

    assert not result.ok
    assert result.reason == (
        "not enough data: the event day has 0 of the 12 intervals of the adjustment window (10:00-13:00 local)"
    )
    assert result.intervals == ()


def test_ratio_adjustment_on_a_zero_load_window_is_refused_not_guessed() -> None:
    profiles: dict[date, Profile] = {
        day: (lambda moment: 0.0 if 10 <= moment.hour < 13 else 100.0) for day in WEEKDAYS[:10]
    }
    result = compute_baseline(caiso(), build({**profiles, EVENT_DAY: 10.0}))

    assert not result.ok
    assert result.reason == (
        "ratio adjustment undefined: the baseline days' mean load in the adjustment window is 0 kW"
    )
    assert result.intervals == ()


def test_days_without_any_data_are_reported_as_no_data() -> None:
    result = compute_baseline(caiso(), {})

    assert result.days_skipped[0] == SkippedDay(WEEKDAYS[0], "no data")
    # Every weekday of the 45-day look-back, 30 April to 13 June: six weeks and Tue-Thu.
    assert len(result.days_skipped) == 33
    assert result.days_skipped[-1] == SkippedDay(date(2024, 4, 30), "no data")


# --- High 4 of 5 ---------------------------------------------------------------------------

# Five weekdays, newest first: event-window (14:00-16:00) loads and the load at all other times.
H_EVENT_KW = [100.0, 80.0, 120.0, 90.0, 110.0]
H_OTHER_KW = [50.0, 200.0, 50.0, 50.0, 50.0]


def high_history(event_day_other_kw: float) -> dict[datetime, float]:
    """The High 4 of 5 example: the 80 kW day has the highest daily total, but not event load."""

    def profile(event_kw: float, other_kw: float) -> Callable[[datetime], float]:
        return lambda moment: event_kw if 14 <= moment.hour < 16 else other_kw

    profiles: dict[date, Profile] = {
        day: profile(e, o) for day, e, o in zip(WEEKDAYS[:5], H_EVENT_KW, H_OTHER_KW, strict=True)
    }
    profiles[WEEKDAYS[5]] = 1000.0  # a sixth, older weekday: must not be looked at
    profiles[EVENT_DAY] = event_day_other_kw
    return build(profiles)


def test_high_4of5_averages_the_four_days_with_the_highest_event_load() -> None:
    result = compute_baseline(caiso(method="high_4of5"), high_history(event_day_other_kw=60.0))

    assert result.ok
    assert result.candidate_days == tuple(WEEKDAYS[:5])
    # The 80 kW day (12 June) is dropped although its whole-day load is the highest.
    assert result.days_used == (WEEKDAYS[0], WEEKDAYS[2], WEEKDAYS[3], WEEKDAYS[4])
    # (100 + 120 + 90 + 110) / 4 = 105; window 60 - 50 = +10 kW, added.
    assert result.adjustment_kind == "additive"
    assert result.adjustment == pytest.approx(10.0)
    assert all(i.unadjusted_kw == pytest.approx(105.0) for i in result.intervals)
    assert all(i.adjusted_kw == pytest.approx(115.0) for i in result.intervals)


def test_high_4of5_adjustment_is_symmetric_and_uncapped() -> None:
    result = compute_baseline(caiso(method="high_4of5"), high_history(event_day_other_kw=20.0))

    assert result.adjustment == pytest.approx(-30.0)  # 60 % below the window load: not capped
    assert all(i.adjusted_kw == pytest.approx(75.0) for i in result.intervals)


def test_high_4of5_additive_adjustment_can_be_capped_as_a_share_of_the_window_load() -> None:
    request = caiso(method="high_4of5", adjustment_cap=0.20)
    result = compute_baseline(request, high_history(event_day_other_kw=20.0))

    # Uncapped -30 kW; the cap is 20 % of the selected days' 50 kW window load: -10 kW.
    assert result.adjustment_uncapped == pytest.approx(-30.0)
    assert result.adjustment == pytest.approx(-10.0)
    assert all(i.adjusted_kw == pytest.approx(95.0) for i in result.intervals)


def test_high_4of5_needs_five_eligible_days() -> None:
    load = high_history(event_day_other_kw=60.0)
    result = compute_baseline(caiso(method="high_4of5", excluded_days=frozenset(WEEKDAYS[1:3])), load)

    # 13, 10, 7 June and the sixth (6 June) remain: four of five.
    assert not result.ok
    assert (
        result.reason
        == "not enough data: 4 eligible weekdays of the 5 needed in the 45 days before 2024-06-14"
    )
    assert result.intervals == ()


def test_high_4of5_weekend_event_uses_high_2_of_3() -> None:
    saturday = date(2024, 6, 15)
    profiles: dict[date, Profile] = dict(
        zip(weekend_days_before(saturday, 3), [30.0, 10.0, 20.0], strict=True)
    )
    request = BaselineRequest("high_4of5", at(saturday, 14), at(saturday, 16), LISBON, adjustment_window=None)
    result = compute_baseline(request, build(profiles))

    assert result.day_type == "weekend_holiday"
    assert result.days_used == (date(2024, 6, 9), date(2024, 6, 2))  # the 30 and 20 kW days
    assert all(i.unadjusted_kw == pytest.approx(25.0) for i in result.intervals)


# --- Daylight saving (Europe/Lisbon 2024: 31 March 01:00 -> 02:00, 27 October 02:00 -> 01:00) --


def peak_at_18(moment: datetime) -> float:
    """100 kW during the local 18:00 hour, 50 kW at every other clock time."""
    return 100.0 if moment.hour == 18 else 50.0


def test_event_after_spring_forward_matches_clock_time_not_utc() -> None:
    event_day = date(2024, 4, 2)  # Tuesday, WEST (UTC+1); nine of its baseline days are WET (UTC+0)
    days = weekdays_before(event_day, 10)
    load = build({**dict.fromkeys(days, peak_at_18), event_day: 50.0})
    request = BaselineRequest("caiso_10of10", at(event_day, 18), at(event_day, 19), LISBON)
    result = compute_baseline(request, load)

    assert result.ok
    assert result.days_used == tuple(days)
    assert date(2024, 3, 29) in result.days_used
    # 18:00 local is 17:00 UTC on the event day but 18:00 UTC on 29 March: the clock time counts.
    assert [i.start for i in result.intervals] == [utc(2024, 4, 2, 17) + k * Q for k in range(4)]
    assert all(i.unadjusted_kw == pytest.approx(100.0) for i in result.intervals)
    assert result.adjustment == pytest.approx(1.0)  # window 14:00-17:00: 50 kW on every day


def test_spring_forward_day_in_the_baseline_counts_when_its_clock_times_exist() -> None:
    saturday = date(2024, 4, 6)
    days = weekend_days_before(saturday, 4)  # 31 March (23 hours), 30, 24, 23 March
    load = build({**dict.fromkeys(days, peak_at_18), saturday: 50.0})
    request = BaselineRequest("caiso_10of10", at(saturday, 18), at(saturday, 19), LISBON)
    result = compute_baseline(request, load)

    assert result.days_used == tuple(days)
    assert date(2024, 3, 31) in result.days_used
    assert all(i.unadjusted_kw == pytest.approx(100.0) for i in result.intervals)


def test_spring_forward_day_is_skipped_when_a_needed_clock_time_does_not_exist() -> None:
    saturday = date(2024, 4, 6)  # event 04:00-05:00, adjustment window 00:00-03:00
    profiles: dict[date, Profile] = {
        date(2024, 3, 31): 999.0,
        date(2024, 3, 30): 10.0,
        date(2024, 3, 24): 20.0,
        date(2024, 3, 23): 30.0,
        date(2024, 3, 17): 40.0,
        saturday: 25.0,
    }
    request = BaselineRequest("caiso_10of10", at(saturday, 4), at(saturday, 5), LISBON)
    result = compute_baseline(request, build(profiles))

    assert result.ok
    assert (
        SkippedDay(date(2024, 3, 31), "clock time 01:00 does not exist on this day (daylight-saving change)")
        in result.days_skipped
    )
    assert result.days_used == (date(2024, 3, 30), date(2024, 3, 24), date(2024, 3, 23), date(2024, 3, 17))
    assert all(i.unadjusted_kw == pytest.approx(25.0) for i in result.intervals)
    assert result.adjustment == pytest.approx(1.0)


def test_fall_back_day_in_the_baseline_takes_the_mean_of_both_passes_of_the_repeated_hour() -> None:
    saturday = date(2024, 11, 2)  # event 01:00-02:00 local (WET = UTC)
    fall_back = date(2024, 10, 27)  # 01:00-02:00 happens at 00:00 UTC (WEST) and again at 01:00 UTC

    def fall_back_profile(moment: datetime) -> float:
        if moment.hour != 1:
            return 100.0
        return 80.0 if moment.fold == 0 else 120.0

    profiles: dict[date, Profile] = {
        fall_back: fall_back_profile,
        date(2024, 10, 26): 100.0,
        date(2024, 10, 20): 100.0,
        date(2024, 10, 19): 100.0,
    }
    load = build(profiles)
    assert load[utc(2024, 10, 27, 0)] == 80.0 and load[utc(2024, 10, 27, 1)] == 120.0
    request = BaselineRequest(
        "caiso_10of10", at(saturday, 1), at(saturday, 2), LISBON, adjustment_window=None
    )
    result = compute_baseline(request, load)

    assert result.days_used == (fall_back, date(2024, 10, 26), date(2024, 10, 20), date(2024, 10, 19))
    # (mean(80, 120) + 100 + 100 + 100) / 4 = 100; the first pass alone would give 95.
    assert all(i.unadjusted_kw == pytest.approx(100.0) for i in result.intervals)


def test_event_after_fall_back_matches_clock_time_not_utc() -> None:
    event_day = date(2024, 10, 28)  # Monday, WET (UTC+0); its baseline weekdays are WEST (UTC+1)
    days = weekdays_before(event_day, 10)
    load = build({**dict.fromkeys(days, peak_at_18), event_day: 50.0})
    request = BaselineRequest("caiso_10of10", at(event_day, 18), at(event_day, 19), LISBON)
    result = compute_baseline(request, load)

    assert result.days_used == tuple(days)
    assert [i.start for i in result.intervals] == [utc(2024, 10, 28, 18) + k * Q for k in range(4)]
    assert all(i.unadjusted_kw == pytest.approx(100.0) for i in result.intervals)


def test_event_on_the_fall_back_day_maps_both_passes_to_the_same_clock_times() -> None:
    sunday = date(2024, 10, 27)
    days = weekend_days_before(sunday, 4)
    load = build(dict.fromkeys(days, lambda moment: 100.0 + moment.minute))
    # 00:00-02:00 UTC is 01:00-02:00 local twice: eight intervals, clock times 01:00..01:45 twice.
    request = BaselineRequest(
        "caiso_10of10", utc(2024, 10, 27, 0), utc(2024, 10, 27, 2), LISBON, adjustment_window=None
    )
    result = compute_baseline(request, load)

    assert [i.start for i in result.intervals] == [utc(2024, 10, 27, 0) + k * Q for k in range(8)]
    assert [i.unadjusted_kw for i in result.intervals] == pytest.approx([100, 115, 130, 145] * 2)


# --- Delivery ------------------------------------------------------------------------------


def test_measure_delivery_totals_negative_delivery_and_missing_data() -> None:
    request = caiso(event_end=at(EVENT_DAY, 15), adjustment_window=None)
    baseline = compute_baseline(request, example_history())
    starts = [utc(2024, 6, 14, 13) + k * Q for k in range(4)]
    actual = {starts[0]: 64.5, starts[1]: 74.5, starts[3]: 114.5}  # starts[2]: meter gap

    report = measure_delivery(baseline, actual, committed_kw=40.0)

    assert [r.baseline_kw for r in report.intervals] == pytest.approx([104.5] * 4)
    assert [r.delivered_kw for r in report.intervals] == [
        pytest.approx(40.0),
        pytest.approx(30.0),
        None,
        pytest.approx(-10.0),
    ]
    assert [r.delivered_kwh for r in report.intervals] == [
        pytest.approx(10.0),
        pytest.approx(7.5),
        None,
        pytest.approx(-2.5),
    ]
    assert report.intervals[2].actual_kw is None
    assert report.energy_delivered_kwh == pytest.approx(15.0)
    assert report.mean_delivered_kw == pytest.approx(20.0)
    assert report.share_of_commitment == pytest.approx(0.5)
    assert report.intervals_missing == 1


def test_measure_delivery_with_no_meter_data_has_no_mean() -> None:
    baseline = compute_baseline(caiso(adjustment_window=None), example_history())
    report = measure_delivery(baseline, {}, committed_kw=40.0)

    assert report.intervals_missing == 8
    assert report.energy_delivered_kwh == 0.0
    assert report.mean_delivered_kw is None
    assert report.share_of_commitment is None


def test_measure_delivery_refuses_a_failed_baseline() -> None:
    failed = compute_baseline(caiso(), {})
    with pytest.raises(ValueError, match="cannot measure delivery without a baseline: not enough data"):
        measure_delivery(failed, {}, committed_kw=40.0)


# --- Requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"event_start": datetime(2024, 6, 14, 14)}, "event_start must be timezone-aware"),
        ({"event_end": at(EVENT_DAY, 13)}, "event_end must be after event_start"),
        ({"event_end": at(EVENT_DAY, 15, 5)}, "whole number of intervals"),
        ({"lookback_days": 0}, "lookback_days"),
        ({"adjustment_cap": -0.1}, "adjustment_cap"),
        ({"adjustment_window": (timedelta(hours=1), timedelta(hours=4))}, "adjustment_window"),
        ({"method": "high_5of10"}, "unknown baseline method"),
    ],
)
def test_impossible_requests_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        caiso(**overrides)


def test_naive_load_timestamps_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_baseline(caiso(), {datetime(2024, 6, 13, 13): 1.0})


# --- Properties ----------------------------------------------------------------------------

day_loads = st.lists(st.floats(min_value=1.0, max_value=1000.0), min_size=10, max_size=10)


@settings(max_examples=30, deadline=None)
@given(loads=day_loads, window_kw=st.floats(min_value=1.0, max_value=1000.0), k=st.floats(0.1, 10.0))
def test_scaling_all_loads_scales_the_baseline_and_keeps_the_ratio(
    loads: list[float], window_kw: float, k: float
) -> None:
    def history(scale: float) -> dict[datetime, float]:
        profiles: dict[date, Profile] = {d: kw * scale for d, kw in zip(WEEKDAYS[:10], loads, strict=True)}
        return build({**profiles, EVENT_DAY: window_kw * scale})

    base = compute_baseline(caiso(), history(1.0))
    scaled = compute_baseline(caiso(), history(k))

    assert scaled.days_used == base.days_used
    assert scaled.adjustment == pytest.approx(base.adjustment)
    for one, other in zip(base.intervals, scaled.intervals, strict=True):
        assert other.unadjusted_kw == pytest.approx(one.unadjusted_kw * k)


@settings(max_examples=30, deadline=None)
@given(loads=day_loads, factor=st.floats(min_value=0.05, max_value=5.0))
def test_ratio_adjustment_stays_within_the_cap(loads: list[float], factor: float) -> None:
    profiles: dict[date, Profile] = dict(zip(WEEKDAYS[:10], loads, strict=True))
    mean = sum(loads) / len(loads)
    result = compute_baseline(caiso(), build({**profiles, EVENT_DAY: mean * factor}))

    assert result.adjustment is not None
    assert 0.8 - 1e-9 <= result.adjustment <= 1.2 + 1e-9
    assert result.adjustment == pytest.approx(min(max(factor, 0.8), 1.2))


@settings(max_examples=30, deadline=None)
@given(
    loads=st.lists(st.floats(min_value=0.0, max_value=1000.0), min_size=5, max_size=5),
    shift=st.floats(min_value=-500.0, max_value=500.0),
)
def test_additive_adjustment_ignores_a_shift_of_all_loads(loads: list[float], shift: float) -> None:
    def history(offset: float) -> dict[datetime, float]:
        profiles: dict[date, Profile] = {d: kw + offset for d, kw in zip(WEEKDAYS[:5], loads, strict=True)}
        return build({**profiles, EVENT_DAY: 300.0 + offset})

    base = compute_baseline(caiso(method="high_4of5"), history(0.0))
    shifted = compute_baseline(caiso(method="high_4of5"), history(shift))

    assert shifted.adjustment == pytest.approx(base.adjustment, abs=1e-6)
    for one, other in zip(base.intervals, shifted.intervals, strict=True):
        assert other.unadjusted_kw == pytest.approx(one.unadjusted_kw + shift, abs=1e-6)
        assert other.adjusted_kw == pytest.approx(one.adjusted_kw + shift, abs=1e-6)
