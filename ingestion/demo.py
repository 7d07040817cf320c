"""The demo building's meter files: the utility's daily SLG v2 files of the car park's own
supply (a delivery point of its own, not behind the building's main meter) for a few days of
last season, as a backfill would bring them (days outside every comparison the overview makes:
a supply whose data starts yesterday would make today look smaller than yesterday), made with the
project's writer (`slg.write_slg`) and taken through the pipeline as a local file would be
(`file_take`, then `file_process`), and one corrupt file, rejected whole with its errors'
line numbers, as an operator would find it in the ledger.

Used through `ingestion.services.demo_load`.
"""

from __future__ import annotations

import io
import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from ingestion import slg
from ingestion.models import IngestedFile
from ingestion.services import file_process, file_take

# The car park's delivery point: PT, 16 digits, 2 letters (docs/formats/slg_v2.md).
DEMO_CPE = "PT0002000099887766DM"
DEMO_SENDER = "DEMOUTIL"
# Daily files of DAYS local days, the last one DAYS_AGO days before today: older than this month
# and the last two weeks, younger than the raw readings' retention (90 days by default).
DAYS = 3
DAYS_AGO = 60
# A detail line in the rejected file: 2 + 20 (CPE) + 8 (date) characters, then the time.
_TIME_AT = 30


def _day_records(day: date, tz: ZoneInfo) -> list[tuple[str, datetime, int, bool]]:
    """The day's quarter hours of the car park: lighting and ventilation all day, and the
    chargers in the working day (hundredths of kWh per 15 minutes)."""
    start = datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    records = []
    moment = start
    while moment < end:
        hour = moment.astimezone(tz).hour + moment.astimezone(tz).minute / 60
        charging = max(0.0, math.sin((hour - 7.0) / 12.0 * math.pi)) if day.weekday() < 5 else 0.1
        kwh = 0.6 + 4.0 * charging
        records.append((DEMO_CPE, moment, round(kwh * 100), False))
        moment += timedelta(minutes=15)
    return records


def _file(day: date, tz: ZoneInfo) -> bytes:
    lines = slg.write_slg(_day_records(day, tz), tz=tz, sender=DEMO_SENDER, file_date=day + timedelta(days=1))
    return b"".join(lines)


def _corrupt(content: bytes) -> bytes:
    """A file whose detail records have bad fields: a time that is no quarter hour's end (line
    5) and an energy that is not digits (line 9). Its header and trailer are fine, so the
    reader reports each line; with any bad record the file is rejected whole."""
    lines = content.split(b"\r\n")
    fifth, ninth = bytearray(lines[4]), bytearray(lines[8])
    fifth[_TIME_AT : _TIME_AT + 4] = b"0107"
    ninth[_TIME_AT + 4 : _TIME_AT + 14] = b"00000O1234"
    lines[4], lines[8] = bytes(fifth), bytes(ninth)
    return b"\r\n".join(lines)


def demo_files_load(*, now: datetime | None = None, tz: ZoneInfo) -> dict[str, int]:
    """Import the demo's files that the ledger does not hold yet (by name; idempotent)."""
    today = (now or timezone.now()).astimezone(tz).date()
    days = [today - timedelta(days=DAYS_AGO + n) for n in range(DAYS - 1, -1, -1)]
    wanted = [(f"DEMO_{DEMO_CPE}_{day:%Y%m%d}.slg_v2", _file(day, tz)) for day in days]
    # The last day's file again, as a transfer that garbled two records.
    wanted.append((f"DEMO_{DEMO_CPE}_{days[-1]:%Y%m%d}_resent.slg_v2", _corrupt(wanted[-1][1])))
    names = [name for name, _ in wanted]
    known = set(IngestedFile.objects.filter(name__in=names).values_list("name", flat=True))
    for name, content in wanted:
        if name not in known:
            row = file_take(name=name, stream=io.BytesIO(content), origin=IngestedFile.Origin.LOCAL)
            file_process(file_id=row.pk)
    return {
        "imported": IngestedFile.objects.filter(name__in=names, status=IngestedFile.Status.IMPORTED).count(),
        "rejected": IngestedFile.objects.filter(name__in=names, status=IngestedFile.Status.REJECTED).count(),
    }
