"""The product's horizon: the instants every API, admin form, importer and periodic job accepts.

One place for the bounds that modules share, so that a value accepted by one path can be
computed with by every other (a date the API took must not overflow a job's arithmetic
later). Each module bounds its own durations and counts beside its fields, in terms of these.

- Nothing happens before `EARLIEST`: a reading stamped 1970-01-01 is a clock that was never
  set, not data.
- Nothing is scheduled further ahead than `SCHEDULE_AHEAD` from now (DR invitations, events).
- Every stored instant lies between `EARLIEST` and `LATEST`, so adding a bounded duration to
  it never leaves Python's datetime range, nor any database's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
SCHEDULE_AHEAD = timedelta(days=731)


def within_horizon(moment: datetime) -> bool:
    """True when an aware `moment` lies between EARLIEST and LATEST."""
    return EARLIEST <= moment < LATEST
